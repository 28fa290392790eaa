"""Latency of SafeTextGenerator on compiled denoisers, and recompilations across clean/flagged requests.

For each model (the embedded glyph model and the tiny SD1.5/SDXL/SD3/Flux pipelines of
``tests/tiny_pipelines.py``) and each compile mode its family supports (in-place ``Module.compile``,
the ``torch.compile(module)`` wrapper, diffusers' regional ``compile_repeated_blocks``; on SD3, which
declares no ``_repeated_blocks``, each block's ``compile()`` instead), two identical
pipelines are built: one compiled raw (no safetext anywhere), one compiled and wrapped in a
SafeTextGenerator. Both are compiled the same way with the same backend (default inductor, the default
of ``torch.compile``) and get the same warm-up (every variant ``--warmup`` times). Then:

* *recompilations*: graphs dynamo compiles during 20 alternating clean/flagged guarded calls
  (``torch._dynamo.utils.counters["stats"]["unique_graphs"]``; 0 = none), and during the timed rounds;
* *latency*: the four variants (raw/guarded x clean/flagged) plus an A/A control (the raw clean call
  timed a second time in each round) run interleaved, in an order rotating round by round, so drifts in
  machine load hit every variant alike. Ratios guarded/raw are the medians of the per-round ratios
  (each round pairs calls made seconds apart), in the thread's CPU time (one torch thread, so the
  compiled kernels run in the calling thread; a busy shared machine disturbs it far less than wall-clock
  time) and in wall-clock time, with the 10th-90th percentile spread of the per-round ratios. The A/A
  control's ratio shows the noise floor: a ratio within the control's spread of 1 is no difference;
* *outputs*: compiled guarded clean vs compiled raw clean (bit-identity expected), compiled guarded
  flagged vs eager guarded flagged (max abs difference; the compiler's own rounding, compiled raw vs
  eager raw, is shown beside it; tolerance 1e-4 on images in [0, 1]).

    python benchmarks/compiled_overhead.py                       # every model and mode, inductor
    python benchmarks/compiled_overhead.py --only sd15 --modes Module.compile --backend aot_eager
    python benchmarks/compiled_overhead.py --only glyph --steps 10   # re-measure the glyph rows, keep the others

Writes ``benchmarks/results/compiled_overhead.{json,md}``. Target (issue 20): compiled guarded flagged
<= 1.05x compiled raw, no recompilation after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safetext.generator import SafeTextGenerator  # noqa: E402
from safetext.policy import load_policy  # noqa: E402
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS  # noqa: E402

CLEAN_PROMPT = 'A red sign that says "hello".'
FLAGGED_PROMPT = 'A red sign that says "shit".'
TARGET_FLAGGED = 1.05
TOLERANCE = 1e-4
MODELS = ("glyph", "sd15", "sdxl", "sd3", "flux")
MODES = ("Module.compile", "torch.compile", "compile_repeated_blocks")
#: what ``compile_repeated_blocks`` runs as on a model that declares no ``_repeated_blocks`` (SD3): each block's
#: ``compile()``, which is what ``compile_repeated_blocks`` does for the models that declare them
PER_BLOCK = "block.compile()"
VARIANTS = ("raw_clean", "guarded_clean", "raw_flagged", "guarded_flagged", "raw_clean_control")


def build(name: str, steps: int) -> tuple[Any, dict[str, Any]]:
    """A fresh pipeline and its call arguments (``glyph``: the shipped model)."""
    if name == "glyph":
        from safetext.models.glyph import load_glyph_pipeline

        pipe = load_glyph_pipeline()
        pipe.set_progress_bar_config(disable=True)
        return pipe, {"num_inference_steps": steps, "output_type": "pt"}
    return TINY_BUILDERS[name](), dict(TINY_CALL_KWARGS[name], num_inference_steps=steps)


def denoiser_attribute(pipe: Any) -> str:
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def unsupported(pipe: Any, mode: str) -> str | None:
    """Why ``mode`` does not apply to this pipeline's denoiser (``None``: it does)."""
    module = getattr(pipe, denoiser_attribute(pipe))
    if mode == "compile_repeated_blocks" and not getattr(module, "_repeated_blocks", None):
        if getattr(module, "transformer_blocks", None) is None:
            return f"diffusers' {type(module).__name__} declares no _repeated_blocks"
    return None


