"""Latency of SafeTextGenerator relative to the raw pipeline, for clean and flagged prompts.

For every tiny pipeline of ``tests/tiny_pipelines.py`` (and optional extra configurations), runs
the raw pipeline and the guarded one on a clean prompt and on a flagged prompt, interleaved round by
round in a rotating order so drifts in machine load hit every variant alike, and reports the median
latency ratio guarded/raw, both in wall-clock time and in the thread's CPU time (which a busy, shared
machine disturbs much less). It also checks, every round, that the guarded clean output is
bit-identical to the raw one and that the guarded flagged output differs from the raw flagged one.

Each pipeline runs at its own default ``num_inference_steps`` (what a user gets without choosing:
SD 1.5 / SDXL 50, IF 100, PixArt 20, SD3 / Flux 28) unless ``--steps`` is given, at the tiny
pipelines' 32x32 size.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/overhead.py            # writes benchmarks/results/overhead.*
    OMP_NUM_THREADS=1 python benchmarks/overhead.py --steps 4 --rounds 5 --only sd15 flux

Targets: clean <= 1.01x everywhere; flagged <= 1.05x on cross-attention models (SD1.5, SDXL, IF,
PixArt), <= 1.6x on joint-attention models (SD3, Flux).
"""

from __future__ import annotations

import argparse
import inspect
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safetext.generator import SafeTextGenerator  # noqa: E402
from safetext.patching import LayerMap  # noqa: E402
from safetext.policy import load_policy  # noqa: E402
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS  # noqa: E402

CLEAN_PROMPT = 'A red sign that says "hello".'
FLAGGED_PROMPT = 'A red sign that says "shit".'
CROSS_ATTENTION = ("sd15", "sdxl", "if", "pixart")
TARGETS = {"clean": 1.01, "flagged_cross": 1.05, "flagged_joint": 1.6}
# Extra rows with a localized map instead of the all-layer fallback the tiny models get (no preset
# matches them): 3 of SDXL's 8 layers, like the shipped SDXL preset; one joint block for SD3 and Flux.
LOCALIZED = {
    "sdxl[3 layers]": ("sdxl", [5, 6, 7]),
    "flux[1 layer]": ("flux", ["transformer_blocks.0.attn"]),
    "sd3[1 layer]": ("sd3", ["transformer_blocks.0.attn"]),
}


NOTE = (
    "Where the flagged time goes. Cross-attention models (SD1.5, SDXL, IF, PixArt) inject the sanitized "
    "prompt's K/V, with zero extra denoiser forwards: the extra work is the recording (the pipeline's own prompt "
    "encoding of the sanitized prompt: text encoders, tokenizers and call prologue; the `recording` column) plus "
    "the hooks: a row replacement in each patched K/V projection per step (PixArt also swaps its padding-bias "
    "rows once per step) and a step counter on the denoiser. On the tiny models that is a fixed few ms against "
    "denoising loops of 50-1400 ms: within target where the loop is long (SD1.5, SDXL, IF) and over it for "
    "PixArt, whose 20-step loop is so short that encoding the sanitized prompt through its T5 alone exceeds "
    "the 1.05x target (the `recording` column): a cost no method that encodes the sanitized prompt avoids. "
    "SD3 and Flux compute the target branch on the same noisy input at every patched step, as extra batch rows "
    "of the same call (SD3 with CFG: 3 rows instead of 2; Flux without CFG: 2 instead of 1), so the per-call "
    "fixed costs are paid once; when the target's prompt inputs equal the prompt's own the call runs unpatched "
    "and stays bit-identical. On real checkpoints the fixed costs are a far smaller fraction (a real SDXL step "
    "costs more than this whole tiny run) and the shipped presets patch 1-3 layers."
)


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn()
    return time.perf_counter() - wall, time.thread_time() - cpu, result


def default_steps(pipe: Any) -> int:
    """The pipeline's own default ``num_inference_steps``."""
    return int(inspect.signature(pipe.__call__).parameters["num_inference_steps"].default)


