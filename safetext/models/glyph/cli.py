"""`safetext train-glyph`: train or resume the embedded glyph model."""

from __future__ import annotations

import argparse
import logging


def _run(args: argparse.Namespace) -> int:
    import torch

    from safetext.models.glyph.train import GlyphTrainConfig, train_glyph

    # The CLI owns the process: thread count is set here, never in library code.
    torch.set_num_threads(args.threads)
    config = GlyphTrainConfig.from_yaml(args.config) if args.config else GlyphTrainConfig()
    if args.steps is not None:
        config.steps = args.steps
    if args.init_from is not None:
        config.init_from = args.init_from
    export = train_glyph(config, args.out, max_minutes=args.max_minutes)
    logging.getLogger("safetext.models.glyph").info("exported EMA weights to %s", export)
    print(export)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-glyph", help="train or resume the embedded glyph model")
    p.add_argument("--config", default=None, help="YAML training config (default: built-in defaults)")
    p.add_argument("--out", default="runs/glyph", help="run directory; an existing ckpt.pt there is resumed")
    p.add_argument("--steps", type=int, default=None, help="override the total number of steps")
    p.add_argument("--init-from", default=None, help="start from a saved pipeline directory (e.g. shipped fp16 EMA weights)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time (checkpointed)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=_run)
