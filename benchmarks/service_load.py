"""Load benchmark of the HTTP service on loopback: requests/s and p50/p99 latency, then a deliberate overload.

    OMP_NUM_THREADS=1 python benchmarks/service_load.py [--model DIR | --untrained | --tiny] [--scan-requests 400]
        [--generate-requests 24] [--concurrency 4] [--steps 20] [--worker process|thread]

Starts the service in this process (uvicorn on 127.0.0.1, a random free port, bearer-token auth on;
generations in a worker process by default, ``--worker thread`` runs them in the service's process
as ``safetext serve`` does by default),
then drives it over real HTTP with ``--concurrency`` client threads. Each client thread connects from
its own loopback address (127.0.0.10, .11, ...) and each abusive client from another (127.0.0.2,
127.0.0.3), so the service's per-client fair queue sees them as the distinct clients they stand for:

1. ``POST /v1/scan``: ``--scan-requests`` prompts (half clean, half toxic); every answer must be 200.
2. ``POST /v1/generate``: ``--generate-requests`` prompts, same mix; the queue bound is at least the
   number of clients, so every answer must be 200 (a blocked prompt would be a 403 and counts as an error).
3. Overload: a second service with one worker and ``--burst-queue`` waiting places receives
   ``--burst`` simultaneous generations; the answers must be 200 or 503 (the deliberate rejections).
4. Abuse: a fresh service receives phases 1 and 2 again while ``--abuse-scan-clients`` clients send
   maximum-size whitespace prompts to ``/v1/scan`` (spaces, tabs, ideographic spaces: the shapes that
   were quadratic) and ``--abuse-generate-clients`` clients send maximum-budget generations (the
   most images at the native size and the steps the compute budget allows) without pause. Targets:
   ``/healthz`` p99 under 100 ms, and the normal clients' p99 within 2x of the clean run (phases 1-2).

``/healthz`` is polled every 50 ms during phases 1-2 and 4. Every phase is bounded by its request
count and a per-request timeout. Writes ``benchmarks/results/service_load.json`` and ``.md``; exits
1 when any error other than the deliberate 503s occurred or an abuse target was missed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
RESULTS = ROOT / "results"
HOST = "127.0.0.1"  # loopback only, by design

CLEAN_WORDS = ("hello", "peace", "garden", "coffee", "river", "music", "bread", "light")
TOXIC_WORDS = ("shit", "fuck", "bitch", "cunt")
COLOURS = ("red", "blue", "green", "yellow")


def prompts(n: int) -> list[str]:
    """``n`` sign prompts, alternating clean and toxic words (deterministic)."""
    out = []
    for i in range(n):
        words = TOXIC_WORDS if i % 2 else CLEAN_WORDS
        out.append(f'A {COLOURS[i % len(COLOURS)]} sign that says "{words[(i // 2) % len(words)]}".')
    return out


#: Loopback address of the n-th normal client thread (the abusers use 127.0.0.2 and 127.0.0.3).
NORMAL_CLIENT_ADDRESS = "127.0.0.{}"
NORMAL_CLIENT_BASE = 10


def drive(url: str, token: str, route: str, bodies: list[dict], concurrency: int, timeout: float) -> dict:
    """Send ``bodies`` to ``route`` from ``concurrency`` threads, each from its own loopback address."""
    import httpx

    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def one(body: dict) -> tuple[int | str, float, str | None, float | None]:
        client = getattr(local, "client", None)
        if client is None:
            with lock:
                address = NORMAL_CLIENT_ADDRESS.format(NORMAL_CLIENT_BASE + len(clients))
                client = local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                                     timeout=timeout, transport=httpx.HTTPTransport(local_address=address))
                clients.append(client)
        started = time.perf_counter()
        try:
            response = client.post(route, json=body)
        except httpx.HTTPError as exc:
            return type(exc).__name__, time.perf_counter() - started, None, None  # counted as an error
        elapsed = time.perf_counter() - started
        decision, worker_seconds = None, None
        if response.status_code in (200, 403):
            payload = response.json()
            decision, worker_seconds = payload["verdict"]["action"], payload.get("seconds")
        return response.status_code, elapsed, decision, worker_seconds

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - started
    for client in clients:
        client.close()
    statuses: dict[str, int] = {}
    decisions: dict[str, int] = {}
    for status, _, decision, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if decision:
            decisions[decision] = decisions.get(decision, 0) + 1
    ok = [seconds for status, seconds, _, _ in results if status == 200]
    rejected = [seconds for status, seconds, _, _ in results if status == 503]
    worker = [w for status, _, _, w in results if status == 200 and w is not None]
    return {
        "route": route,
        "requests": len(bodies),
        "concurrency": concurrency,
        "statuses": statuses,
        "decisions": decisions,
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(len(ok) / wall, 2) if wall > 0 else None,
        "p50_ms": round(float(np.percentile(ok, 50)) * 1000, 1) if ok else None,
        "p99_ms": round(float(np.percentile(ok, 99)) * 1000, 1) if ok else None,
        "max_ms": round(max(ok) * 1000, 1) if ok else None,
        "max_ms_503": round(max(rejected) * 1000, 1) if rejected else None,
        "worker_p50_ms": round(float(np.percentile(worker, 50)) * 1000, 1) if worker else None,
    }


def percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


class HealthPoller:
    """Polls ``/healthz`` every ``interval`` seconds in a thread; latencies of the answers."""

    def __init__(self, url: str, interval: float = 0.05, timeout: float = 10.0) -> None:
        self.url, self.interval, self.timeout = url, interval, timeout
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - started
                if ok:
                    self.latencies.append(elapsed)
                else:
                    self.failures += 1
                self._stop.wait(max(0.0, self.interval - elapsed))

    def __enter__(self) -> "HealthPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        return {"polls": len(self.latencies), "failures": self.failures,
                "p50_ms": percentile_ms(self.latencies, 50), "p99_ms": percentile_ms(self.latencies, 99),
                "max_ms": round(max(self.latencies) * 1000, 1) if self.latencies else None}


def _abuse(url: str, token: str, route: str, bodies: list[dict], clients: int, timeout: float, address: str, stop,
           results) -> None:
    """Process body of :class:`Abusers`: ``clients`` threads post ``bodies`` in a loop until ``stop`` is set."""
    import httpx

    lock = threading.Lock()
    statuses: dict[str, int] = {}
    latencies: list[float] = []

    def loop(index: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
                          transport=httpx.HTTPTransport(local_address=address)) as client:
            i = index
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    status: int | str = client.post(route, json=bodies[i % len(bodies)]).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    latencies.append(time.perf_counter() - started)
                if status == 503:
                    stop.wait(1.0)  # Retry-After
                i += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put({"route": route, "clients": clients, "requests": sum(statuses.values()), "statuses": statuses,
                 "p50_ms": percentile_ms(latencies, 50)})


class Abusers:
    """Clients that send ``bodies`` to ``route`` in a loop from ``clients`` threads until stopped.

    They run in their own process, like a remote client: they share the machine's cores with the
    service but not its interpreter lock. All of them connect from ``address`` (one abusive host).
    """

    def __init__(self, url: str, token: str, route: str, bodies: list[dict], clients: int, timeout: float,
                 address: str) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._stop, self._results = context.Event(), context.Queue()
        self._process = context.Process(target=_abuse, args=(url, token, route, bodies, clients, timeout, address, self._stop,
                                                             self._results), daemon=True)
        self._summary: dict = {}

    def __enter__(self) -> "Abusers":
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._summary = self._results.get(timeout=600)
        self._process.join(60)

    def summary(self) -> dict:
        return self._summary


def abusive_bodies(limits, native: tuple[int, int]) -> tuple[list[dict], list[dict]]:
    """Maximum-size whitespace scan prompts, and generations that use the whole compute budget."""
    n = limits.max_prompt_chars
    scans = [{"prompt": "a" + blank * (n - 2) + "b"} for blank in (" ", "\t", "\u3000", "\n")]
    height, width = native
    images = limits.max_images
    while images > 1 and limits.default_steps * width * height * images > limits.max_compute:
        images -= 1
    steps = min(limits.max_steps, limits.max_compute // (width * height * images))
    generations = [{"prompt": scans[i]["prompt"], "seed": i, "steps": steps, "width": width, "height": height,
                    "num_images": images} for i in range(2)]
    return scans, generations


def worker_factory(tiny: bool, untrained: bool, model: str | None, policy: str):
    """Builds the served generator in the worker process (module level, so it pickles)."""
    from safetext.generator import SafeTextGenerator
    from safetext.policy import load_policy

    args = argparse.Namespace(tiny=tiny, untrained=untrained, model=model)
    return SafeTextGenerator(build_pipeline(args)[0], policy=load_policy(policy))


def build_pipeline(args: argparse.Namespace):
    if args.tiny:
        from safetext.models.glyph import GlyphModelConfig, build_glyph_pipeline

        config = GlyphModelConfig(height=16, width=32, block_out_channels=(8, 16, 32), text_width=32, text_layers=1,
                                  heads=2, max_length=48, norm_groups=4)
        pipe = build_glyph_pipeline(config, seed=0)
        pipe.set_progress_bar_config(disable=True)
        return pipe, "tiny random-weight glyph pipeline (16x32)"
    if args.untrained:
        from safetext.models.glyph import GlyphModelConfig, build_glyph_pipeline

        pipe = build_glyph_pipeline(GlyphModelConfig(), seed=0)
        pipe.set_progress_bar_config(disable=True)
        h, w = pipe.default_size
        return pipe, f"embedded glyph architecture ({h}x{w}) with untrained weights (same compute as the shipped model)"
    from safetext.generate_cli import load_pipeline

    return load_pipeline(args.model), args.model or "embedded glyph model (shipped weights)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="local pipeline directory (default: the embedded glyph model)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random-weight glyph pipeline instead")
    parser.add_argument("--untrained", action="store_true",
                        help="use the embedded model's architecture with untrained weights (when no weights are shipped)")
    parser.add_argument("--policy", default="default")
    parser.add_argument("--scan-requests", type=int, default=400)
    parser.add_argument("--generate-requests", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--burst", type=int, default=12, help="simultaneous generations in the overload phase")
    parser.add_argument("--burst-queue", type=int, default=2, help="queue bound of the overload service")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    parser.add_argument("--abuse-scan-clients", type=int, default=1, help="clients sending max-size whitespace scans")
    parser.add_argument("--abuse-generate-clients", type=int, default=1, help="clients sending max-budget generations")
    parser.add_argument("--no-abuse", action="store_true", help="skip the abuse phase")
    parser.add_argument("--worker", choices=["process", "thread"], default="process",
                        help="where the service runs generations: `safetext serve --worker` (default: %(default)s)")
    parser.add_argument("--worker-threads", type=int, default=None,
                        help="torch threads of the worker process (default: the service's, CPU cores less one)")
    parser.add_argument("--out", default=str(RESULTS / "service_load"), help="output path without extension")
    args = parser.parse_args(argv)
    for name in ("scan_requests", "generate_requests", "concurrency", "steps", "burst"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    import torch

    from safetext.generator import SafeTextGenerator
    from safetext.policy import load_policy
    from safetext.service import BackgroundServer, ServiceLimits, create_app
    from safetext.service.worker import default_threads

    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    policy = load_policy(args.policy)
    pipe, model_name = build_pipeline(args)
    generator = SafeTextGenerator(pipe, policy=policy)
    token = secrets.token_urlsafe(32)
    limits = ServiceLimits(max_steps=max(args.steps, 40)).resolve(generator)  # the defaults the service derives
    native = limits.native(generator)
    scan_bodies = [{"prompt": p} for p in prompts(args.scan_requests)]
    gen_bodies = [{"prompt": p, "seed": i, "steps": args.steps} for i, p in enumerate(prompts(args.generate_requests))]

    def make_app(max_queue: int):
        if args.worker == "thread":
            return create_app(generator, policy, token=token, max_queue=max_queue, limits=limits)
        factory = functools.partial(worker_factory, args.tiny, args.untrained, args.model, args.policy)
        return create_app(generator_factory=factory, policy=policy, token=token, max_queue=max_queue, limits=limits,
                          worker="process", worker_threads=args.worker_threads)

    app = make_app(args.concurrency)
    with BackgroundServer(app, host=HOST) as server:
        drive(server.url, token, "/v1/scan", scan_bodies[:8], 1, args.timeout)  # warm-up, not reported
        drive(server.url, token, "/v1/generate", gen_bodies[:1], 1, args.timeout)
        with HealthPoller(server.url) as health_clean:
            scan = drive(server.url, token, "/v1/scan", scan_bodies, args.concurrency, args.timeout)
            generate = drive(server.url, token, "/v1/generate", gen_bodies, args.concurrency, args.timeout)

    abuse = None
    if not args.no_abuse:
        abusive_scans, abusive_gens = abusive_bodies(limits, native)
        abuse_app = make_app(args.concurrency + args.abuse_generate_clients)
        with BackgroundServer(abuse_app, host=HOST) as server:
            drive(server.url, token, "/v1/scan", scan_bodies[:8], 1, args.timeout)  # warm-up, not reported
            with HealthPoller(server.url) as health_abuse, \
                    Abusers(server.url, token, "/v1/scan", abusive_scans, args.abuse_scan_clients, args.timeout,
                            "127.0.0.2") as scan_abuse, \
                    Abusers(server.url, token, "/v1/generate", abusive_gens, args.abuse_generate_clients,
                            args.timeout, "127.0.0.3") as gen_abuse:
                time.sleep(5.0)  # let the abusers' processes start and get going
                abuse_scan = drive(server.url, token, "/v1/scan", scan_bodies, args.concurrency, args.timeout)
                abuse_generate = drive(server.url, token, "/v1/generate", gen_bodies, args.concurrency, args.timeout)
        abuse = {
            "abusive_scan": {**scan_abuse.summary(), "prompt_chars": limits.max_prompt_chars},
            "abusive_generate": {**gen_abuse.summary(), **{k: abusive_gens[0][k] for k in ("steps", "width", "height", "num_images")},
                                 "max_compute": limits.max_compute},
            "scan": abuse_scan,
            "generate": abuse_generate,
            "healthz": health_abuse.summary(),
        }
        abuse["targets"] = {
            "healthz_p99_under_100ms": health_abuse.summary()["p99_ms"] is not None and health_abuse.summary()["p99_ms"] < 100,
            "scan_p99_within_2x": _within(abuse_scan["p99_ms"], scan["p99_ms"]),
            "generate_p99_within_2x": _within(abuse_generate["p99_ms"], generate["p99_ms"]),
        }

    burst_app = make_app(args.burst_queue)
    with BackgroundServer(burst_app, host=HOST) as server:
        burst_bodies = [gen_bodies[i % len(gen_bodies)] for i in range(args.burst)]
        burst = drive(server.url, token, "/v1/generate", burst_bodies, args.burst, args.timeout)
    burst["rejected_503"] = burst["statuses"].get("503", 0)

    errors = {
        "scan": args.scan_requests - scan["statuses"].get("200", 0),
        "generate": args.generate_requests - generate["statuses"].get("200", 0),
        "burst": sum(n for status, n in burst["statuses"].items() if status not in ("200", "503")),
    }
    if abuse is not None:
        errors["abuse_scan"] = args.scan_requests - abuse["scan"]["statuses"].get("200", 0)
        errors["abuse_generate"] = args.generate_requests - abuse["generate"]["statuses"].get("200", 0)
    report = {
        "command": " ".join(["python benchmarks/service_load.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": model_name,
        "policy": policy.name,
        "steps": args.steps,
        "worker": args.worker,
        "worker_threads": (args.worker_threads or default_threads()) if args.worker == "process" else None,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1m_at_start": load_at_start,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
        "scan": scan,
        "generate": generate,
        "burst": {**burst, "workers": 1, "max_queue": args.burst_queue},
        "healthz": health_clean.summary(),
        "limits": {"default_steps": limits.default_steps, "max_steps": limits.max_steps, "max_width": limits.max_width,
                   "max_height": limits.max_height, "max_images": limits.max_images, "max_compute": limits.max_compute,
                   "max_prompt_chars": limits.max_prompt_chars, "native": list(native)},
        "abuse": abuse,
        "errors_other_than_503": errors,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    missed = abuse is not None and not all(abuse["targets"].values())
    return 0 if not any(errors.values()) and not missed else 1


def _within(value: float | None, reference: float | None, factor: float = 2.0) -> bool:
    return value is not None and reference is not None and value <= factor * reference


def markdown(r: dict) -> str:
    env = r["environment"]
    lines = [
        "# HTTP service load (loopback)",
        "",
        f"Model: {r['model']}; policy `{r['policy']}`; {r['steps']} steps per image; one generation worker, "
        + (f"a separate process with {r['worker_threads']} torch thread(s)." if r["worker"] == "process"
           else "a thread of the service's process."),
        f"Python {env['python']}, torch {env['torch']} ({env['torch_threads']} thread(s) in the service's process), "
        f"{env['cpu_count']} CPU cores, 1-minute load average {env['load_average_1m_at_start']} at start and "
        f"{env['load_average_1m_at_end']} at the end (other jobs shared the cores).",
        f"Produced by `{r['command']}` on loopback; clients and server share the machine.",
        "Latencies are client-side (queueing included); *worker* is the generation time inside the service.",
        "",
        "| route | requests | concurrency | ok (200) | req/s | p50 ms | p99 ms | max ms | worker p50 ms | decisions |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("scan", "generate"):
        s = r[key]
        decisions = ", ".join(f"{k} {v}" for k, v in sorted(s["decisions"].items()))
        lines.append(
            f"| `{s['route']}` | {s['requests']} | {s['concurrency']} | {s['statuses'].get('200', 0)} | "
            f"{s['requests_per_second']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} | "
            f"{s['worker_p50_ms'] if s['worker_p50_ms'] is not None else '-'} | {decisions} |"
        )
    b = r["burst"]
    lines += [
        "",
        f"Overload: {b['requests']} simultaneous `/v1/generate` requests against 1 worker and a queue of "
        f"{b['max_queue']}: {b['statuses'].get('200', 0)} answered 200, {b['rejected_503']} rejected with 503 "
        f"(slowest rejection {b['max_ms_503']} ms, while accepted requests took up to {b['max_ms']} ms).",
        "",
        f"`/healthz` polled every 50 ms during the clean run: p50 {r['healthz']['p50_ms']} ms, "
        f"p99 {r['healthz']['p99_ms']} ms, max {r['healthz']['max_ms']} ms ({r['healthz']['polls']} polls).",
        "",
    ]
    a = r.get("abuse")
    if a:
        lim = r["limits"]
        sa, ga, h = a["abusive_scan"], a["abusive_generate"], a["healthz"]
        lines += [
            "## Abuse run",
            "",
            f"Service limits derived from the model (native {lim['native'][0]}x{lim['native'][1]}): default "
            f"{lim['default_steps']} steps, at most {lim['max_steps']}, {lim['max_height']}x{lim['max_width']} px, "
            f"{lim['max_images']} images, compute budget {lim['max_compute']:,} step-pixels, prompts up to "
            f"{lim['max_prompt_chars']} characters.",
            f"The same normal traffic as above ran while {sa['clients']} clients sent {sa['prompt_chars']}-character "
            f"whitespace prompts to `/v1/scan` without pause ({sa['requests']} requests, statuses {sa['statuses']}, "
            f"p50 {sa['p50_ms']} ms) and {ga['clients']} client(s) sent maximum-budget generations "
            f"({ga['num_images']} images of {ga['height']}x{ga['width']} at {ga['steps']} steps; {ga['requests']} "
            f"requests, statuses {ga['statuses']}).",
            "",
            "| normal clients | clean p50 ms | clean p99 ms | under abuse p50 ms | under abuse p99 ms | ratio p99 | "
            "worker p50 ms clean / abuse | target |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, target in (("scan", "scan_p99_within_2x"), ("generate", "generate_p99_within_2x")):
            clean, abused = r[key], a[key]
            ratio = round(abused["p99_ms"] / clean["p99_ms"], 2) if abused["p99_ms"] and clean["p99_ms"] else None
            worker = (f"{clean['worker_p50_ms']} / {abused['worker_p50_ms']}" if clean["worker_p50_ms"] is not None
                      else "-")
            lines.append(f"| `{clean['route']}` | {clean['p50_ms']} | {clean['p99_ms']} | {abused['p50_ms']} | "
                         f"{abused['p99_ms']} | {ratio} | {worker} | <= 2x: {'met' if a['targets'][target] else 'MISSED'} |")
        lines += [
            "",
            f"`/healthz` under abuse: p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms, max {h['max_ms']} ms "
            f"({h['polls']} polls, {h['failures']} failures); target p99 < 100 ms: "
            f"{'met' if a['targets']['healthz_p99_under_100ms'] else 'MISSED'}.",
            "",
        ]
    lines += [
        f"Errors other than the deliberate 503s: {sum(r['errors_other_than_503'].values())} "
        f"({', '.join(f'{k} {v}' for k, v in r['errors_other_than_503'].items())}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
