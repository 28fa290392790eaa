"""Localize the embedded glyph model's text layers and check the map on held-out prompt pairs.

    python benchmarks/localize_glyph.py [--model DIR] [--pairs 32] [--eval-pairs 100] [--steps 20]

1. ``localize_layers`` on ``--pairs`` glyph prompt pairs (common words, seed 0), OCR scoring, timed.
2. The chosen map on ``--eval-pairs`` held-out pairs: words the localization never saw (seed 1000,
   ``--eval-split common``) or the never-trained held-out vocabulary (``--eval-split heldout``).

Writes ``localize_glyph.json`` / ``.md`` / ``.png`` (per-layer chart) and ``glyph_layer_map.yaml``
(the map, named ``glyph``, ready for ``safetext/patching/presets/glyph.yaml``) to ``--results``.
Acceptance (issue 4): at most 25% of the text-attention layers, flip rate to the target >= 80% of the
held-out pairs, mean SSIM to the unpatched image >= 0.85, localization < 10 min on 2 CPU cores.
``--check`` exits 1 when a criterion is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
SSIM_MIN = 0.85
FLIP_MIN = 0.80
LAYER_SHARE_MAX = 0.25
SECONDS_MAX = 600.0


def evaluate_map(pipe, layer_map, pairs, steps: int, scorer) -> dict:
    """Flip rate and SSIM of a layer map on prompt pairs, with the unpatched references."""
    from safetext.localize import PatchCandidate, PatchSweep, SingleProcess

    sweep = PatchSweep(pipe, pairs, scorer, call_kwargs={"num_inference_steps": steps}, process_group=SingleProcess(), progress=False)
    indices = tuple(layer.index for layer in layer_map.select(pipe))
    candidate = PatchCandidate(indices, layer_map.start_fraction)
    source, target = sweep.reference_scores()
    score = sweep.evaluate([candidate], desc="held-out pairs")[candidate]
    both = [pair.flipped and pair.similarity >= SSIM_MIN for pair in score.per_pair]
    examples = [
        {"source": p.source_text, "target": p.target_text, "read": s.text, "flipped": s.flipped, "ssim": round(s.similarity, 4)}
        for p, s in zip(pairs, score.per_pair)
    ]
    return {
        "pairs": len(pairs),
        "flip_rate": score.flip_rate,
        "movement": score.movement,
        "target_f1": score.target_f1,
        "ssim": score.similarity,
        "flipped_at_ssim": sum(both) / len(both),
        "unpatched_flip_rate": source.flip_rate,
        "target_prompt_written_rate": target.flip_rate,
        "target_prompt_ssim": target.similarity,
        "examples": examples,
    }


def acceptance_rows(share: float, held: dict, same: dict, seconds: float) -> list[dict]:
    """Issue 4's criteria, the held-out ones on pairs of any word length and on pairs of equal length."""

    def row(criterion: str, value: float, required: str, passed: bool, fmt: str = ".3f") -> dict:
        return {"criterion": criterion, "value": format(value, fmt), "required": required, "passed": bool(passed)}

    rows = [row("share of text-attention layers", share, f"<= {LAYER_SHARE_MAX}", share <= LAYER_SHARE_MAX)]
    for label, pairs in (("any word length", held), ("equal word length", same)):
        rows += [
            row(f"held-out flip rate to target, {label}", pairs["flip_rate"], f">= {FLIP_MIN}", pairs["flip_rate"] >= FLIP_MIN),
            row(f"held-out mean SSIM to unpatched, {label}", pairs["ssim"], f">= {SSIM_MIN}", pairs["ssim"] >= SSIM_MIN),
            row(f"held-out flipped with SSIM >= {SSIM_MIN} (per pair), {label}", pairs["flipped_at_ssim"], f">= {FLIP_MIN}", pairs["flipped_at_ssim"] >= FLIP_MIN),
        ]
    rows.append(row("localization wall time (s)", seconds, f"< {SECONDS_MAX:.0f}", seconds < SECONDS_MAX, ".0f"))
    return rows


