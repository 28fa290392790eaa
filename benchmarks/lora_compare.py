"""LoRA on the localized text layers vs on every cross-attention layer, same steps and data (paper, application 3).

    python benchmarks/lora_compare.py [--model DIR] [--layer-map FILE | --layers A,B] [--steps 200]

Trains two rank-``--rank`` LoRA adapters on the glyph model, one on the layers of its layer map (the
``safetext localize`` result; by default the shipped preset matching the model) and one on all
cross-attention layers, from the same rendered sign dataset with the same seed, steps and
hyper-parameters. Each adapter and the base model then write the same held-out prompts (fresh colours,
templates and seeds), and rapidocr reads the images:

* ``trained_words``: the LoRA dataset's words (common words of the glyph vocabulary), in prompts and
  seeds not seen in training;
* ``heldout_words``: words never in the LoRA dataset (the glyph vocabulary's held-out split), which
  shows whether an adapter overfits its training words.

Writes ``benchmarks/results/lora_compare.json`` / ``.md`` (``--out`` to change) and prints the table.
With the defaults (two adapters x 200 steps at batch 8, three models x 100 images) a model of the shipped
24x96 size takes about 5-10 minutes on 2 CPU cores (timed on random weights of that size: ~0.25 s per
LoRA step, ~0.5 s per 20-step image).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def eval_items(words: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (word, prompt) pairs cycling through ``words``, colours and templates drawn from ``seed``."""
    from safetext.models.glyph.data import COLORS, TEMPLATES, make_prompt

    rng = random.Random(f"lora-compare-eval:{seed}")
    order = list(words)
    rng.shuffle(order)
    items = []
    for i in range(n):
        word = order[i % len(order)]
        items.append((word, make_prompt(word, rng.choice(COLORS), rng.randrange(len(TEMPLATES)))))
    return items


def exact_match_rate(pipe, ocr, items: list[tuple[str, str]], steps: int, seed: int, batch: int = 25) -> dict:
    """Generate every prompt (seeded per batch), OCR it, and score exact match against the word."""
    from safetext.scoring import exact_match

    reads: list[str] = []
    for start in range(0, len(items), batch):
        prompts = [p for _, p in items[start : start + batch]]
        images = pipe(prompts, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed + start), output_type="np").images
        reads.extend(ocr.read(image).text for image in images)
    hits = [exact_match(read, word) for read, (word, _) in zip(reads, items)]
    misses = [(word, read) for read, (word, _), ok in zip(reads, items, hits) if not ok]
    return {"n": len(items), "exact_match": float(np.mean(hits)) if hits else 0.0, "examples_of_misses": misses[:8]}


