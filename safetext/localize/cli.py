"""`safetext localize`: localize the text layers of a model, or verify a layer map on it.

    safetext localize --out loc/                          # the embedded glyph model, 32 prompt pairs
    safetext localize --model ./my-sdxl --pairs 100 --steps 50 --processes 4 --out loc/
    safetext localize --out loc/ --resume                 # continue an interrupted sweep
    safetext localize --verify loc/layer_map.yaml         # exit status 1 if the map no longer moves text

``--processes N`` re-launches the command in N processes with accelerate (the prompt pairs are split
between them); the module also runs as ``accelerate launch -m safetext.localize.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys

logger = logging.getLogger("safetext.localize")

#: Exit status when a verified layer map fails its thresholds.
EXIT_VERIFY_FAILED = 1
#: Exit status for invalid input (bad model directory, layer map, checkpoint conflict, ...).
EXIT_BAD_INPUT = 2


def _call_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {}
    if args.steps is not None:
        kwargs["num_inference_steps"] = args.steps
    if args.guidance is not None:
        kwargs["guidance_scale"] = args.guidance
    return kwargs


def forwarded_arguments(args: argparse.Namespace) -> list[str]:
    """The command-line arguments of ``args`` without ``--processes`` (for the launched processes)."""
    argv = []
    for option, value in (
        ("--model", args.model), ("--pairs", args.pairs), ("--steps", args.steps), ("--guidance", args.guidance),
        ("--budget", args.budget), ("--out", args.out), ("--scorer", args.scorer), ("--name", args.name),
        ("--seed", args.seed), ("--batch-size", args.batch_size), ("--min-gain", args.min_gain),
        ("--tolerance", args.tolerance), ("--similarity-floor", args.similarity_floor),
    ):
        if value is not None:
            argv += [option, str(value)]
    if args.resume:
        argv.append("--resume")
    if args.no_progress:
        argv.append("--no-progress")
    return argv


def _verify(args: argparse.Namespace) -> int:
    from safetext.generate_cli import load_pipeline
    from safetext.localize.verify import verify_layer_map

    pipe = load_pipeline(args.model)
    result = verify_layer_map(
        pipe,
        args.verify,
        pair_count=args.pairs or 16,
        scorer=args.scorer,
        call_kwargs=_call_kwargs(args),
        min_flip=args.min_flip,
        min_similarity=args.min_ssim,
        progress=not args.no_progress,
    )
    print(json.dumps(result.summary(), indent=2))
    if not result.passed:
        for failure in result.failures:
            print(f"FAILED: {failure}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    print(f"OK: layer map {result.layer_map.name!r} flips {result.score.flip_rate:.0%} of pairs "
          f"(SSIM {result.score.similarity:.3f})")
    return 0


def _localize(args: argparse.Namespace) -> int:
    from safetext.generate_cli import load_pipeline
    from safetext.localize.localize import DEFAULT_PAIR_COUNT, localize_layers
    from safetext.localize.pairs import default_prompt_pairs
    from safetext.localize.shards import accelerate_launch_command, current_process_group, launched_world_size

    if args.processes > 1 and launched_world_size() == 1:
        command = accelerate_launch_command(args.processes, "safetext.localize.cli", forwarded_arguments(args))
        logger.info("launching %d processes: %s", args.processes, " ".join(command))
        return subprocess.run(command, check=False).returncode
    group = current_process_group()
    pipe = load_pipeline(args.model)
    device = getattr(group, "device", None)
    if group.num_processes > 1 and device is not None and device.type != "cpu":
        pipe.to(device)
    pairs = default_prompt_pairs(pipe, args.pairs or DEFAULT_PAIR_COUNT, seed=args.seed or 0)
    options = {"min_gain": args.min_gain, "tolerance": args.tolerance, "similarity_floor": args.similarity_floor}
    result = localize_layers(
        pipe,
        pairs,
        scorer=args.scorer,
        call_kwargs=_call_kwargs(args),
        budget=args.budget,
        out_dir=args.out,
        resume=args.resume,
        name=args.name,
        process_group=group,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        **{key: value for key, value in options.items() if value is not None},
    )
    if group.is_main_process:
        chosen = result.chosen
        print(result.layer_map.to_yaml(), end="")
        print(
            f"flip rate {chosen.flip_rate:.2f}, movement {chosen.movement:.3f}, SSIM {chosen.similarity:.3f}, "
            f"{result.parameters.layers}/{result.parameters.text_layers} layers, {result.seconds:.0f} s"
        )
        print(f"wrote {', '.join(str(path) for path in result.files.values())}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from safetext.errors import SafetextError

    if args.processes < 1:
        print("safetext localize: --processes must be >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return _verify(args) if args.verify else _localize(args)
    except (SafetextError, FileNotFoundError) as error:
        print(f"safetext localize: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``safetext localize``."""
    p.add_argument("--model", default=None, help="local diffusers pipeline directory (default: the embedded glyph model)")
    p.add_argument("--pairs", type=int, default=None, help="prompt pairs (default 32; 16 with --verify)")
    p.add_argument("--steps", type=int, default=None, help="num_inference_steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance_scale (default: the pipeline's)")
    p.add_argument("--budget", type=int, default=None, help="most layers in the map (default: 25%% of the text layers)")
    p.add_argument("--out", default="localization", help="output directory (default: localization/)")
    p.add_argument("--processes", type=int, default=1, help="split the prompt pairs over N processes (accelerate)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--scorer", default="ocr", choices=("ocr", "image-distance"), help="how movement is measured")
    p.add_argument("--name", default=None, help="name of the layer map (default: <family>-localized)")
    p.add_argument("--seed", type=int, default=None, help="seed of the prompt pairs (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per pipeline call (default: all)")
    p.add_argument("--min-gain", type=float, default=None, help="stop growing below this movement gain (default 0.02)")
    p.add_argument("--tolerance", type=float, default=None, help="start search tolerance (default 0.05)")
    p.add_argument(
        "--similarity-floor", type=float, default=None,
        help="smallest SSIM loss a layer's movement gain is divided by when growing the set (default 0.1)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--verify", default=None, metavar="MAP", help="verify a layer map (file or preset) instead of localizing")
    p.add_argument("--min-flip", type=float, default=0.5, help="--verify: lowest acceptable flip rate (default 0.5)")
    p.add_argument("--min-ssim", type=float, default=None, help="--verify: lowest acceptable SSIM (default: not checked)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``localize`` subcommand."""
    p = subparsers.add_parser("localize", help="find a model's text layers (LayerMap), or verify a map on it")
    add_arguments(p)
    p.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m safetext.localize.cli`` (one process of a multi-process launch)."""
    parser = argparse.ArgumentParser(prog="safetext localize", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return _run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
