"""`safetext inspect`: which layer map a model gets, and why.

    safetext inspect ./stable-diffusion-xl-base-1.0          # a model folder (diffusers layout)
    safetext inspect ./my-finetune/unet/config.json          # or a denoiser config.json
    safetext inspect ./my-sdxl --layer-map loc/layer_map.yaml  # check a map from `safetext localize`
    safetext inspect ./my-sdxl --json

Prints the denoiser family, every text-attention layer (forward-order index, parameters of its text
K/V projections, ``*`` where the map patches it), the layer map that would be used (explicit, preset
or fallback) and why; on a fallback, the nearest shipped preset and exactly what differs. The model
is built on the ``meta`` device: no weights are read.
"""

from __future__ import annotations

import argparse
import json
import sys

#: Exit status for invalid input (missing path, unknown denoiser class, a map that does not fit).
EXIT_BAD_INPUT = 2


def _run(args: argparse.Namespace) -> int:
    from safetext.errors import SafetextError
    from safetext.patching.inspection import inspect_model

    try:
        report = inspect_model(args.model, args.layer_map)
    except SafetextError as error:
        print(f"safetext inspect: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table(), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` subcommand."""
    p = subparsers.add_parser("inspect", help="show a model's text layers and which layer map it gets, and why")
    p.add_argument("model", help="a model folder (model_index.json + unet/ or transformer/) or a denoiser config.json")
    p.add_argument("--layer-map", default=None, help="an explicit layer map file or preset name to check")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)
