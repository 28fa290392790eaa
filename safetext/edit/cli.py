"""`safetext edit`: change the word written in a generated image.

    safetext edit 'A red sign that says "stop".' --from stop --to go --seed 3 --out edit/

regenerates the image of PROMPT (same seed and settings) as is and with the text changed, and writes
``original.png``, ``edited.png``, ``side_by_side.png`` and ``metrics.json`` to ``--out``. With
``--region text``, ``--region auto`` (found from the word's cross-attention) or ``--region TOP,LEFT,BOTTOM,RIGHT``
everything outside that region stays the original.
"""

from __future__ import annotations

import argparse
import json
import sys


def _parse_region(value: str | None) -> str | tuple[int, ...] | None:
    if value is None or value in ("text", "auto"):
        return value
    try:
        box = tuple(int(part) for part in value.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        from safetext.edit.region import RegionError

        raise RegionError(f"--region must be 'text', 'auto' or TOP,LEFT,BOTTOM,RIGHT in pixels (e.g. 18,14,46,114), got {value!r}")
    return box


def _run(args: argparse.Namespace) -> int:
    from safetext.edit.edit import edit_text
    from safetext.errors import SafetextError
    from safetext.generate_cli import load_pipeline

    try:
        pipe = load_pipeline(args.model)
        call_kwargs = {}
        if args.steps is not None:
            call_kwargs["num_inference_steps"] = args.steps
        if args.guidance is not None:
            call_kwargs["guidance_scale"] = args.guidance
        result = edit_text(
            pipe,
            args.prompt,
            args.source,
            args.target,
            layer_map=args.layer_map,
            start_fraction=args.start_fraction,
            seed=args.seed,
            ocr=None if args.no_ocr else "rapidocr",
            region=_parse_region(args.region),
            **call_kwargs,
        )
    except (SafetextError, FileNotFoundError) as error:
        print(f"safetext edit: {error}", file=sys.stderr)
        return 2
    files = result.save(args.out)
    for note in result.metrics.get("notes", ()):
        print(f"note: {note}", file=sys.stderr)
    shown = {key: result.metrics[key] for key in ("original_text", "edited_text", "ssim", "psnr") if key in result.metrics}
    if result.metrics.get("region"):
        shown["region"] = result.metrics["region"]  # e.g. the box region="auto" found
    print(json.dumps(shown))
    print(f"wrote {', '.join(str(path) for path in files.values())}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``edit`` subcommand."""
    p = subparsers.add_parser("edit", help="change the word written in a generated image, keeping the rest")
    p.add_argument("prompt", help='the prompt of the image, e.g. \'A red sign that says "stop".\'')
    p.add_argument("--from", dest="source", required=True, help="the word written in the image (as in the prompt)")
    p.add_argument("--to", dest="target", required=True, help="the word to write instead")
    p.add_argument("--seed", type=int, default=0, help="seed the image was generated with (default 0)")
    p.add_argument("--model", default=None, help="local diffusers pipeline directory (default: the embedded glyph model)")
    p.add_argument("--layer-map", default=None, help="LayerMap file or preset name (default: the model's preset)")
    p.add_argument("--start-fraction", type=float, default=None, help="override the map's start fraction")
    p.add_argument("--steps", type=int, default=None, help="num_inference_steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance_scale (default: the pipeline's)")
    p.add_argument(
        "--region",
        default=None,
        help="keep the rest of the image: 'text' (inside the model's sign), 'auto' (where the original run's "
        "cross-attention to the --from text lands) or TOP,LEFT,BOTTOM,RIGHT in pixels; outside it the edited image "
        "is the original",
    )
    p.add_argument("--no-ocr", action="store_true", help="skip OCR of the two images in the metrics")
    p.add_argument("--out", default="edit", help="output directory (default: edit/)")
    p.set_defaults(func=_run)
