"""`safetext train-lora`: LoRA on a LayerMap's layers (or every cross-attention layer, as a baseline).

    safetext train-lora --data data/signs --layer-map maps/glyph.yaml --rank 64 --alpha 64 --steps 500 --out runs/lora
    safetext train-lora --data data/signs --target all-cross-attention --steps 500 --out runs/lora-all
    safetext train-lora --data data/signs --layer-map maps/glyph.yaml --steps 1000 --out runs/lora --resume

``--model`` defaults to the embedded glyph model. ``--data`` is a folder with images and a
``metadata.jsonl`` of ``{"file_name", "text"}`` lines, or such a JSONL file;
``--write-glyph-data DIR`` renders a dataset folder of glyph signs first (``--words``, ``--per-word``).
The run directory receives ``pytorch_lora_weights.safetensors`` (load it with the pipeline's own
``load_lora_weights``), ``lora_targets.json``, ``train_log.jsonl`` and ``checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetext.lora.targets import ALL_CROSS_ATTENTION, DEFAULT_PROJECTIONS


def _selector(args: argparse.Namespace):
    if args.layer_map:
        from safetext.patching import LayerMap

        return LayerMap.load(args.layer_map)  # errors name file:line:column
    if args.layers:
        return [name.strip() for name in args.layers.split(",") if name.strip()]
    return args.target


def _write_glyph_data(args: argparse.Namespace, size: tuple[int, int]) -> Path:
    from safetext.lora.data import write_glyph_dataset
    from safetext.models.glyph.data import load_vocabulary

    if args.words:
        words = [w.strip() for w in args.words.split(",") if w.strip()]
    else:
        vocab = load_vocabulary()
        words = list(vocab["toxic"] + vocab["replacements"])
    return write_glyph_dataset(args.write_glyph_data, words, per_word=args.per_word, seed=args.seed, height=size[0], width=size[1])


def _run(args: argparse.Namespace) -> int:
    import torch

    from safetext.errors import SafetextError
    from safetext.generate_cli import load_pipeline
    from safetext.lora.objectives import get_objective
    from safetext.lora.train import LoraTrainConfig, train_lora

    if args.threads is not None:
        torch.set_num_threads(args.threads)  # the CLI owns the process; library code never does this
    try:
        if (args.data is None) == (args.write_glyph_data is None):
            raise ValueError("pass either --data DIR_OR_JSONL or --write-glyph-data DIR (to render a glyph sign dataset)")
        config = LoraTrainConfig(
            rank=args.rank,
            alpha=args.alpha if args.alpha is not None else float(args.rank),
            steps=args.steps,
            lr=args.lr,
            lr_warmup_steps=args.lr_warmup_steps,
            batch_size=args.batch_size,
            grad_accum=args.grad_accum,
            caption_dropout=args.caption_dropout,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            projections=tuple(p.strip() for p in args.projections.split(",") if p.strip()),
            size=tuple(args.size) if args.size else None,
        )
        selector = _selector(args)
        pipe = load_pipeline(args.model)
        if args.device:
            pipe.to(args.device)
        data = args.data
        if args.write_glyph_data:
            data = _write_glyph_data(args, config.size or get_objective(pipe).default_size(pipe))
        result = train_lora(pipe, data, selector, config, out_dir=args.out, resume=args.resume, progress=not args.no_progress)
    except (SafetextError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    share = result.lora_parameters / max(1, result.denoiser_parameters)
    print(f"adapted {len(result.targeted_module_names)} Linears in {len(result.targets.attention_modules)} attention modules ({result.targets.selector})")
    print(f"LoRA parameters: {result.lora_parameters:,} ({share:.2%} of the denoiser's {result.denoiser_parameters:,})")
    if result.losses:
        print(f"steps: {result.steps}; final loss {result.losses[-1]:.4f}")
    print(f"weights: {result.weights_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-lora`` subcommand."""
    p = subparsers.add_parser(
        "train-lora",
        help="train LoRA on a LayerMap's attention layers (or all cross-attention layers)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None, help="local diffusers pipeline directory (default: the embedded glyph model)")
    p.add_argument("--data", default=None, help="dataset folder with metadata.jsonl, or a JSONL file of {file_name, text}")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--layer-map", default=None, help="LayerMap YAML: train its layers only")
    target.add_argument("--target", choices=[ALL_CROSS_ATTENTION], help="baseline: every cross-attention layer")
    target.add_argument("--layers", default=None, help="comma-separated attention-module names")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, LoRA weights)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--alpha", type=float, default=None, help="lora_alpha (default: the rank)")
    p.add_argument("--steps", type=int, default=500, help="optimizer steps")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-warmup-steps", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--caption-dropout", type=float, default=0.0, help="share of samples trained on the empty prompt")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (0: only at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--projections", default=",".join(DEFAULT_PROJECTIONS), help="Linears adapted per attention module")
    p.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), default=None, help="training image size")
    p.add_argument("--device", default=None, help="torch device to train on (default: where the model loads)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--write-glyph-data", default=None, metavar="DIR", help="render a glyph sign dataset into DIR and train on it")
    p.add_argument("--words", default=None, help="comma-separated words for --write-glyph-data (default: toxic + replacement words)")
    p.add_argument("--per-word", type=int, default=4, help="images per word for --write-glyph-data")
    p.set_defaults(func=_run)