def bench_one(
    label: str, pipe: Any, gen: SafeTextGenerator, kwargs: dict[str, Any], rounds: int, warmup: int
) -> dict[str, Any]:
    """Interleaved timings of the four variants; returns medians, ratios and the identity checks."""

    def run(which: str) -> Callable[[], Any]:
        prompt = CLEAN_PROMPT if which.endswith("clean") else FLAGGED_PROMPT
        target = pipe if which.startswith("raw") else gen
        generator = torch.Generator().manual_seed(0)  # created outside the timed call
        return lambda: target(prompt, generator=generator, **kwargs)

    variants = ["raw_clean", "guarded_clean", "raw_flagged", "guarded_flagged"]
    for _ in range(warmup):
        for name in variants:
            run(name)()
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    own: list[float] = []  # guarded clean: time outside the (untouched) pipeline call, i.e. safetext's own work
    recording: list[float] = []  # guarded flagged: the sanitized prompt's recording (its prompt encoding)
    clean_identical, flagged_changed = True, True
    for round_index in range(rounds):
        order = variants[round_index % 4 :] + variants[: round_index % 4]
        images: dict[str, torch.Tensor] = {}
        for name in order:
            wall_seconds, cpu_seconds, output = _timed(run(name))
            images[name] = output.images
            wall[name].append(wall_seconds)
            cpu[name].append(cpu_seconds)
            if name == "guarded_clean":
                own.append(wall_seconds - output.verdict.details["timings"]["generation_seconds"])
            elif name == "guarded_flagged":
                recording.append(output.verdict.details["timings"]["patch_overhead_seconds"])
        clean_identical &= torch.equal(images["raw_clean"], images["guarded_clean"])
        flagged_changed &= not torch.equal(images["raw_flagged"], images["guarded_flagged"])
    medians = {name: statistics.median(values) for name, values in wall.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    verdict = gen(FLAGGED_PROMPT, generator=torch.Generator().manual_seed(0), **kwargs).verdict
    return {
        "pipeline": label,
        "family": gen.patch.adapter.family,
        "layer_map": f"{gen.layer_map.name} ({gen.resolved.source}, {len(gen.resolved.layers)} layer(s))",
        "steps": kwargs["num_inference_steps"],
        "median_wall_seconds": {name: round(value, 6) for name, value in medians.items()},
        "median_cpu_seconds": {name: round(value, 6) for name, value in cpu_medians.items()},
        "clean_ratio_wall": round(medians["guarded_clean"] / medians["raw_clean"], 4),
        "flagged_ratio_wall": round(medians["guarded_flagged"] / medians["raw_flagged"], 4),
        "clean_ratio": round(cpu_medians["guarded_clean"] / cpu_medians["raw_clean"], 4),
        "clean_own_overhead_ms": round(1000 * statistics.median(own), 4),
        "clean_ratio_own": round((medians["raw_clean"] + statistics.median(own)) / medians["raw_clean"], 4),
        "flagged_ratio": round(cpu_medians["guarded_flagged"] / cpu_medians["raw_flagged"], 4),
        # the part of the flagged overhead no method that encodes the sanitized prompt avoids
        "flagged_recording_ms": round(1000 * statistics.median(recording), 4),
        "flagged_recording_ratio": round((medians["raw_flagged"] + statistics.median(recording)) / medians["raw_flagged"], 4),
        "clean_bit_identical": bool(clean_identical),
        "flagged_changed": bool(flagged_changed),
        "flagged_action": verdict.action.value,
        "strategy": gen.patch.adapter.strategy,
    }


def target_for(row: dict[str, Any]) -> float:
    return (
        TARGETS["flagged_cross"] if row["family"] in ("unet_cross", "added_kv", "pixart") else TARGETS["flagged_joint"]
    )


def to_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# SafeTextGenerator overhead (guarded / raw latency, median of interleaved runs)",
        "",
        f"Tiny random-weight pipelines from `tests/tiny_pipelines.py` at 32x32, {meta['steps']}, "
        f"{meta['rounds']} rounds after {meta['warmup']} warm-up round(s), torch {meta['torch']} on "
        f"{meta['machine']} with {meta['threads']} thread(s); load average {meta['load_average']} on "
        f"{meta['cpus']} CPUs while running (a shared machine). Clean prompt `{CLEAN_PROMPT}`, flagged prompt "
        f"`{FLAGGED_PROMPT}` (policy `{meta['policy']}`).",
        "",
        "* **clean**: safetext's own time per clean request (scan, verdict; the pipeline call itself is the "
        "untouched pipeline, no hooks) measured around the pipeline call, and the ratio it gives over the raw "
        "median; this is what the clean target is judged on, because the interleaved ratio (next column) moves "
        "by a few percent with the machine's load even though both sides run the identical pipeline.",
        "* **flagged**: ratio of the median thread CPU time, guarded / raw (wall-clock ratio in parentheses).",
        "* **recording**: median time of the flagged call's recording of the sanitized prompt (the pipeline's own "
        "prompt encoding, measured inside the call), and the ratio it alone gives over the raw median: the floor "
        "of any method that encodes the sanitized prompt; the flagged ratio above it is the patch's hooks.",
        "",
        "| pipeline | family | steps | layer map | clean: own time | clean ratio | clean, interleaved | "
        "flagged | flagged target | recording | clean bit-identical | flagged changed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        target = target_for(row)
        clean_ok = "ok" if row["clean_ratio_own"] <= TARGETS["clean"] else "over"
        flagged_ok = "ok" if row["flagged_ratio"] <= target else "over"
        lines.append(
            f"| {row['pipeline']} | {row['family']} | {row['steps']} | {row['layer_map']} | "
            f"{row['clean_own_overhead_ms']:.2f} ms | {row['clean_ratio_own']:.4f}x {clean_ok} | "
            f"{row['clean_ratio']:.3f}x ({row['clean_ratio_wall']:.3f}x) | "
            f"{row['flagged_ratio']:.3f}x {flagged_ok} ({row['flagged_ratio_wall']:.3f}x) | <= {target}x | "
            f"{row['flagged_recording_ms']:.1f} ms = {row['flagged_recording_ratio']:.3f}x | "
            f"{row['clean_bit_identical']} | {row['flagged_changed']} |"
        )
    lines += [
        "",
        "Median CPU milliseconds per variant (wall in parentheses):",
        "",
        "| pipeline | raw clean | guarded clean | raw flagged | guarded flagged |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        c, w = row["median_cpu_seconds"], row["median_wall_seconds"]
        cells = " | ".join(
            f"{1000 * c[k]:.1f} ({1000 * w[k]:.1f})"
            for k in ("raw_clean", "guarded_clean", "raw_flagged", "guarded_flagged")
        )
        lines.append(f"| {row['pipeline']} | {cells} |")
    lines += ["", meta["note"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: each pipeline's own default)"
    )
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per pipeline (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up rounds (default 2)")
    parser.add_argument(
        "--only", nargs="*", default=None, help="pipelines to run (default: all, plus localized-map rows)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    args = parser.parse_args(argv)

    policy = load_policy("default")
    labels = args.only or [*TINY_BUILDERS, *LOCALIZED]
    rows = []
    pipes: dict[str, Any] = {}
    for label in labels:
        name, layers = LOCALIZED.get(label, (label, None))
        pipe = pipes.setdefault(name, TINY_BUILDERS[name]())
        layer_map = None if layers is None else LayerMap.for_model(pipe, layers, 0.0, name=f"{name}-localized")
        gen = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map)
        kwargs = {**TINY_CALL_KWARGS[name], "num_inference_steps": args.steps or default_steps(pipe)}
        row = bench_one(label, pipe, gen, kwargs, args.rounds, args.warmup)
        rows.append(row)
        print(
            f"{label:>14}  {row['steps']:3d} steps  clean own {row['clean_own_overhead_ms']:.2f} ms "
            f"({row['clean_ratio_own']:.4f}x; interleaved {row['clean_ratio']:.3f}x)  "
            f"flagged {row['flagged_ratio']:.3f}x ({row['flagged_ratio_wall']:.3f}x wall)  "
            f"raw {row['median_cpu_seconds']['raw_clean'] * 1000:.1f} ms  identical={row['clean_bit_identical']} "
            f"changed={row['flagged_changed']}",
            flush=True,
        )
    meta = {
        "steps": f"{args.steps} steps" if args.steps else "each pipeline's default steps",
        "load_average": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "policy": policy.name,
        "note": NOTE,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(
        json.dumps({"meta": meta, "targets": TARGETS, "results": rows}, indent=2) + "\n"
    )
    (args.out / "overhead.md").write_text(to_markdown(rows, meta))
    print(f"wrote {args.out / 'overhead.json'} and {args.out / 'overhead.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