def compile_pipe(pipe: Any, mode: str, backend: str) -> None:
    attribute = denoiser_attribute(pipe)
    module = getattr(pipe, attribute)
    if mode == "torch.compile":
        setattr(pipe, attribute, torch.compile(module, backend=backend))
    elif mode == "Module.compile":
        module.compile(backend=backend)
    elif mode == PER_BLOCK:
        for block in module.transformer_blocks:
            block.compile(backend=backend)
    else:
        module.compile_repeated_blocks(backend=backend)


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn()
    return time.perf_counter() - wall, time.thread_time() - cpu, result


def _spread(values: list[float]) -> list[float]:
    """10th and 90th percentiles."""
    if len(values) < 2:
        return [values[0], values[0]]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return [round(deciles[0], 4), round(deciles[-1], 4)]


def bench_one(name: str, mode: str, backend: str, rounds: int, warmup: int, steps: int) -> dict[str, Any]:
    policy = load_policy("default")
    raw_pipe, kwargs = build(name, steps)
    guarded_pipe, _ = build(name, steps)
    gen = SafeTextGenerator(guarded_pipe, policy=policy)

    def call(target: Any, prompt: str) -> Callable[[], Any]:
        def run() -> Any:
            return target(prompt, generator=torch.Generator().manual_seed(0), **kwargs)

        return run

    eager_flagged = call(gen, FLAGGED_PROMPT)().images
    eager_raw_flagged = call(raw_pipe, FLAGGED_PROMPT)().images
    torch._dynamo.reset()
    graphs_before = _graphs()
    compile_pipe(raw_pipe, mode, backend)
    compile_pipe(guarded_pipe, mode, backend)
    variants = {
        "raw_clean": call(raw_pipe, CLEAN_PROMPT),
        "guarded_clean": call(gen, CLEAN_PROMPT),
        "raw_flagged": call(raw_pipe, FLAGGED_PROMPT),
        "guarded_flagged": call(gen, FLAGGED_PROMPT),
        "raw_clean_control": call(raw_pipe, CLEAN_PROMPT),
    }
    started = time.perf_counter()
    first = {key: variants[key]() for key in VARIANTS}  # each variant traces/compiles here
    for _ in range(warmup - 1):
        for key in VARIANTS:
            variants[key]()
    warmup_seconds = time.perf_counter() - started
    graphs_warm = _graphs()
    for index in range(20):  # 20 alternating guarded calls after warm-up: count new graphs
        variants["guarded_clean" if index % 2 == 0 else "guarded_flagged"]()
    alternating = _graphs() - graphs_warm

    wall: dict[str, list[float]] = {key: [] for key in VARIANTS}
    cpu: dict[str, list[float]] = {key: [] for key in VARIANTS}
    record: list[float] = []  # thread CPU seconds of each flagged request's recording
    from safetext.patching import kv_patch

    recorder = kv_patch.record_denoiser_inputs
    spent: list[float] = []

    def timed_recording(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return recorder(*args, **kwargs)
        finally:
            spent.append(time.thread_time() - started)

    kv_patch.record_denoiser_inputs = timed_recording
    graphs_timing = _graphs()
    for round_index in range(rounds):
        shift = round_index % len(VARIANTS)
        for key in VARIANTS[shift:] + VARIANTS[:shift]:
            wall_seconds, cpu_seconds, output = _timed(variants[key])
            wall[key].append(wall_seconds)
            cpu[key].append(cpu_seconds)
            if key == "guarded_flagged":
                record.append(spent[-1])
    graphs_in_timing = _graphs() - graphs_timing
    kv_patch.record_denoiser_inputs = recorder

    def ratios(times: dict[str, list[float]], guarded: str, raw: str) -> list[float]:
        return [g / r for g, r in zip(times[guarded], times[raw], strict=True)]

    pairs = {
        "clean": ("guarded_clean", "raw_clean"),
        "flagged": ("guarded_flagged", "raw_flagged"),
        "control": ("raw_clean_control", "raw_clean"),
    }
    summary: dict[str, Any] = {}
    for label, (guarded, raw) in pairs.items():
        for clock, times in (("cpu", cpu), ("wall", wall)):
            values = ratios(times, guarded, raw)
            summary[f"{label}_ratio_{clock}"] = round(statistics.median(values), 4)
            summary[f"{label}_spread_{clock}"] = _spread(values)
        # noise from other work on the machine only ever adds time: the ratio of the fastest calls is the
        # most load-robust estimate
        summary[f"{label}_ratio_fastest_cpu"] = round(min(cpu[guarded]) / min(cpu[raw]), 4)
    verdict = first["guarded_flagged"].verdict
    compiled_raw_flagged = first["raw_flagged"].images
    result = {
        "model": name,
        "mode": mode,
        "backend": backend,
        "family": gen.patch.adapter.family,
        "strategy": gen.patch.adapter.strategy,
        "layer_map": f"{gen.layer_map.name} ({len(gen.resolved.layers)} layer(s))",
        "steps": kwargs["num_inference_steps"],
        "median_cpu_seconds": {key: round(statistics.median(v), 5) for key, v in cpu.items()},
        "median_wall_seconds": {key: round(statistics.median(v), 5) for key, v in wall.items()},
        **summary,
        "flagged_recording_ms": round(1000 * statistics.median(record), 3),
        "warmup_seconds": round(warmup_seconds, 2),
        "graphs_at_warmup": graphs_warm - graphs_before,
        "graphs_compiled_in_20_alternating_calls": alternating,
        "graphs_compiled_in_timed_rounds": graphs_in_timing,
        "clean_equals_compiled_raw": bool(torch.equal(first["guarded_clean"].images, first["raw_clean"].images)),
        "clean_max_abs_difference": float((first["guarded_clean"].images - first["raw_clean"].images).abs().max()),
        "flagged_max_abs_difference_to_eager": float((first["guarded_flagged"].images - eager_flagged).abs().max()),
        "compiler_rounding_raw_flagged": float((compiled_raw_flagged - eager_raw_flagged).abs().max()),
        "patch_effect_max_abs": float((eager_flagged - eager_raw_flagged).abs().max()),
        "flagged_changed": bool(not torch.equal(first["guarded_flagged"].images, compiled_raw_flagged)),
        "flagged_action": verdict.action.value,
        "compile_mode": verdict.details.get("compile_mode"),
        "acted_steps_min": min(min(c.values()) for c in verdict.details["acted_steps"].values()),
        "rounds": rounds,
        "load_average": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    del raw_pipe, guarded_pipe, gen
    torch._dynamo.reset()
    return result


def _ratio(row: dict[str, Any], label: str, clock: str) -> str:
    low, high = row[f"{label}_spread_{clock}"]
    return f"{row[f'{label}_ratio_{clock}']:.3f}x [{low:.2f}, {high:.2f}]"


def to_markdown(rows: list[dict[str, Any]], skipped: list[dict[str, str]], meta: dict[str, Any]) -> str:
    lines = [
        "# SafeTextGenerator on compiled denoisers (guarded / compiled raw latency)",
        "",
        f"Backend `{meta['backend']}`; {meta['warmup']} warm-up call(s) of every variant, then "
        f"{' or '.join(sorted({str(row.get('rounds', meta['rounds'])) for row in rows}))} interleaved rounds (*rounds* in "
        f"the second table); torch {meta['torch']} on {meta['machine']}, {meta['threads']} torch thread(s), "
        f"{meta['cpus']} CPUs shared with other work (*load average*: 1 / 5 / 15 minutes, when the row was measured; "
        f"rows measured on {', '.join(meta['measured'])}). Clean prompt "
        f"`{CLEAN_PROMPT}`, flagged `{FLAGGED_PROMPT}` (policy `default`). Compiled raw = an identical pipeline "
        "compiled the same way, with no safetext. Ratios: median of the per-round ratios guarded/raw in the "
        "thread's CPU time, [10th, 90th percentile]; *fastest* = ratio of the fastest calls (machine load only adds "
        "time, so this is the most load-robust estimate); *A/A* = the raw clean call against itself (the noise floor). "
        f"*new graphs* = graphs dynamo compiled during 20 alternating clean/flagged guarded calls after warm-up, "
        f"and during the timed rounds (0 = no recompilation). Tolerance for compiled vs eager: {TOLERANCE:g} "
        "(images in [0, 1]).",
        "",
        "| model | compile | steps | layer map | clean ratio (CPU) | flagged ratio (CPU) | target | A/A (CPU) | "
        "fastest, clean / flagged / A/A (CPU) | load average | flagged ratio (wall) | new graphs | clean = compiled raw | flagged vs eager guarded | compiler rounding (raw) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ok = "met" if row["flagged_ratio_cpu"] <= TARGET_FLAGGED else "**over**"
        clean = "bit-identical" if row["clean_equals_compiled_raw"] else f"max abs {row['clean_max_abs_difference']:.2e}"
        lines.append(
            f"| {row['model']} | {row['mode']} | {row['steps']} | {row['layer_map']} | {_ratio(row, 'clean', 'cpu')} | "
            f"{_ratio(row, 'flagged', 'cpu')} | <= {TARGET_FLAGGED}x {ok} | {_ratio(row, 'control', 'cpu')} | "
            f"{row['clean_ratio_fastest_cpu']:.3f}x / {row['flagged_ratio_fastest_cpu']:.3f}x / "
            f"{row['control_ratio_fastest_cpu']:.3f}x | {row['load_average']} | {_ratio(row, 'flagged', 'wall')} | {row['graphs_compiled_in_20_alternating_calls']} / "
            f"{row['graphs_compiled_in_timed_rounds']} | {clean} | {row['flagged_max_abs_difference_to_eager']:.1e} | "
            f"{row['compiler_rounding_raw_flagged']:.1e} | {row['flagged_action']} |"
        )
    for skip in skipped:
        lines.append(f"| {skip['model']} | {skip['mode']} | | | not run: {skip['reason']} | | | | | | | | | | | |")
    lines += [
        "",
        "Median CPU seconds per call, the flagged request's recording (the sanitized prompt's encoding, eager; CPU "
        "ms of the calling thread: the verdict's `patch_overhead_seconds` is wall-clock time, which a loaded machine "
        "stretches several-fold), "
        "warm-up time and graphs compiled at warm-up (raw + guarded):",
        "",
        "| model | compile | raw clean | guarded clean | raw flagged | guarded flagged | recording CPU ms | warm-up s | graphs at warm-up | rounds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = row["median_cpu_seconds"]
        lines.append(
            f"| {row['model']} | {row['mode']} | "
            + " | ".join(f"{m[k]:.4f}" for k in ("raw_clean", "guarded_clean", "raw_flagged", "guarded_flagged"))
            + f" | {row['flagged_recording_ms']:.1f} | {row['warmup_seconds']:.0f} | {row['graphs_at_warmup']} | "
            f"{row.get('rounds', meta['rounds'])} |"
        )
    lines += ["", meta["note"], ""]
    return "\n".join(lines)


NOTE = (
    "How the patch runs compiled. Whole-module `torch.compile` / `Module.compile`: resident patch points, "
    "installed once per denoiser before its first compiled call, pass every text K/V projection's output "
    "through the custom operator `safetext::kv_projection`; the compiler keeps it as one opaque call (no graph "
    "break), and at run time it reads the request's patch from a context variable: a copy of the projection's "
    "output for a clean request, the target's rows for a flagged one. One graph serves both (SD3/Flux compile "
    "one more, at warm-up, for the batch that carries the target rows). Regional compilation "
    "(`compile_repeated_blocks`, `block.compile()`): the user's compiled blocks keep no patch point, so a clean "
    "request runs exactly the compiled raw graphs; a flagged request runs each block's flagged variant (a "
    "shallow copy with the patch points, compiled with the user's options, traced at warm-up and cached: "
    "*graphs at warm-up* counts them), chosen per call from the same context variable. The operator's layer "
    "index is a tensor, so blocks that differ only in it share one graph (as an int it made dynamo trace one "
    "graph per layer until its recompile limit of 8, after which the remaining blocks ran uncompiled: the "
    "earlier clean differences under regional compilation). The flagged cost over raw is the recording of the "
    "sanitized prompt (the pipeline's own prompt encoding, eager: *recording ms*), the row replacements and, on "
    "SD3/Flux (`extra_rows`), the target rows that run through the denoiser beside the user's (one more batch "
    "row per prompt at every step: the eager `overhead.md` target for them is 1.6x). The clean cost is the "
    "operator's copy per text K/V projection (whole-module modes only) and the policy check. Ratios below 1 are "
    "measurement noise (compare the A/A column); ratios are paired per round in thread CPU time with one torch "
    "thread, which removes most of the load swings of a shared machine."
)


def merged(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """``rows`` and the rows of an earlier result file at ``path`` for models and modes not measured now (in the
    earlier order, re-measured rows in their place); an earlier row without its own load average takes the
    one its file recorded at the end of its run."""
    if not path.exists():
        return rows
    earlier = json.loads(path.read_text())
    fresh = {(row["model"], row["mode"]): row for row in rows}
    out = []
    for row in earlier.get("results", []):
        row = fresh.pop((row["model"], row["mode"]), None) or {
            "load_average": earlier["meta"]["load_average"], "rounds": earlier["meta"]["rounds"],
            "measured": "an earlier run", **row,
        }
        out.append(row)
    return out + list(fresh.values())


def write(rows: list[dict[str, Any]], skipped: list[dict[str, str]], args: argparse.Namespace) -> None:
    if not args.fresh:
        rows = merged(rows, args.out / "compiled_overhead.json")
    meta = {
        "backend": args.backend,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "load_average": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "measured": sorted({row["measured"][:10] if row["measured"][:1].isdigit() else row["measured"] for row in rows}),
        "cpus": os.cpu_count(),
        "note": NOTE,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "target_flagged": TARGET_FLAGGED, "tolerance": TOLERANCE, "results": rows, "skipped": skipped}
    (args.out / "compiled_overhead.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "compiled_overhead.md").write_text(to_markdown(rows, skipped, meta))
    print(f"wrote {args.out / 'compiled_overhead.json'} and {args.out / 'compiled_overhead.md'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), help="models (glyph and tiny pipeline names)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES, help="compile modes")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default 20, the glyph model's)")
    parser.add_argument("--rounds", type=int, default=12, help="timed interleaved rounds (default 12)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up calls of every variant (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time is the thread's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    parser.add_argument(
        "--fresh", action="store_true", help="write only this run's rows (default: keep the other rows of the result file)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for name in args.only:
        for mode in args.modes:
            probe, _ = build(name, args.steps) if mode == "compile_repeated_blocks" else (None, None)
            reason = unsupported(probe, mode) if probe is not None else None
            if reason is not None:
                skipped.append({"model": name, "mode": mode, "reason": reason})
                print(f"{name:>6} {mode}: not run ({reason})", flush=True)
                continue
            if probe is not None and not getattr(getattr(probe, denoiser_attribute(probe)), "_repeated_blocks", None):
                mode = PER_BLOCK
            row = bench_one(name, mode, args.backend, args.rounds, args.warmup, args.steps)
            rows.append(row)
            print(
                f"{name:>6} {mode:<24} clean {_ratio(row, 'clean', 'cpu')} flagged {_ratio(row, 'flagged', 'cpu')} "
                f"A/A {_ratio(row, 'control', 'cpu')} new graphs {row['graphs_compiled_in_20_alternating_calls']}/"
                f"{row['graphs_compiled_in_timed_rounds']} clean=raw {row['clean_equals_compiled_raw']} "
                f"flagged-vs-eager {row['flagged_max_abs_difference_to_eager']:.1e} warm-up {row['warmup_seconds']} s",
                flush=True,
            )
            write(rows, skipped, args)  # after every row, so a long run keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
