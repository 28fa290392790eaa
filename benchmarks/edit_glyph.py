"""Edit the written word of glyph images with the localized layer map.

    python benchmarks/edit_glyph.py [--model DIR] [--layer-map MAP] [--edits 50] [--steps 20]

For ``--edits`` prompt pairs (glyph common words, seed 2000: not the localization's pairs) it runs
``edit_text(pipe, source_prompt, source_word, target_word, seed=...)`` and OCRs the original and the
edited image. An edit succeeds when the edited image reads as the target word and its SSIM to the
original is >= 0.85. Acceptance (issue 4): >= 80% of edits succeed.

``--region text`` pins everything but the inside of the model's sign (2 px in from its edges) to the
original's denoising trajectory (``edit_text(region="text")``): only the letters' area is regenerated.
``--region auto`` finds the region without the model's declared sign, from the original run's
cross-attention to the source word (``edit_text(region="auto")``); the table then also reports how well
that box matches the sign (IoU).

Two references are reported for every edit: regenerating the target prompt with the same seed (what an
edit must beat on SSIM), and a *perfect edit* on the model's training distribution: two renderings of
the same scene and sign by the training-data renderer that differ only in the word. Its SSIM is the most
any edit can keep when the letters change, on this image geometry (the sign is a third of the image).

The layer map defaults to ``benchmarks/results/glyph_layer_map.yaml`` (written by
``localize_glyph.py``) when it exists, else the model's shipped preset. Writes ``edit_glyph.json`` /
``.md`` and ``edit_glyph.png`` (side-by-side examples) to ``--results``; ``--check`` exits 1 when the
acceptance is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
SSIM_MIN = 0.85
SUCCESS_MIN = 0.80
GRID_ROWS = 8


def example_grid(pictures: list, path: Path) -> None:
    """Stack side-by-side pictures vertically into one PNG."""
    from PIL import Image

    width = max(picture.width for picture in pictures)
    canvas = Image.new("RGB", (width, sum(picture.height for picture in pictures)), (255, 255, 255))
    top = 0
    for picture in pictures:
        canvas.paste(picture, (0, top))
        top += picture.height
    canvas.save(path)


def perfect_edit_ssim(pipe, pair) -> float:
    """SSIM of two training renderings (same scene and sign, seeded by the pair) that differ only in the word."""
    from safetext.models.glyph.data import COLORS, rendered_word_swap
    from safetext.scoring import ssim

    color = next(name for name in COLORS if f" {name} " in f" {pair.source_prompt} ")
    return float(ssim(*rendered_word_swap(pair.source_text, pair.target_text, color, pair.seed, pipe.sign_size, pipe.default_size)))


def box_iou(a, b) -> float:
    """Intersection over union of two (top, left, bottom, right) boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def write_markdown(summary: dict, path: Path) -> None:
    lengths = "the source word's length" if summary.get("same_length") else "any length"
    lines = [
        "# Text editing on the glyph model",
        "",
        f"Model: {summary['model']}; layer map: {summary['layer_map']['name']} "
        f"({', '.join(f'`{name}`' for name in summary['layer_map']['layers'])}, start {summary['layer_map']['start_fraction']:g}); "
        f"region: {'none (the whole image is regenerated)' if summary['region'] is None else summary['region']}; "
        f"{summary['steps']} steps; {summary['threads']} CPU threads; OCR: rapidocr (crop mode).",
        "",
        "| metric | value | required |",
        "|---|---|---|",
        f"| edits read as the target word with SSIM >= {SSIM_MIN} | {summary['success_rate']:.3f} | >= {SUCCESS_MIN} |",
        f"| edits read as the target word | {summary['flip_rate']:.3f} | |",
        f"| mean SSIM edited vs original | {summary['mean_ssim']:.3f} | |",
        f"| mean PSNR edited vs original (dB) | {'-' if summary['mean_psnr'] is None else format(summary['mean_psnr'], '.2f')} | |",
        f"| originals read as the source word | {summary['original_read_rate']:.3f} | |",
        f"| regenerating the target prompt instead (same seed): read as the target word | {summary['regenerated_read_rate']:.3f} | |",
        f"| regenerating the target prompt instead: mean SSIM to the original | {summary['regenerated_ssim']:.3f} | |",
        f"| perfect edit (renderer, same scene, other word): mean SSIM | {summary['perfect_ssim']:.3f} | |",
        f"| perfect edit: share with SSIM >= {SSIM_MIN} (the most any edit can pass) | {summary['perfect_pass_rate']:.3f} | |",
        f"| seconds per edit (original + edited) | {summary['seconds_per_edit']:.2f} | |",
    ]
    if summary.get("auto_box_sign_iou") is not None:
        lines.append(f"| region='auto' box vs the model's sign: mean IoU | {summary['auto_box_sign_iou']:.3f} | |")
    lines += [
        "",
        f"Passed: {'yes' if summary['passed'] else 'NO'} ({summary['edits']} edits). Edits are into words of "
        f"{lengths}; regenerating the target "
        "prompt is the reference an edit should beat on SSIM, the perfect edit the most it can keep.",
        "",
        f"![examples]({summary['name']}.png)",
        "",
        "| prompt | to | original read | edited read | SSIM | success |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["examples"][:16]:
        lines.append(
            f"| {row['prompt']} | {row['target']} | {row['original_text']!r} | {row['edited_text']!r} | {row['ssim']:.3f} | {row['success']} |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="glyph pipeline directory (default: the shipped weights)")
    parser.add_argument("--layer-map", default=None, help="layer map file or preset (default: see above)")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--split", default="common", choices=("common", "heldout"), help="words of the edited prompts")
    parser.add_argument("--same-length", action="store_true", help="edit into words of the source word's length only")
    parser.add_argument("--region", default=None, choices=("text", "auto"), help="keep the image outside the text region (default: no region)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default=str(RESULTS), help="where to write the result files")
    parser.add_argument("--name", default="edit_glyph", help="file stem of the result files")
    parser.add_argument("--check", action="store_true", help="exit 1 when the acceptance is missed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from safetext.edit import edit_text
    from safetext.localize import glyph_prompt_pairs
    from safetext.models.glyph import load_glyph_pipeline
    from safetext.patching.resolve import resolve_layer_map
    from safetext.scoring import exact_match, get_ocr, ocr_for_pipeline, ssim

    pipe = load_glyph_pipeline(args.model)
    default_map = RESULTS / "glyph_layer_map.yaml"
    layer_map = resolve_layer_map(pipe, args.layer_map or (default_map if default_map.is_file() else None)).layer_map
    ocr = ocr_for_pipeline(get_ocr("rapidocr", mode="crop"), pipe)
    rows, pictures, seconds = [], [], []
    for pair in glyph_prompt_pairs(args.edits, split=args.split, seed=2000, same_length=args.same_length):
        started = time.perf_counter()
        result = edit_text(
            pipe, pair.source_prompt, pair.source_text, pair.target_text,
            layer_map=layer_map, seed=pair.seed, ocr=ocr, region=args.region, num_inference_steps=args.steps,
        )
        seconds.append(time.perf_counter() - started)
        metrics = result.metrics
        success = bool(metrics["edited_reads_target"] and metrics["ssim"] >= SSIM_MIN)
        # the alternative to an edit: regenerate the target prompt with the same seed (the SSIM ceiling of any
        # method that writes the other word, on a canvas the word fills)
        regenerated = pipe(
            result.target_prompt, num_inference_steps=args.steps, generator=torch.Generator().manual_seed(pair.seed), output_type="np"
        ).images[0]
        original = result.original.permute(1, 2, 0).numpy()
        regenerated_ssim = ssim(original, regenerated)
        regenerated_reads = exact_match(ocr.read(regenerated).text, pair.target_text)
        perfect_ssim = perfect_edit_ssim(pipe, pair)
        rows.append({
            "prompt": pair.source_prompt, "source": pair.source_text, "target": pair.target_text, "seed": pair.seed,
            "original_text": metrics["original_text"], "edited_text": metrics["edited_text"],
            "original_reads_source": metrics["original_reads_source"], "edited_reads_target": metrics["edited_reads_target"],
            "ssim": metrics["ssim"], "psnr": metrics["psnr"], "success": success,
            "regenerated_ssim": regenerated_ssim, "regenerated_reads_target": regenerated_reads,
            "perfect_ssim": perfect_ssim,
            "region_box": (metrics["region"] or {}).get("box"),
        })
        if len(pictures) < GRID_ROWS:
            pictures.append(result.side_by_side)
    psnrs = [row["psnr"] for row in rows if row["psnr"] is not None]
    summary = {
        "model": args.model or "shipped",
        "name": args.name,
        "layer_map": {"name": layer_map.name, "layers": list(layer_map.layers), "start_fraction": layer_map.start_fraction},
        "steps": args.steps,
        "threads": args.threads,
        "edits": len(rows),
        "success_rate": sum(row["success"] for row in rows) / len(rows),
        "flip_rate": sum(row["edited_reads_target"] for row in rows) / len(rows),
        "original_read_rate": sum(row["original_reads_source"] for row in rows) / len(rows),
        "mean_ssim": statistics.fmean(row["ssim"] for row in rows),
        "mean_psnr": statistics.fmean(psnrs) if psnrs else None,
        "regenerated_ssim": statistics.fmean(row["regenerated_ssim"] for row in rows),
        "regenerated_read_rate": sum(row["regenerated_reads_target"] for row in rows) / len(rows),
        "perfect_ssim": statistics.fmean(row["perfect_ssim"] for row in rows),
        "perfect_pass_rate": sum(row["perfect_ssim"] >= SSIM_MIN for row in rows) / len(rows),
        "region": args.region,
        "auto_box_sign_iou": (
            statistics.fmean(box_iou(row["region_box"], pipe.sign_box()) for row in rows) if args.region == "auto" else None
        ),
        "same_length": args.same_length,
        "seconds_per_edit": statistics.fmean(seconds),
        "examples": rows,
    }
    summary["passed"] = summary["success_rate"] >= SUCCESS_MIN
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    example_grid(pictures, out / f"{args.name}.png")
    write_markdown(summary, out / f"{args.name}.md")
    print(
        f"{summary['edits']} edits: success {summary['success_rate']:.2f} (required >= {SUCCESS_MIN}), "
        f"flip {summary['flip_rate']:.2f}, SSIM {summary['mean_ssim']:.3f}, {summary['seconds_per_edit']:.2f} s/edit"
    )
    print(f"wrote {out / (args.name + '.md')}")
    return 1 if args.check and not summary["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