def resolve_localized(pipe, layer_map: str | None, layers: str | None):
    """The localized selector (a LayerMap, or a list of names) and a label for the report."""
    from safetext.patching import resolve_layer_map

    if layers:
        names = [n.strip() for n in layers.split(",") if n.strip()]
        return names, {"source": "--layers", "name": "custom", "layers": names}
    resolved = resolve_layer_map(pipe, layer_map, strict=True)
    chosen = resolved.layer_map
    return chosen, {"source": resolved.source, "name": chosen.name, "layers": list(chosen.layers)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="glyph pipeline directory (default: the shipped weights)")
    parser.add_argument("--layer-map", default=None, help="layer map file or preset name (default: the preset matching the model)")
    parser.add_argument("--layers", default=None, help="comma-separated attention-module names instead of a layer map")
    parser.add_argument("--steps", type=int, default=200, help="LoRA optimizer steps per adapter")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=64.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--train-words", type=int, default=40, help="common words in the LoRA dataset (drawn with --seed)")
    parser.add_argument("--per-word", type=int, default=8, help="rendered images per training word")
    parser.add_argument("--eval-n", type=int, default=50, help="prompts per evaluation suite")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", default=None, help="where datasets and adapters go (default: a temporary directory)")
    parser.add_argument("--out", default=str(RESULTS / "lora_compare"), help="output path without suffix")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # a benchmark script owns its process

    from safetext.errors import LayerMapError
    from safetext.lora import ALL_CROSS_ATTENTION, LoraTrainConfig, train_lora, write_glyph_dataset
    from safetext.models.glyph import load_glyph_pipeline
    from safetext.models.glyph.data import load_vocabulary
    from safetext.scoring import get_ocr, ocr_for_pipeline

    base = load_glyph_pipeline(args.model)
    height, width = base.default_size
    try:
        localized, map_info = resolve_localized(base, args.layer_map, args.layers)
    except LayerMapError as error:
        print(f"error: {error}\nfor this benchmark: pass --layer-map FILE (from `safetext localize`) or --layers A,B", file=sys.stderr)
        return 2

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lora_compare_"))
    vocab = load_vocabulary()
    common = list(vocab["common"])
    random.Random(args.seed).shuffle(common)
    train_words = common[: args.train_words]
    dataset = write_glyph_dataset(
        work / "data", train_words, per_word=args.per_word, seed=args.seed, height=height, width=width, sign_size=base.sign_size
    )
    suites = {
        "trained_words": eval_items(train_words, args.eval_n, args.seed + 1),
        "heldout_words": eval_items(list(vocab["heldout"]), args.eval_n, args.seed + 2),
    }
    ocr = ocr_for_pipeline(get_ocr("rapidocr"), base)
    config = LoraTrainConfig(
        rank=args.rank, alpha=args.alpha, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
        grad_accum=args.grad_accum, checkpoint_every=0, seed=args.seed,
    )
    results: dict = {
        "model": args.model or "shipped",
        "layer_map": map_info,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
        "data": {"words": len(train_words), "per_word": args.per_word, "images": len(train_words) * args.per_word, "size": [height, width]},
        "evaluation": {"sample_steps": args.sample_steps, "suites": {k: len(v) for k, v in suites.items()}, "ocr": "rapidocr"},
        "threads": args.threads,
    }
    unet_params = sum(p.numel() for p in base.unet.parameters())
    results["base"] = {name: exact_match_rate(base, ocr, items, args.sample_steps, args.seed) for name, items in suites.items()}
    print("base: " + ", ".join(f"{k} {v['exact_match']:.3f}" for k, v in results["base"].items()), flush=True)
    del base

    for run, selector in (("localized", localized), ("all_cross_attention", ALL_CROSS_ATTENTION)):
        pipe = load_glyph_pipeline(args.model)
        t0 = time.perf_counter()
        trained = train_lora(pipe, dataset, selector, config, out_dir=work / run, progress=True)
        seconds = time.perf_counter() - t0
        results[run] = {
            "attention_modules": list(trained.targets.attention_modules),
            "lora_parameters": trained.lora_parameters,
            "share_of_unet": trained.lora_parameters / unet_params,
            "train_seconds": seconds,
            "final_loss": trained.losses[-1] if trained.losses else None,
            "weights": str(trained.weights_path),
            **{name: exact_match_rate(pipe, ocr, items, args.sample_steps, args.seed) for name, items in suites.items()},
        }
        print(f"{run}: " + ", ".join(f"{k} {results[run][k]['exact_match']:.3f}" for k in suites), flush=True)
        del pipe

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    table = markdown(results, list(suites))
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def markdown(results: dict, suites: list[str]) -> str:
    """The comparison table: parameter counts and OCR exact match before -> after per suite."""
    suite_columns = " | ".join(f"{s} exact (before -> after)" for s in suites)
    head = f"| adapter | attention modules | LoRA params | share of UNet | {suite_columns} | train s | final loss |"
    lines = [head, "|" + "---|" * (6 + len(suites))]
    for run in ("localized", "all_cross_attention"):
        r = results[run]
        cells = [f"{results['base'][s]['exact_match']:.3f} -> {r[s]['exact_match']:.3f}" for s in suites]
        loss = "-" if r["final_loss"] is None else f"{r['final_loss']:.4f}"
        lines.append(
            f"| {run} | {len(r['attention_modules'])} | {r['lora_parameters']:,} | {r['share_of_unet']:.2%} | "
            + " | ".join(cells) + f" | {r['train_seconds']:.0f} | {loss} |"
        )
    c, d = results["config"], results["data"]
    lines += [
        "",
        f"model: {results['model']}; layer map: {results['layer_map']['name']} ({results['layer_map']['source']}): "
        + ", ".join(results["layer_map"]["layers"]),
        f"same data and settings for both: {d['images']} images of {d['words']} words at {d['size'][0]}x{d['size'][1]}; "
        f"rank {c['rank']}, alpha {c['alpha']}, {c['steps']} steps x batch {c['batch_size']} x accum {c['grad_accum']}, "
        f"lr {c['lr']}, seed {c['seed']}; OCR: rapidocr on {results['evaluation']['sample_steps']}-step samples, "
        f"{results['threads']} threads.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
