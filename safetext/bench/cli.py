"""``safetext bench toxic`` and ``safetext bench overhead``.

    safetext bench toxic                                   # glyph suite on the shipped glyph model
    safetext bench toxic --model DIR --suite creative --n 200 --processes 2 --clip-dir ~/clip-vit-l-14
    safetext bench overhead --model DIR --repeats 5

``--processes N`` launches N workers with ``torch.distributed.run`` (one machine, gloo); inside them
accelerate's ``PartialState`` splits the prompts and the main worker merges the shards and writes the
report. The same command can also run under a launcher the user starts (``torchrun --nproc_per_node N
-m safetext.bench toxic ...``). Note that ``accelerate launch --cpu --num_processes N`` on one machine
starts a single process; use ``--processes`` instead. Results are identical for any N at the same
``--threads`` (threads per process, default 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from safetext.bench.methods import DEFAULT_METHODS, registered_methods
from safetext.bench.suites import SPLITS, SUITE_NAMES

logger = logging.getLogger("safetext.bench")

DEFAULT_OUT = "benchmarks/results"


def load_bench_pipeline(model: str | None) -> Any:
    """Load a pipeline for benchmarking from a local directory (``None``: the shipped glyph model).

    A directory whose ``model_index.json`` names ``GlyphPipeline`` loads with
    :func:`~safetext.models.glyph.load_glyph_pipeline`; any other goes through
    ``DiffusionPipeline.from_pretrained(..., local_files_only=True)``.
    """
    from safetext.models.glyph import load_glyph_pipeline

    if model is None:
        return load_glyph_pipeline()
    directory = Path(model).expanduser()
    index = directory / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"--model {model!r} has no model_index.json; pass a directory written by save_pretrained")
    if json.loads(index.read_text(encoding="utf-8")).get("_class_name") == "GlyphPipeline":
        return load_glyph_pipeline(directory)
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(directory), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _model_label(model: str | None) -> str:
    return "shipped glyph model" if model is None else Path(model).expanduser().resolve().name


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in registered_methods()]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown}; choose from {', '.join(registered_methods())}")
    return methods


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _toxic_argv(args: argparse.Namespace) -> list[str]:
    """The worker command line equivalent to ``args``.

    Long option names only: torch.distributed.run scans the whole command line for prefixes of its own
    options, so ``--n`` would be taken for ``--nnodes``.
    """
    argv = [
        "--suite", args.suite, "--split", args.split, "--n-toxic", str(args.n), "--n-clean", str(args.n_clean),
        "--seed", str(args.seed), "--steps", str(args.steps), "--methods", ",".join(args.methods),
        "--policy", args.policy, "--processes", str(args.processes), "--threads", str(args.threads),
        "--out", str(Path(args.out).resolve()), "--grid-rows", str(args.grid_rows),
    ]
    optional = {
        "--model": str(Path(args.model).resolve()) if args.model else None,
        "--clip-dir": str(Path(args.clip_dir).resolve()) if args.clip_dir else None,
        "--guidance-scale": args.guidance_scale,
        "--layer-map": args.layer_map,
        "--ocr-mode": args.ocr_mode,
        "--clean-methods": ",".join(args.clean_methods) if args.clean_methods else None,
        "--name": args.name,
    }
    for flag, value in optional.items():
        if value is not None:
            argv += [flag, str(value)]
    if args.no_progress:
        argv.append("--no-progress")
    return argv


def _launch_workers(args: argparse.Namespace) -> int:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes),
        "-m", "safetext.bench", "toxic", *_toxic_argv(args),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    logger.info("launching %d workers: %s", args.processes, " ".join(command))
    return subprocess.call(command, env=env)


def _reporting_errors(command: Any) -> Any:
    """Turn bad input (missing model, unknown suite, invalid layer map ...) into one line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        from safetext.errors import SafetextError

        try:
            return command(args)
        except (FileNotFoundError, ValueError, TypeError, SafetextError) as error:
            print(f"safetext bench {args.bench_command}: error: {error}", file=sys.stderr)
            return 2

    run.__doc__ = command.__doc__
    return run


@_reporting_errors
def run_toxic(args: argparse.Namespace) -> int:
    """``safetext bench toxic``: run the toxicity benchmark and write its report."""
    import torch

    from safetext.bench.report import write_report
    from safetext.bench.runner import ToxicBenchConfig, ToxicBenchmark, run_distributed

    if args.processes > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_workers(args)
    # The CLI owns the process: the thread count is set here, never in library code.
    torch.set_num_threads(args.threads)
    config = ToxicBenchConfig(
        suite=args.suite, split=args.split, n_toxic=args.n, n_clean=args.n_clean, seed=args.seed, steps=args.steps,
        guidance_scale=args.guidance_scale, methods=args.methods,
        clean_methods=args.clean_methods, policy=args.policy, layer_map=args.layer_map,
        ocr_mode=args.ocr_mode, ocr_threads=args.threads, clip_dir=args.clip_dir, grid_rows=args.grid_rows,
    )
    stem = args.name or f"toxic_{args.suite}" + ("" if args.split == "test" else f"_{args.split}")

    def factory() -> ToxicBenchmark:
        return ToxicBenchmark(load_bench_pipeline(args.model), config, model_label=_model_label(args.model))

    def write(merged: Any, out_dir: Any, name: str) -> None:
        paths = write_report(merged, out_dir, name)
        for kind, path in paths.items():
            print(f"{kind}: {path}")

    started = time.perf_counter()
    merged = run_distributed(factory, args.out, stem, progress=not args.no_progress, threads=args.threads, write=write)
    if merged is not None:
        logger.info("toxicity benchmark done in %.0f s", time.perf_counter() - started)
    return 0