def write_markdown(summary: dict, path: Path) -> None:
    loc, held, same = summary["localization"], summary["held_out"], summary["held_out_same_length"]
    lines = [
        "# Localization of the glyph model",
        "",
        f"Model: {summary['model']}; {summary['steps']} steps; {summary['threads']} CPU threads; OCR: rapidocr (crop mode); "
        f"localization pairs: {summary.get('localization_pairs', 'any word length')}.",
        "",
        "## Chosen layer map",
        "",
        *[f"- `{name}`" for name in loc["layer_map"]["layers"]],
        "",
        f"Start fraction {loc['layer_map']['start_fraction']:g}; {loc['parameters']['layers']} of "
        f"{loc['parameters']['text_layers']} text-attention layers ({loc['parameters']['share_of_text_layers']:.0%}); "
        f"{loc['parameters']['kv_parameters']:,} K/V parameters = {loc['parameters']['share_of_denoiser']:.2%} of the UNet, "
        f"{loc['parameters']['share_of_text_kv']:.1%} of all text K/V. Growth stopped: {loc['stop_reason']}.",
        "",
        "## Acceptance",
        "",
        "| criterion | value | required | pass |",
        "|---|---|---|---|",
    ]
    for row in summary["acceptance"]:
        lines.append(f"| {row['criterion']} | {row['value']} | {row['required']} | {'yes' if row['passed'] else 'NO'} |")
    lines += [
        "",
        f"Held-out pairs ({held['pairs']}, split `{summary['eval_split']}`, words unseen by the localization): "
        f"flip rate {held['flip_rate']:.2f}, flipped with SSIM >= {SSIM_MIN}: {held['flipped_at_ssim']:.2f}, "
        f"mean SSIM {held['ssim']:.3f}. Unpatched images read as the target word: {held['unpatched_flip_rate']:.2f}; "
        f"the target prompt itself is written correctly in {held['target_prompt_written_rate']:.2f} of the pairs (ceiling). "
        f"Regenerating the target prompt instead (same seed) gives mean SSIM {held['target_prompt_ssim']:.3f} to the source "
        "image.",
        "",
        f"Held-out pairs of equal word length ({same['pairs']}, seed 2000; safetext's replacement words have the "
        f"flagged word's length, so this is the case neutralization meets): flip rate {same['flip_rate']:.2f}, "
        f"flipped with SSIM >= {SSIM_MIN}: {same['flipped_at_ssim']:.2f}, mean SSIM {same['ssim']:.3f}; the target prompt's own image: written correctly {same['target_prompt_written_rate']:.2f}, "
        f"SSIM {same['target_prompt_ssim']:.3f} to the source.",
        "",
        "## Each layer alone (localization pairs)",
        "",
        "![per-layer scores](localize_glyph.png)",
        "",
        "| layer | name | movement | flip rate | SSIM |",
        "|---|---|---|---|---|",
    ]
    for row in loc["single_layers"]:
        lines.append(f"| {row['layers'][0]} | `{row['name']}` | {row['movement']:.3f} | {row['flip_rate']:.2f} | {row['similarity']:.3f} |")
    lines += ["", "## Start fraction of the chosen set", "", "| start | flip rate | movement | SSIM |", "|---|---|---|---|"]
    for row in loc["start_fractions"]:
        lines.append(f"| {row['start_fraction']:g} | {row['flip_rate']:.2f} | {row['movement']:.3f} | {row['similarity']:.3f} |")
    lines += ["", "## Held-out examples", "", "| source | target | OCR read | flipped | SSIM |", "|---|---|---|---|---|"]
    for row in held["examples"][:12]:
        lines.append(f"| {row['source']} | {row['target']} | {row['read']!r} | {row['flipped']} | {row['ssim']:.3f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="glyph pipeline directory (default: the shipped weights)")
    parser.add_argument("--pairs", type=int, default=32, help="localization prompt pairs")
    parser.add_argument("--eval-pairs", type=int, default=100, help="held-out evaluation pairs")
    parser.add_argument("--eval-split", default="common", choices=("common", "heldout"), help="words of the held-out pairs")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--same-length", action="store_true", help="localize on pairs of words of equal length (the pairs neutralization meets); held-out results cover both")
    parser.add_argument("--budget", type=int, default=None, help="layer budget (default: 25%% of the text layers)")
    parser.add_argument("--similarity-floor", type=float, default=0.1, help="see safetext.localize.grow_layer_set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="localization output/checkpoint directory (default: temporary)")
    parser.add_argument("--resume", action="store_true", help="resume the checkpoint in --workdir")
    parser.add_argument("--results", default=str(RESULTS), help="where to write the result files")
    parser.add_argument("--check", action="store_true", help="exit 1 when an acceptance criterion is missed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from safetext.localize import OcrMovementScorer, glyph_prompt_pairs, localize_layers, pair_words
    from safetext.localize.report import save_figure, single_layer_figure
    from safetext.models.glyph import load_glyph_pipeline

    pipe = load_glyph_pipeline(args.model)
    scorer = OcrMovementScorer()
    pairs = glyph_prompt_pairs(args.pairs, split="common", seed=0, same_length=args.same_length)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="localize_glyph_"))
    started = time.perf_counter()
    result = localize_layers(
        pipe, pairs, scorer=scorer, call_kwargs={"num_inference_steps": args.steps}, budget=args.budget,
        similarity_floor=args.similarity_floor, out_dir=workdir, resume=args.resume, name="glyph",
    )
    seconds = time.perf_counter() - started
    print(f"localized in {seconds:.0f} s: {list(result.layer_map.layers)} from {result.layer_map.start_fraction:g}", flush=True)

    exclude = pair_words(pairs) if args.eval_split == "common" else ()
    held_pairs = glyph_prompt_pairs(args.eval_pairs, split=args.eval_split, seed=1000, exclude=exclude)
    held = evaluate_map(pipe, result.layer_map, held_pairs, args.steps, scorer)
    # what neutralization does: the policy's replacement has the flagged word's length
    same_pairs = glyph_prompt_pairs(args.eval_pairs, split=args.eval_split, seed=2000, exclude=exclude, same_length=True)
    same = evaluate_map(pipe, result.layer_map, same_pairs, args.steps, scorer)

    acceptance = acceptance_rows(result.parameters.share_of_text_layers, held, same, seconds)
    summary = {
        "model": args.model or "shipped",
        "steps": args.steps,
        "threads": args.threads,
        "eval_split": args.eval_split,
        "localization_pairs": "same word length" if args.same_length else "any word length",
        "localization_seconds": seconds,
        "localization": result.summary(),
        "held_out": held,
        "held_out_same_length": same,
        "acceptance": acceptance,
        "passed": all(row["passed"] for row in acceptance),
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "localize_glyph.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    save_figure(single_layer_figure(result), out / "localize_glyph.png")
    write_markdown(summary, out / "localize_glyph.md")
    result.layer_map.save(out / "glyph_layer_map.yaml")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    for row in acceptance:
        print(f"{row['criterion']:58s} {row['value']:>8s} (required {row['required']}): {'pass' if row['passed'] else 'FAIL'}")
    print(f"wrote {out / 'localize_glyph.md'}, {out / 'glyph_layer_map.yaml'}")
    return 1 if args.check and not summary["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
