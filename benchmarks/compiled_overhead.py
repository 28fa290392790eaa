"""Latency of SafeTextGenerator on compiled denoisers, and recompilations across clean/flagged requests.

For each model (the embedded glyph model, the tiny SD1.5 pipeline, and optionally other tiny pipelines),
two identical pipelines are built: one compiled raw (no safetext anywhere), one compiled and wrapped in
a SafeTextGenerator (whose resident patch points are in place before the first compiled call). Both are
compiled the same way (``--mode``: ``Module.compile`` in place, ``torch.compile`` wrapper, or
``compile_repeated_blocks``; ``--backend``, default inductor). After warm-up (each variant once) the
four variants run interleaved in a rotating order, and the script reports median latency ratios
guarded/raw for the clean and the flagged prompt, the number of graphs dynamo compiled during 20
alternating clean/flagged guarded calls after warm-up (``torch._dynamo.utils.counters``; 0 = no
recompilation), and how far the compiled outputs are from the eager ones: compiled guarded clean vs
compiled raw clean (bit-identity expected where the graph's kernels are the same), compiled guarded
flagged vs eager guarded flagged (max abs difference: compiled kernels round differently).

    OMP_NUM_THREADS=2 python benchmarks/compiled_overhead.py                  # glyph + sd15, inductor
    python benchmarks/compiled_overhead.py --only sd15 --backend aot_eager --rounds 3

Writes ``benchmarks/results/compiled_overhead.{json,md}``. Target (issue 20): compiled guarded flagged
<= 1.05x compiled raw on cross-attention models, no recompilation after warm-up.
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


def build(name: str) -> tuple[Any, dict[str, Any]]:
    """A fresh pipeline and its call arguments (``glyph``: the shipped model at 20 steps)."""
    if name == "glyph":
        from safetext.models.glyph import load_glyph_pipeline

        pipe = load_glyph_pipeline()
        pipe.set_progress_bar_config(disable=True)
        return pipe, {"num_inference_steps": 20, "output_type": "pt"}
    return TINY_BUILDERS[name](), dict(TINY_CALL_KWARGS[name])


def compile_pipe(pipe: Any, mode: str, backend: str) -> None:
    attribute = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    module = getattr(pipe, attribute)
    if mode == "torch.compile":
        setattr(pipe, attribute, torch.compile(module, backend=backend))
    elif mode == "Module.compile":
        module.compile(backend=backend)
    else:
        module.compile_repeated_blocks(backend=backend)


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def bench_one(name: str, mode: str, backend: str, rounds: int) -> dict[str, Any]:
    policy = load_policy("default")
    raw_pipe, kwargs = build(name)
    guarded_pipe, _ = build(name)
    gen = SafeTextGenerator(guarded_pipe, policy=policy)

    def call(target: Any, prompt: str) -> Callable[[], Any]:
        generator = torch.Generator().manual_seed(0)
        return lambda: target(prompt, generator=generator, **kwargs)

    eager_flagged = call(gen, FLAGGED_PROMPT)().images
    graphs_before_compile = _graphs()
    compile_pipe(raw_pipe, mode, backend)
    compile_pipe(guarded_pipe, mode, backend)
    variants = {
        "raw_clean": call(raw_pipe, CLEAN_PROMPT),
        "guarded_clean": call(gen, CLEAN_PROMPT),
        "raw_flagged": call(raw_pipe, FLAGGED_PROMPT),
        "guarded_flagged": call(gen, FLAGGED_PROMPT),
    }
    started = time.perf_counter()
    warm = {key: variants[key]() for key in variants}  # each variant traces/compiles here
    compile_seconds = time.perf_counter() - started
    graphs_warm = _graphs()
    for index in range(20):  # 20 alternating guarded calls after warm-up: count new graphs
        variants["guarded_clean" if index % 2 == 0 else "guarded_flagged"]()
    recompiled = _graphs() - graphs_warm
    names = list(variants)
    wall: dict[str, list[float]] = {key: [] for key in names}
    for round_index in range(rounds):
        order = names[round_index % 4 :] + names[: round_index % 4]
        for key in order:
            begin = time.perf_counter()
            variants[key]()
            wall[key].append(time.perf_counter() - begin)
    medians = {key: statistics.median(values) for key, values in wall.items()}
    verdict = warm["guarded_flagged"].verdict
    flagged_difference = float((warm["guarded_flagged"].images - eager_flagged).abs().max())
    result = {
        "model": name,
        "mode": mode,
        "backend": backend,
        "family": gen.patch.adapter.family,
        "layer_map": f"{gen.layer_map.name} ({len(gen.resolved.layers)} layer(s))",
        "steps": kwargs["num_inference_steps"],
        "median_seconds": {key: round(value, 5) for key, value in medians.items()},
        "clean_ratio": round(medians["guarded_clean"] / medians["raw_clean"], 4),
        "flagged_ratio": round(medians["guarded_flagged"] / medians["raw_flagged"], 4),
        "warmup_seconds": round(compile_seconds, 2),
        "graphs_at_warmup": graphs_warm - graphs_before_compile,
        "graphs_compiled_in_20_alternating_calls": recompiled,
        "clean_equals_compiled_raw": bool(torch.equal(warm["guarded_clean"].images, warm["raw_clean"].images)),
        "clean_max_abs_difference": float((warm["guarded_clean"].images - warm["raw_clean"].images).abs().max()),
        "flagged_max_abs_difference_to_eager": flagged_difference,
        "flagged_changed": bool(not torch.equal(warm["guarded_flagged"].images, warm["raw_flagged"].images)),
        "flagged_action": verdict.action.value,
        "compile_mode": verdict.details.get("compile_mode"),
        "acted_steps_min": min(min(c.values()) for c in verdict.details["acted_steps"].values()),
    }
    del raw_pipe, guarded_pipe, gen
    torch._dynamo.reset()
    return result


def to_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# SafeTextGenerator on compiled denoisers (guarded / compiled raw latency)",
        "",
        f"{meta['rounds']} interleaved rounds after warm-up, torch {meta['torch']} on {meta['machine']} with "
        f"{meta['threads']} thread(s); load average {meta['load_average']} on {meta['cpus']} CPUs while running "
        f"(a shared machine: wall-clock ratios move by several percent with the load). Clean prompt "
        f"`{CLEAN_PROMPT}`, flagged `{FLAGGED_PROMPT}` (policy `default`). Compiled raw = an identical pipeline "
        "compiled the same way, with no safetext. *new graphs* = graphs dynamo compiled during 20 alternating "
        "clean/flagged guarded calls after warm-up (0: no recompilation).",
        "",
        "| model | compile | backend | steps | layer map | clean ratio | flagged ratio | target | new graphs | "
        "graphs at warm-up | clean = compiled raw | flagged vs eager guarded (max abs) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ok = "ok" if row["flagged_ratio"] <= TARGET_FLAGGED else "over"
        clean = "bit-identical" if row["clean_equals_compiled_raw"] else f"max abs {row['clean_max_abs_difference']:.2e}"
        lines.append(
            f"| {row['model']} | {row['mode']} | {row['backend']} | {row['steps']} | {row['layer_map']} | "
            f"{row['clean_ratio']:.3f}x | {row['flagged_ratio']:.3f}x {ok} | <= {TARGET_FLAGGED}x | "
            f"{row['graphs_compiled_in_20_alternating_calls']} | {row['graphs_at_warmup']} | {clean} | "
            f"{row['flagged_max_abs_difference_to_eager']:.2e} | {row['flagged_action']} |"
        )
    lines += [
        "",
        "Median seconds per variant:",
        "",
        "| model | compile | raw clean | guarded clean | raw flagged | guarded flagged |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = row["median_seconds"]
        lines.append(
            f"| {row['model']} | {row['mode']} | "
            + " | ".join(f"{m[k]:.4f}" for k in ("raw_clean", "guarded_clean", "raw_flagged", "guarded_flagged"))
            + " |"
        )
    lines += ["", meta["note"], ""]
    return "\n".join(lines)


NOTE = (
    "How the patch runs compiled: resident patch points, installed once per denoiser before its first "
    "compiled call, call the custom operator `safetext::kv_projection` after each text K/V projection; the "
    "compiler keeps it as one opaque call (no graph break), and at run time it reads the request's patch from "
    "a context variable: a copy of the projection's output for a clean request, the target's rows for a "
    "flagged one. So one graph serves both and flagged requests do not recompile; the flagged cost over raw "
    "is the recording of the sanitized prompt (its prompt encoding, eager) and the row replacements. The "
    "clean cost is the operator's copy per text K/V projection. The eager/aot_eager backends reproduce the "
    "eager guarded image bit for bit; inductor's kernels round differently (difference column)."
)


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    meta = {
        "rounds": args.rounds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "load_average": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cpus": os.cpu_count(),
        "note": NOTE,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compiled_overhead.json").write_text(
        json.dumps({"meta": meta, "target_flagged": TARGET_FLAGGED, "results": rows}, indent=2) + "\n"
    )
    (args.out / "compiled_overhead.md").write_text(to_markdown(rows, meta))
    print(f"wrote {args.out / 'compiled_overhead.json'} and {args.out / 'compiled_overhead.md'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=["glyph", "sd15"], help="models (glyph and tiny pipeline names)")
    parser.add_argument("--mode", default="Module.compile", choices=["Module.compile", "torch.compile", "compile_repeated_blocks"])
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    parser.add_argument("--rounds", type=int, default=5, help="timed interleaved rounds (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    args = parser.parse_args(argv)
    rows = []
    for name in args.only:
        row = bench_one(name, args.mode, args.backend, args.rounds)
        rows.append(row)
        print(
            f"{name:>8} {args.mode} {args.backend}: clean {row['clean_ratio']:.3f}x flagged {row['flagged_ratio']:.3f}x "
            f"new graphs {row['graphs_compiled_in_20_alternating_calls']} clean=raw {row['clean_equals_compiled_raw']} "
            f"flagged-vs-eager {row['flagged_max_abs_difference_to_eager']:.2e} warm-up {row['warmup_seconds']} s",
            flush=True,
        )
        write(rows, args)  # after every model, so a long run keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
