"""Load benchmark of the HTTP service on loopback: p50/p99 latency clean and under abuse, then a deliberate overload.

    OMP_NUM_THREADS=1 python benchmarks/service_load.py [--model DIR | --untrained | --tiny] [--scan-requests 1000]
        [--generate-requests 16] [--concurrency 4] [--steps 20] [--rounds 3] [--worker process|thread]

Starts the service in a process of its own, as ``safetext serve`` runs it (uvicorn on 127.0.0.1, a
random free port, bearer-token auth on, the default per-client scan limits; generations in a worker
process by default, ``--worker thread`` keeps them in the service's process), and drives it over real
HTTP from this process with ``--concurrency`` client threads. Each client thread connects from its
own loopback address (127.0.0.10, .11, ...) and each abusive client from another (127.0.0.2,
127.0.0.3), so the service's per-client limits see them as the distinct clients they stand for. The
abusive clients run in processes of their own (an attacker is on another machine: it must not share
the measuring clients' interpreter lock), started afresh for every abuse run.

``--rounds`` times, on the same service (same queue bound, same warm worker):

1. Clean: ``POST /v1/scan`` with ``--scan-requests`` prompts (half clean, half toxic), then
   ``POST /v1/generate`` with ``--generate-requests`` prompts, same mix; every answer must be 200.
2. Abuse: the same traffic again while ``--abuse-scan-clients`` clients send maximum-size whitespace
   prompts to ``/v1/scan`` (spaces, tabs, ideographic spaces, newlines: the shapes that were
   quadratic) without pause, ignoring ``Retry-After`` on a 429 (``--abuse-honor-retry-after`` to wait),
   and ``--abuse-generate-clients`` clients send maximum-budget generations (the most images at the
   native size and the steps the compute budget allows).

Then an overload: a second service with one worker and ``--burst-queue`` waiting places receives
``--burst`` simultaneous generations; the answers must be 200 or 503 (the deliberate rejections).

Targets, on the latencies pooled over the rounds: ``/healthz`` p99 under 100 ms under abuse, and the
normal clients' p99 under abuse within 2x of the clean runs; the per-round ratios and per-client
p50/p99 are reported beside them, and how many abusive scans were throttled (429). ``/healthz`` is
polled every 50 ms during both runs. Every phase is bounded by its request count and a per-request
timeout. Writes ``benchmarks/results/service_load.json`` and ``.md``; exits 1 when any error other
than the deliberate 503s occurred or an abuse target was missed.
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

from safetext.service.ratelimit import DEFAULT_MAX_SCANS_PER_CLIENT, DEFAULT_SCAN_RATE  # noqa: E402

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

    def one(body: dict) -> tuple[int | str, float, str | None, float | None, str]:
        client = getattr(local, "client", None)
        if client is None:
            with lock:
                local.address = NORMAL_CLIENT_ADDRESS.format(NORMAL_CLIENT_BASE + len(clients))
                client = local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                                     timeout=timeout,
                                                     transport=httpx.HTTPTransport(local_address=local.address))
                clients.append(client)
        started = time.perf_counter()
        try:
            response = client.post(route, json=body)
        except httpx.HTTPError as exc:
            return type(exc).__name__, time.perf_counter() - started, None, None, local.address  # an error
        elapsed = time.perf_counter() - started
        decision, worker_seconds = None, None
        if response.status_code in (200, 403):
            payload = response.json()
            decision, worker_seconds = payload["verdict"]["action"], payload.get("seconds")
        return response.status_code, elapsed, decision, worker_seconds, local.address

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - started
    for client in clients:
        client.close()
    statuses: dict[str, int] = {}
    decisions: dict[str, int] = {}
    by_client: dict[str, list[float]] = {}
    for status, seconds, decision, _, address in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if decision:
            decisions[decision] = decisions.get(decision, 0) + 1
        if status == 200:
            by_client.setdefault(address, []).append(seconds)
    ok = [seconds for status, seconds, _, _, _ in results if status == 200]
    rejected = [seconds for status, seconds, _, _, _ in results if status == 503]
    worker = [w for status, _, _, w, _ in results if status == 200 and w is not None]
    return {
        "route": route,
        "requests": len(bodies),
        "concurrency": concurrency,
        "statuses": statuses,
        "decisions": decisions,
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(len(ok) / wall, 2) if wall > 0 else None,
        "p50_ms": percentile_ms(ok, 50),
        "p99_ms": percentile_ms(ok, 99),
        "max_ms": round(max(ok) * 1000, 1) if ok else None,
        "max_ms_503": round(max(rejected) * 1000, 1) if rejected else None,
        "worker_p50_ms": percentile_ms(worker, 50),
        "clients": {address: {"requests": len(values), "p50_ms": percentile_ms(values, 50),
                              "p99_ms": percentile_ms(values, 99)} for address, values in sorted(by_client.items())},
        # dropped before the report is written; pooled over rounds:
        "latencies": ok,
        "latency_clients": [address for status, _, _, _, address in results if status == 200],
        "worker_latencies": worker,
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
           results, honor_retry_after: bool, ready) -> None:
    """Process body of :class:`Abusers`: ``clients`` threads post ``bodies`` in a loop until ``stop`` is set.

    A 503 (queue full) is followed by a 1 s pause; a 429 (rate limited) by the ``Retry-After`` pause only when
    ``honor_retry_after``, otherwise the next request goes out at once, as from an attacker.
    """
    import httpx

    if not clients:
        ready.set()
    lock = threading.Lock()
    statuses: dict[str, int] = {}
    latencies: list[float] = []

    def loop(index: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
                          transport=httpx.HTTPTransport(local_address=address)) as client:
            i = index
            ready.set()  # the process has started and its client is about to send
            while not stop.is_set():
                started = time.perf_counter()
                retry_after = 0.0
                try:
                    response = client.post(route, json=bodies[i % len(bodies)])
                    status: int | str = response.status_code
                    retry_after = float(response.headers.get("Retry-After", 0))
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    latencies.append(time.perf_counter() - started)
                if status == 503:
                    stop.wait(1.0)  # Retry-After
                elif status == 429 and honor_retry_after:
                    stop.wait(retry_after)
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
                 address: str, honor_retry_after: bool = False) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._stop, self._results, self._ready = context.Event(), context.Queue(), context.Event()
        self._process = context.Process(target=_abuse, args=(url, token, route, bodies, clients, timeout, address, self._stop,
                                                             self._results, honor_retry_after, self._ready),
                                        daemon=True)
        self._summary: dict = {}

    def __enter__(self) -> "Abusers":
        self._process.start()
        if not self._ready.wait(120):
            self._process.kill()
            raise TimeoutError("the abusive clients' process did not start within 120 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._summary = self._results.get(timeout=600)
        self._process.join(60)

    def summary(self) -> dict:
        return self._summary


def make_app(args: argparse.Namespace, token: str, limits, max_queue: int):
    """The service as the benchmark configures it (built in the service's process)."""
    from safetext.generator import SafeTextGenerator
    from safetext.policy import load_policy
    from safetext.service import create_app

    policy = load_policy(args.policy)
    scan_rate = args.scan_rate or None
    extra = {"scan_rate": scan_rate, "scan_burst": args.scan_burst if scan_rate else None,
             "max_scans_per_client": args.max_scans_per_client or None}
    if args.worker == "thread":
        generator = SafeTextGenerator(build_pipeline(args)[0], policy=policy)
        return create_app(generator, policy, token=token, max_queue=max_queue, limits=limits, **extra)
    factory = functools.partial(worker_factory, args.tiny, args.untrained, args.model, args.policy)
    return create_app(generator_factory=factory, policy=policy, token=token, max_queue=max_queue, limits=limits,
                      worker="process", worker_threads=args.worker_threads, worker_nice=args.worker_nice, **extra)


def _service_main(args: argparse.Namespace, token: str, limits, max_queue: int, conn) -> None:
    """Process body of :class:`ServiceProcess`: serve until the parent sends anything (or goes away)."""
    from safetext.service import BackgroundServer

    with BackgroundServer(make_app(args, token, limits, max_queue), host=HOST, startup_timeout=600) as server:
        conn.send(server.url)
        try:
            conn.recv()
        except EOFError:
            pass


class ServiceProcess:
    """The service in its own process, as ``safetext serve`` runs it: the measuring clients in this process
    do not share its interpreter lock, and neither do the abusers (their own process)."""

    def __init__(self, args: argparse.Namespace, token: str, limits, max_queue: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_service_main, args=(args, token, limits, max_queue, child),
                                        name="safetext-service")
        self.url = ""

    def __enter__(self) -> "ServiceProcess":
        self._process.start()
        if not self._conn.poll(600):
            self._process.kill()
            raise TimeoutError("the service process did not start within 600 s")
        self.url = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send(None)
        self._process.join(60)
        if self._process.is_alive():
            self._process.kill()


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
    parser.add_argument("--scan-requests", type=int, default=1000)
    parser.add_argument("--generate-requests", type=int, default=16)
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
    parser.add_argument("--worker-nice", type=int, default=None,
                        help="niceness of the worker process (`safetext serve --worker-nice`; default: inherit)")
    parser.add_argument("--scan-rate", type=float, default=DEFAULT_SCAN_RATE,
                        help="the service's per-client scan rate in characters/s, 0: none (default: %(default).0f)")
    parser.add_argument("--scan-burst", type=int, default=None, help="the service's per-client scan burst")
    parser.add_argument("--max-scans-per-client", type=int, default=DEFAULT_MAX_SCANS_PER_CLIENT,
                        help="the service's cap on one client's scans in flight, 0: none (default: %(default)s)")
    parser.add_argument("--abuse-honor-retry-after", action="store_true",
                        help="abusive scanners wait Retry-After after a 429 (default: they send the next request at once)")
    parser.add_argument("--rounds", type=int, default=3, help="clean/abuse round pairs, alternating (default: %(default)s)")
    parser.add_argument("--abuse-warmup", type=float, default=3.0,
                        help="seconds the abusers run before the normal traffic starts (default: %(default)s)")
    parser.add_argument("--out", default=str(RESULTS / "service_load"), help="output path without extension")
    args = parser.parse_args(argv)
    for name in ("scan_requests", "generate_requests", "concurrency", "steps", "burst", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    import torch

    from safetext.generator import SafeTextGenerator
    from safetext.policy import load_policy
    from safetext.service import ServiceLimits
    from safetext.service.worker import default_threads

    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    run_started = time.perf_counter()
    policy = load_policy(args.policy)
    pipe, model_name = build_pipeline(args)
    generator = SafeTextGenerator(pipe, policy=policy)
    token = secrets.token_urlsafe(32)
    limits = ServiceLimits(max_steps=max(args.steps, 40)).resolve(generator)  # the defaults the service derives
    native = limits.native(generator)
    del generator, pipe  # the service builds its own, in its own process
    scan_bodies = [{"prompt": p} for p in prompts(args.scan_requests)]
    gen_bodies = [{"prompt": p, "seed": i, "steps": args.steps} for i, p in enumerate(prompts(args.generate_requests))]
    abusive_scans, abusive_gens = abusive_bodies(limits, native)
    abuse_clients = 0 if args.no_abuse else args.abuse_generate_clients

    rounds: list[dict] = []
    # One service for the clean and the abuse runs (same queue bound, same warm worker), rounds alternating.
    with ServiceProcess(args, token, limits, args.concurrency + abuse_clients) as server:
        drive(server.url, token, "/v1/scan", scan_bodies[:8], 1, args.timeout)  # warm-up, not reported
        drive(server.url, token, "/v1/generate", gen_bodies[:1], 1, args.timeout)
        for index in range(args.rounds):
            round_started = time.perf_counter()
            entry: dict = {"round": index + 1}
            with HealthPoller(server.url) as health:
                entry["clean"] = {"scan": drive(server.url, token, "/v1/scan", scan_bodies, args.concurrency, args.timeout),
                                  "generate": drive(server.url, token, "/v1/generate", gen_bodies, args.concurrency,
                                                    args.timeout)}
            entry["clean"]["healthz"] = health.summary()
            entry["clean"]["healthz_latencies"] = health.latencies
            if not args.no_abuse:
                with HealthPoller(server.url) as health, \
                        Abusers(server.url, token, "/v1/scan", abusive_scans, args.abuse_scan_clients, args.timeout,
                                "127.0.0.2", args.abuse_honor_retry_after) as scan_abuse, \
                        Abusers(server.url, token, "/v1/generate", abusive_gens, args.abuse_generate_clients,
                                args.timeout, "127.0.0.3", args.abuse_honor_retry_after) as gen_abuse:
                    time.sleep(args.abuse_warmup)  # the abusers' processes start and get going
                    entry["abuse"] = {
                        "scan": drive(server.url, token, "/v1/scan", scan_bodies, args.concurrency, args.timeout),
                        "generate": drive(server.url, token, "/v1/generate", gen_bodies, args.concurrency, args.timeout),
                    }
                entry["abuse"]["healthz"] = health.summary()
                entry["abuse"]["healthz_latencies"] = health.latencies
                entry["abuse"]["abusive_scan"] = {**scan_abuse.summary(), "prompt_chars": limits.max_prompt_chars}
                entry["abuse"]["abusive_generate"] = {
                    **gen_abuse.summary(), **{k: abusive_gens[0][k] for k in ("steps", "width", "height", "num_images")}}
            entry["seconds"] = round(time.perf_counter() - round_started, 1)
            rounds.append(entry)
            print(f"round {index + 1}/{args.rounds}: " + round_line(entry), flush=True)

    with ServiceProcess(args, token, limits, args.burst_queue) as server:
        burst_bodies = [gen_bodies[i % len(gen_bodies)] for i in range(args.burst)]
        burst = drive(server.url, token, "/v1/generate", burst_bodies, args.burst, args.timeout)
    burst["rejected_503"] = burst["statuses"].get("503", 0)
    burst.pop("latencies")
    burst.pop("latency_clients")
    burst.pop("worker_latencies")

    summary = summarize(rounds, args.no_abuse)
    errors = {"burst": sum(n for status, n in burst["statuses"].items() if status not in ("200", "503"))}
    for entry in rounds:
        for run in ("clean", "abuse"):
            for route, expected in (("scan", args.scan_requests), ("generate", args.generate_requests)):
                if run in entry:
                    key = f"{run}_{route}"
                    errors[key] = errors.get(key, 0) + expected - entry[run][route]["statuses"].get("200", 0)
    for entry in rounds:  # raw latencies are pooled in the summary, not written out
        for run in ("clean", "abuse"):
            if run in entry:
                entry[run].pop("healthz_latencies")
                for route in ("scan", "generate"):
                    entry[run][route].pop("latencies")
                    entry[run][route].pop("latency_clients")
                    entry[run][route].pop("worker_latencies")
    report = {
        "command": " ".join(["python benchmarks/service_load.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": model_name,
        "policy": policy.name,
        "steps": args.steps,
        "worker": args.worker,
        "worker_threads": (args.worker_threads or default_threads()) if args.worker == "process" else None,
        "worker_nice": args.worker_nice,
        "service": {"scan_rate": args.scan_rate or None, "scan_burst": args.scan_burst,
                    "max_scans_per_client": args.max_scans_per_client or None,
                    "max_queue": args.concurrency + abuse_clients},
        "abuse_honor_retry_after": args.abuse_honor_retry_after,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1m_at_start": load_at_start,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
        "rounds": rounds,
        "summary": summary,
        "burst": {**burst, "workers": 1, "max_queue": args.burst_queue},
        "limits": {"default_steps": limits.default_steps, "max_steps": limits.max_steps, "max_width": limits.max_width,
                   "max_height": limits.max_height, "max_images": limits.max_images, "max_compute": limits.max_compute,
                   "max_prompt_chars": limits.max_prompt_chars, "native": list(native)},
        "errors_other_than_503": errors,
        "wall_seconds": round(time.perf_counter() - run_started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    missed = not args.no_abuse and not all(summary["targets"].values())
    return 0 if not any(errors.values()) and not missed else 1


def round_line(entry: dict) -> str:
    parts = []
    for run in ("clean", "abuse"):
        if run in entry:
            r = entry[run]
            parts.append(f"{run}: scan p99 {r['scan']['p99_ms']} ms, generate p99 {r['generate']['p99_ms']} ms, "
                         f"healthz p99 {r['healthz']['p99_ms']} ms")
    if "abuse" in entry:
        parts.append(f"abusive scans {entry['abuse']['abusive_scan']['statuses']}")
    return "; ".join(parts)


def summarize(rounds: list[dict], no_abuse: bool) -> dict:
    """Pooled p50/p99 over all rounds per run and route, the per-round p99 ratios, and the targets."""
    pooled: dict = {}
    for run in ("clean", "abuse"):
        if run not in rounds[0]:
            continue
        pooled[run] = {}
        for route in ("scan", "generate"):
            values = [v for entry in rounds for v in entry[run][route]["latencies"]]
            by_client: dict[str, list[float]] = {}
            for entry in rounds:
                for v, address in zip(entry[run][route]["latencies"], entry[run][route]["latency_clients"]):
                    by_client.setdefault(address, []).append(v)
            worker = [v for entry in rounds for v in entry[run][route]["worker_latencies"]]
            pooled[run][route] = {"requests": len(values), "p50_ms": percentile_ms(values, 50),
                                  "p99_ms": percentile_ms(values, 99), "worker_p50_ms": percentile_ms(worker, 50),
                                  "clients": {a: {"requests": len(v), "p50_ms": percentile_ms(v, 50),
                                                  "p99_ms": percentile_ms(v, 99)} for a, v in sorted(by_client.items())}}
        health = [v for entry in rounds for v in entry[run]["healthz_latencies"]]
        pooled[run]["healthz"] = {"polls": len(health), "p50_ms": percentile_ms(health, 50),
                                  "p99_ms": percentile_ms(health, 99),
                                  "max_ms": round(max(health) * 1000, 1) if health else None,
                                  "failures": sum(entry[run]["healthz"]["failures"] for entry in rounds)}
    summary: dict = {"pooled": pooled, "targets": {}}
    if no_abuse:
        return summary
    for route in ("scan", "generate"):
        ratios = [round(e["abuse"][route]["p99_ms"] / e["clean"][route]["p99_ms"], 2) for e in rounds
                  if e["abuse"][route]["p99_ms"] and e["clean"][route]["p99_ms"]]
        summary[f"{route}_p99_ratio_per_round"] = ratios
        summary[f"{route}_p99_ratio_pooled"] = round(pooled["abuse"][route]["p99_ms"] / pooled["clean"][route]["p99_ms"], 2)
    throttled = sum(e["abuse"]["abusive_scan"]["statuses"].get("429", 0) for e in rounds)
    sent = sum(e["abuse"]["abusive_scan"]["requests"] for e in rounds)
    summary["abusive_scans"] = {"sent": sent, "throttled_429": throttled,
                                "answered_200": sum(e["abuse"]["abusive_scan"]["statuses"].get("200", 0) for e in rounds)}
    summary["targets"] = {
        "healthz_p99_under_100ms": pooled["abuse"]["healthz"]["p99_ms"] is not None and pooled["abuse"]["healthz"]["p99_ms"] < 100,
        "scan_p99_within_2x": _within(pooled["abuse"]["scan"]["p99_ms"], pooled["clean"]["scan"]["p99_ms"]),
        "generate_p99_within_2x": _within(pooled["abuse"]["generate"]["p99_ms"], pooled["clean"]["generate"]["p99_ms"]),
    }
    return summary


def _within(value: float | None, reference: float | None, factor: float = 2.0) -> bool:
    return value is not None and reference is not None and value <= factor * reference


def markdown(r: dict) -> str:
    env, svc, summary = r["environment"], r["service"], r["summary"]
    pooled = summary["pooled"]
    rounds = r["rounds"]
    worker = (f"a separate process with {r['worker_threads']} torch thread(s)"
              + (f", nice {r['worker_nice']}" if r["worker_nice"] else "") if r["worker"] == "process"
              else "a thread of the service's process")
    lines = [
        "# HTTP service load (loopback)",
        "",
        f"Model: {r['model']}; policy `{r['policy']}`; {r['steps']} steps per image; one generation worker, {worker}.",
        f"Python {env['python']}, torch {env['torch']}, {env['cpu_count']} CPU cores, 1-minute load average "
        f"{env['load_average_1m_at_start']} at start and {env['load_average_1m_at_end']} at the end (other jobs shared "
        "the cores).",
        f"Produced by `{r['command']}` on loopback. The service runs in its own process (as `safetext serve`), the "
        "measuring clients in the benchmark's process, each abusive client in a process of its own; all share the "
        "machine's cores. Scan limits per client: "
        + (f"{svc['scan_rate']:,.0f} characters/s" if svc["scan_rate"] else "no rate limit")
        + (f", at most {svc['max_scans_per_client']} in flight" if svc["max_scans_per_client"] else "")
        + f"; queue bound {svc['max_queue']}.",
        "Latencies are client-side (queueing included), pooled over "
        f"{len(rounds)} round(s); each round runs the clean traffic, then the same traffic under abuse, on the same service "
        f"(rounds took {', '.join(str(e['seconds']) for e in rounds)} s; the whole run {r['wall_seconds']} s). "
        "*worker* is the generation time inside the service.",
        "",
        "| route | run | requests | p50 ms | p99 ms | p99 per round ms | worker p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for route in ("scan", "generate"):
        for run in ("clean", "abuse"):
            if run in pooled:
                per_round = ", ".join(str(e[run][route]["p99_ms"]) for e in rounds)
                p = pooled[run][route]
                lines.append(f"| `/v1/{route}` | {run} | {p['requests']} | {p['p50_ms']} | {p['p99_ms']} | {per_round} | "
                             f"{p['worker_p50_ms'] if p['worker_p50_ms'] is not None else '-'} |")
    for run in ("clean", "abuse"):
        if run in pooled:
            h = pooled[run]["healthz"]
            lines.append(f"| `/healthz` (every 50 ms) | {run} | {h['polls']} | {h['p50_ms']} | {h['p99_ms']} | "
                         f"{', '.join(str(e[run]['healthz']['p99_ms']) for e in rounds)} | - |")
    if "abuse" in pooled:
        lim = r["limits"]
        sa, ga = rounds[0]["abuse"]["abusive_scan"], rounds[0]["abuse"]["abusive_generate"]
        abused = summary["abusive_scans"]
        targets = summary["targets"]
        lines += [
            "",
            "## Abuse run",
            "",
            f"Service limits derived from the model (native {lim['native'][0]}x{lim['native'][1]}): default "
            f"{lim['default_steps']} steps, at most {lim['max_steps']}, {lim['max_height']}x{lim['max_width']} px, "
            f"{lim['max_images']} images, compute budget {lim['max_compute']:,} step-pixels, prompts up to "
            f"{lim['max_prompt_chars']} characters.",
            f"Alongside the normal traffic, {sa['clients']} client(s) sent {sa['prompt_chars']}-character whitespace "
            "prompts to `/v1/scan` without pause ("
            + ("waiting Retry-After after a 429" if r["abuse_honor_retry_after"] else "ignoring Retry-After")
            + f"): {abused['sent']} requests over all rounds, {abused['throttled_429']} throttled (429), "
            f"{abused['answered_200']} scanned; and {ga['clients']} client(s) sent maximum-budget generations "
            f"({ga['num_images']} images of {ga['height']}x{ga['width']} at {ga['steps']} steps; "
            f"{sum(e['abuse']['abusive_generate']['requests'] for e in rounds)} requests).",
            "",
            "| normal clients | clean p99 ms | under abuse p99 ms | ratio (pooled) | ratio per round | target |",
            "|---|---|---|---|---|---|",
        ]
        for route in ("scan", "generate"):
            ratios = summary[f"{route}_p99_ratio_per_round"]
            spread = (f"{', '.join(map(str, ratios))} (min {min(ratios)}, max {max(ratios)})" if ratios else "-")
            met = targets[f"{route}_p99_within_2x"]
            lines.append(f"| `/v1/{route}` | {pooled['clean'][route]['p99_ms']} | {pooled['abuse'][route]['p99_ms']} | "
                         f"{summary[f'{route}_p99_ratio_pooled']} | {spread} | <= 2x: {'met' if met else 'MISSED'} |")
        h = pooled["abuse"]["healthz"]
        lines += [
            "",
            f"`/healthz` under abuse: p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms, max {h['max_ms']} ms ({h['polls']} polls, "
            f"{h['failures']} failures); target p99 < 100 ms: {'met' if targets['healthz_p99_under_100ms'] else 'MISSED'}.",
            "",
            "Per normal client (its own loopback address), pooled over the rounds:",
            "",
            "| client | route | clean p50 ms | clean p99 ms | abuse p50 ms | abuse p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        for route in ("scan", "generate"):
            clean, abuse = pooled["clean"][route]["clients"], pooled["abuse"][route]["clients"]
            for address in sorted(set(clean) | set(abuse)):
                c, a = clean.get(address, {}), abuse.get(address, {})
                lines.append(f"| {address} | `/v1/{route}` | {c.get('p50_ms')} | {c.get('p99_ms')} | {a.get('p50_ms')} | "
                             f"{a.get('p99_ms')} |")
        lines.append("")
    b = r["burst"]
    lines += [
        "",
        f"Overload: {b['requests']} simultaneous `/v1/generate` requests against 1 worker and a queue of "
        f"{b['max_queue']}: {b['statuses'].get('200', 0)} answered 200, {b['rejected_503']} rejected with 503 "
        f"(slowest rejection {b['max_ms_503']} ms, while accepted requests took up to {b['max_ms']} ms).",
        "",
        f"Errors other than the deliberate 503s: {sum(r['errors_other_than_503'].values())} "
        f"({', '.join(f'{k} {v}' for k, v in r['errors_other_than_503'].items())}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
