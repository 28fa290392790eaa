"""Load benchmark of the HTTP service on loopback: requests/s and p50/p99 latency, then a deliberate overload.

    OMP_NUM_THREADS=1 python benchmarks/service_load.py [--model DIR | --untrained | --tiny] [--scan-requests 400]
        [--generate-requests 24] [--concurrency 4] [--steps 20]

Starts the service in this process (uvicorn on 127.0.0.1, a random free port, bearer-token auth on),
then drives it over real HTTP with ``--concurrency`` client threads:

1. ``POST /v1/scan``: ``--scan-requests`` prompts (half clean, half toxic); every answer must be 200.
2. ``POST /v1/generate``: ``--generate-requests`` prompts, same mix; the queue bound is at least the
   number of clients, so every answer must be 200 (a blocked prompt would be a 403 and counts as an error).
3. Overload: a second service with one worker and ``--burst-queue`` waiting places receives
   ``--burst`` simultaneous generations; the answers must be 200 or 503 (the deliberate rejections).

Every phase is bounded by its request count and a per-request timeout. Writes
``benchmarks/results/service_load.json`` and ``.md``; exits 1 when any error other than the
deliberate 503s occurred.
"""

from __future__ import annotations

import argparse
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


def drive(url: str, token: str, route: str, bodies: list[dict], concurrency: int, timeout: float) -> dict:
    """Send ``bodies`` to ``route`` from ``concurrency`` threads; latencies and status counts."""
    import httpx

    local = threading.local()
    clients: list[httpx.Client] = []

    def one(body: dict) -> tuple[int | str, float, str | None, float | None]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
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
    parser.add_argument("--out", default=str(RESULTS / "service_load"), help="output path without extension")
    args = parser.parse_args(argv)
    for name in ("scan_requests", "generate_requests", "concurrency", "steps", "burst"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    import torch

    from safetext.generator import SafeTextGenerator
    from safetext.policy import load_policy
    from safetext.service import BackgroundServer, ServiceLimits, create_app

    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    policy = load_policy(args.policy)
    pipe, model_name = build_pipeline(args)
    generator = SafeTextGenerator(pipe, policy=policy)
    token = secrets.token_urlsafe(32)
    limits = ServiceLimits(max_steps=max(args.steps, 50))
    scan_bodies = [{"prompt": p} for p in prompts(args.scan_requests)]
    gen_bodies = [{"prompt": p, "seed": i, "steps": args.steps} for i, p in enumerate(prompts(args.generate_requests))]

    app = create_app(generator, policy, token=token, max_queue=args.concurrency, limits=limits)
    with BackgroundServer(app, host=HOST) as server:
        drive(server.url, token, "/v1/scan", scan_bodies[:8], 1, args.timeout)  # warm-up, not reported
        drive(server.url, token, "/v1/generate", gen_bodies[:1], 1, args.timeout)
        scan = drive(server.url, token, "/v1/scan", scan_bodies, args.concurrency, args.timeout)
        generate = drive(server.url, token, "/v1/generate", gen_bodies, args.concurrency, args.timeout)

    burst_app = create_app(generator, policy, token=token, max_queue=args.burst_queue, limits=limits)
    with BackgroundServer(burst_app, host=HOST) as server:
        burst_bodies = [gen_bodies[i % len(gen_bodies)] for i in range(args.burst)]
        burst = drive(server.url, token, "/v1/generate", burst_bodies, args.burst, args.timeout)
    burst["rejected_503"] = burst["statuses"].get("503", 0)

    errors = {
        "scan": args.scan_requests - scan["statuses"].get("200", 0),
        "generate": args.generate_requests - generate["statuses"].get("200", 0),
        "burst": sum(n for status, n in burst["statuses"].items() if status not in ("200", "503")),
    }
    report = {
        "command": " ".join(["python benchmarks/service_load.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": model_name,
        "policy": policy.name,
        "steps": args.steps,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1m_at_start": load_at_start,
        },
        "scan": scan,
        "generate": generate,
        "burst": {**burst, "workers": 1, "max_queue": args.burst_queue},
        "errors_other_than_503": errors,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0 if not any(errors.values()) else 1


def markdown(r: dict) -> str:
    env = r["environment"]
    lines = [
        "# HTTP service load (loopback)",
        "",
        f"Model: {r['model']}; policy `{r['policy']}`; {r['steps']} steps per image; one generation worker.",
        f"Python {env['python']}, torch {env['torch']} ({env['torch_threads']} thread(s)), {env['cpu_count']} CPU cores, "
        f"1-minute load average {env['load_average_1m_at_start']} at start (other jobs shared the cores).",
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
        f"Errors other than the deliberate 503s: {sum(r['errors_other_than_503'].values())} "
        f"({', '.join(f'{k} {v}' for k, v in r['errors_other_than_503'].items())}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