@_reporting_errors
def run_overhead(args: argparse.Namespace) -> int:
    """``safetext bench overhead``: guarded/raw latency ratio and peak-memory delta."""
    import torch

    from safetext.bench.overhead import markdown_overhead, measure_latency, measure_peak_rss
    from safetext.generator import SafeTextGenerator

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the peak-RSS child processes
    torch.set_num_threads(args.threads)
    pipe = load_bench_pipeline(args.model)
    guard = SafeTextGenerator(pipe, policy=args.policy, layer_map=args.layer_map)
    report: dict[str, Any] = {
        "model": _model_label(args.model),
        "layer_map": guard.layer_map.name,
        "steps": args.steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "latency": measure_latency(pipe, guard, steps=args.steps, repeats=args.repeats),
    }
    if not args.no_memory:
        report["memory"] = measure_peak_rss(
            partial(load_bench_pipeline, args.model), steps=args.steps, policy=args.policy, layer_map=args.layer_map
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    text = markdown_overhead(report)
    (out / f"{args.name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench toxic`` and ``bench overhead`` to the ``safetext`` command."""
    bench = subparsers.add_parser("bench", help="benchmarks: toxicity reduction vs preservation, guard overhead")
    commands = bench.add_subparsers(dest="bench_command", required=True)

    toxic = commands.add_parser("toxic", help="compare guard methods on toxic and clean prompt suites")
    toxic.add_argument("--model", default=None, help="pipeline directory (default: the shipped glyph model)")
    toxic.add_argument("--suite", choices=SUITE_NAMES, default="glyph", help="prompt suite (default: glyph)")
    toxic.add_argument("--split", choices=SPLITS, default="test", help="word split (default: test)")
    toxic.add_argument("--n", "--n-toxic", dest="n", type=int, default=100, help="toxic prompts (default: 100)")
    toxic.add_argument("--n-clean", type=int, default=40, help="clean prompts (default: 40)")
    toxic.add_argument("--seed", type=int, default=0, help="suite seed (default: 0)")
    toxic.add_argument("--steps", type=_positive, default=20, help="denoising steps (default: 20)")
    toxic.add_argument("--guidance-scale", type=float, default=None, help="CFG scale (default: the pipeline's)")
    toxic.add_argument("--methods", type=_methods, default=DEFAULT_METHODS,
                       help=f"comma-separated, unguarded first (default: {','.join(DEFAULT_METHODS)})")
    toxic.add_argument("--clean-methods", type=_methods, default=None,
                       help="methods run on the clean prompts, unguarded first (default: unguarded,safetext)")
    toxic.add_argument("--policy", default="default", help="policy name or YAML path (default: default)")
    toxic.add_argument("--layer-map", default=None, help="layer map file or preset (default: the model's preset)")
    toxic.add_argument("--ocr-mode", choices=("crop", "full"), default=None,
                       help="rapidocr mode (default: crop for the glyph suite, full otherwise)")
    toxic.add_argument("--clip-dir", default=None, help="local CLIP directory for CLIP-T (default: skipped)")
    toxic.add_argument("--processes", type=_positive, default=1, help="worker processes (default: 1)")
    toxic.add_argument("--threads", type=_positive, default=1, help="torch/onnxruntime threads per process (default: 1)")
    toxic.add_argument("--grid-rows", type=int, default=6, help="toxic prompts in the image grid (default: 6)")
    toxic.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    toxic.add_argument("--name", default=None, help="file stem (default: toxic_<suite>[_validation])")
    toxic.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    toxic.set_defaults(func=run_toxic)

    overhead = commands.add_parser("overhead", help="guarded/raw latency ratio and peak memory delta")
    overhead.add_argument("--model", default=None, help="pipeline directory (default: the shipped glyph model)")
    overhead.add_argument("--steps", type=_positive, default=20, help="denoising steps (default: 20)")
    overhead.add_argument("--repeats", type=_positive, default=5, help="interleaved repeats per prompt (default: 5)")
    overhead.add_argument("--threads", type=_positive, default=1, help="torch threads (default: 1)")
    overhead.add_argument("--policy", default="default", help="policy name or YAML path (default: default)")
    overhead.add_argument("--layer-map", default=None, help="layer map file or preset (default: the model's preset)")
    overhead.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    overhead.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    overhead.add_argument("--name", default="overhead_glyph", help="file stem (default: overhead_glyph)")
    overhead.set_defaults(func=run_overhead)


def main(argv: list[str] | None = None) -> int:
    """``python -m safetext.bench {toxic,overhead} ...`` (the entry point workers are launched with)."""
    parser = argparse.ArgumentParser(prog="python -m safetext", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(args.func(args) or 0)
