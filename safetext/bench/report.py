"""Write a benchmark's files: result JSON, timing JSON, Markdown tables, image grid and trade-off plot.

For a stem such as ``toxic_glyph`` in ``benchmarks/results``:

* ``toxic_glyph.json``: the deterministic result document (settings, per-method summaries, every
  prompt's record). Identical, byte for byte, for any ``--processes``.
* ``toxic_glyph_timing.json``: seconds per image per method, wall time, processes and threads.
* ``toxic_glyph.md``: the tables (timing column from the timing document) and the conventions.
* ``toxic_glyph_grid.png``: unguarded vs each method on the first toxic prompts, upscaled with
  nearest-neighbour so the words stay readable.
* ``toxic_glyph_tradeoff.png``: toxic-text rate against mean SSIM to the unguarded image.

matplotlib (``pip install 'safetext[plots]'``) draws the plot through ``matplotlib.figure.Figure``
and the Agg canvas, without touching the global backend; without it the plot is skipped with a
warning.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from safetext.bench.runner import BenchmarkResult

__all__ = ["CONVENTIONS", "markdown_report", "write_grid", "write_report", "write_tradeoff_plot"]

logger = logging.getLogger("safetext.bench")

CONVENTIONS = (
    "Toxic-text rate: share of toxic prompts whose image's OCR text the policy would neutralize or block "
    "(scored with rendered-text extraction off, so all OCR text counts as written).",
    "A refusal (block) has no image: it counts as 0 toxic text and toxicity 0 and is left out of OCR F1 and "
    "the similarity means; SSIM/PSNR/MSE are n/a when every prompt was refused.",
    "OCR F1 is the corpus character F1 (harmonic mean of mean precision and mean recall) against the "
    "policy's replacement word (replacement) or the original word (word).",
    "SSIM/PSNR/MSE compare each image with the unguarded image of the same prompt and seed, on float "
    "images in [0, 1] (the paper's code computes MSE on uint8 arrays, which wraps modulo 256). PSNR means "
    "are over non-identical images.",
    "Clean prompts: bit-identical share = images whose float32 bytes equal the unguarded image's. Every "
    "method hands an unflagged prompt to the raw pipeline; by default only safetext is run on them.",
    "Timings are in the separate _timing.json file, so the result JSON is byte-identical for any number "
    "of processes (given the same threads per process).",
)

_TOXIC_COLUMNS = (
    ("toxic_text_rate", "toxic-text rate", "{:.3f}"),
    ("toxic_rate_reduction", "reduction vs unguarded", "{:.1%}"),
    ("mean_toxicity", "mean toxicity", "{:.3f}"),
    ("ocr_f1_replacement", "OCR F1 (replacement)", "{:.3f}"),
    ("exact_replacement_rate", "replacement exact", "{:.3f}"),
    ("ocr_f1_word", "OCR F1 (word)", "{:.3f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("mse", "MSE", "{:.5f}"),
    ("identical_rate", "identical", "{:.3f}"),
    ("refusal_rate", "refusal rate", "{:.3f}"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "n/a"
    return spec.format(value)


def markdown_report(merged: BenchmarkResult, stem: str) -> str:
    """The Markdown report: settings, toxic-prompt table, clean-prompt table, conventions."""
    result, timing = merged.result, merged.timing
    methods = list(result["config"]["methods"])
    suite, model, config = result["suite"], result["model"], result["config"]
    layer_map = model["layer_map"]
    lines = [
        f"# Toxicity benchmark: {suite['name']} suite ({suite['split']} split)",
        "",
        f"Model: {model['label'] or model['pipeline']} ({model['pipeline']}, {model['fingerprint']}); layer map "
        f"`{layer_map['name']}` ({layer_map['source']}): {len(layer_map['layers'])} layer(s) from "
        f"{layer_map['start_fraction']:.3g} of the schedule.",
        f"{suite['n_toxic']} toxic and {suite['n_clean']} clean prompts, seed {suite['seed']}, {config['steps']} steps, "
        f"policy `{config['policy']}`, OCR {config['ocr']} ({config['ocr_mode']}).",
    ]
    if layer_map["source"] == "fallback":
        lines.append(
            "No localized layer map matches this model, so `safetext` patched every text-attention layer from step 0 "
            "(the same patch as `all_layers` there); run `safetext localize` and pass the map with --layer-map."
        )
    lines += ["", "## Toxic prompts", ""]
    columns = list(_TOXIC_COLUMNS)
    if any("clip_t" in row for row in result["summary"].values()):
        columns.append(("clip_t", "CLIP-T", "{:.2f}"))
    header = ["method"] + [label for _, label, _ in columns] + ["s/image"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seconds = timing["seconds_per_image"]["toxic"]
    for name in methods:
        row = result["summary"][name]
        cells = [name] + [_fmt(row.get(key), spec) for key, _, spec in columns] + [_fmt(seconds.get(name), "{:.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    clip_note = result["clip_t"] if result["clip_t"].startswith("CLIP-T") else f"CLIP-T {result['clip_t']}."
    lines += ["", clip_note, "", "## Clean prompts (collateral damage)", ""]
    lines += ["| method | n | flagged by policy | refusal rate | bit-identical to unguarded | SSIM | s/image |",
              "|---|---|---|---|---|---|---|"]
    clean_seconds = timing["seconds_per_image"]["clean"]
    for name in result["config"]["clean_methods"]:
        row = result["clean_summary"][name]
        lines.append(
            f"| {name} | {row['n']} | {_fmt(row['flagged_rate'], '{:.3f}')} | {_fmt(row['refusal_rate'], '{:.3f}')} | "
            f"{_fmt(row['bit_identical_share'], '{:.3f}')} | {_fmt(row['ssim'], '{:.3f}')} | "
            f"{_fmt(clean_seconds.get(name), '{:.3f}')} |"
        )
    wall = timing.get("wall_seconds")
    lines += [
        "",
        f"Run: {_fmt(wall, '{:.0f}')} s wall, {timing.get('processes') or 1} process(es), "
        f"{timing.get('threads_per_process') or 'default'} thread(s) each; OCR and scoring "
        f"{_fmt(timing.get('scoring_seconds_per_prompt'), '{:.3f}')} s per toxic prompt.",
        "",
        "## Methods",
        "",
    ]
    lines += [f"- `{name}`: {result['methods'][name]}" for name in methods]
    lines += ["", "## Conventions", ""] + [f"- {text}" for text in CONVENTIONS]
    lines += ["", f"Figures: `{stem}_grid.png` (before/after), `{stem}_tradeoff.png` (toxicity vs SSIM).", ""]
    return "\n".join(lines)


def _cell(image: np.ndarray | None, height: int, width: int, scale: int) -> Any:
    from PIL import Image, ImageDraw

    if image is None:
        cell = Image.new("RGB", (width * scale, height * scale), (128, 128, 128))
        ImageDraw.Draw(cell).text((4, 4), "refused", fill=(255, 255, 255))
        return cell
    pixels = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return Image.fromarray(pixels).resize((width * scale, height * scale), Image.NEAREST)


def write_grid(merged: BenchmarkResult, path: str | Path, *, label_height: int = 16) -> Path | None:
    """Before/after grid: one row per shown toxic prompt, one column per method (unguarded first)."""
    from PIL import Image, ImageDraw

    methods = list(merged.result["config"]["methods"])
    rows = [merged.grid[i] for i in sorted(merged.grid)]
    sample = next((im for row in rows for im in row.values() if im is not None), None)
    if sample is None:
        return None
    height, width = sample.shape[:2]
    scale = max(1, math.ceil(96 / height)) if height < 96 else 1
    cell_w, cell_h, gap = width * scale, height * scale, 2
    grid = Image.new("RGB", (len(methods) * (cell_w + gap), label_height + len(rows) * (cell_h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(methods):
        draw.text((c * (cell_w + gap) + 2, 2), name, fill=(0, 0, 0))
        for r, row in enumerate(rows):
            grid.paste(_cell(row.get(name), height, width, scale), (c * (cell_w + gap), label_height + r * (cell_h + gap)))
    path = Path(path)
    grid.save(path)
    return path


def write_tradeoff_plot(merged: BenchmarkResult, path: str | Path) -> Path | None:
    """Toxic-text rate against mean SSIM to the unguarded image, one point per method."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed: trade-off plot skipped (pip install 'safetext[plots]')")
        return None
    summary = merged.result["summary"]
    figure = Figure(figsize=(6.0, 4.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    refused = []
    points: dict[tuple[float, float], list[str]] = {}
    for name in merged.result["config"]["methods"]:
        row = summary[name]
        if row["ssim"] is None or row["toxic_text_rate"] is None:
            refused.append(f"{name}: no images (refusal rate {_fmt(row['refusal_rate'], '{:.2f}')})")
            continue
        points.setdefault((round(row["ssim"], 3), round(row["toxic_text_rate"], 3)), []).append(name)
    for (x, y), names in points.items():  # methods with the same numbers share one labelled point
        axes.scatter([x], [y], s=40)
        axes.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(-5, 6), ha="right", fontsize=8)
    axes.set_xlabel("mean SSIM to the unguarded image (higher keeps more of the image)")
    axes.set_ylabel("toxic-text rate (OCR text flagged)")
    axes.set_title(f"{merged.result['suite']['name']} suite: toxicity vs preservation", fontsize=10)
    axes.set_xlim(-0.05, 1.05)
    axes.set_ylim(-0.05, 1.05)
    axes.grid(True, alpha=0.3)
    if refused:
        axes.text(0.02, 0.02, "\n".join(refused), transform=axes.transAxes, fontsize=7, va="bottom")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def write_report(merged: BenchmarkResult, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write every file of the report into ``out_dir``; returns kind -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "result": out / f"{stem}.json",
        "timing": out / f"{stem}_timing.json",
        "markdown": out / f"{stem}.md",
    }
    paths["result"].write_text(json.dumps(merged.result, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    paths["timing"].write_text(json.dumps(merged.timing, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown_report(merged, stem), encoding="utf-8")
    grid = write_grid(merged, out / f"{stem}_grid.png")
    if grid is not None:
        paths["grid"] = grid
    plot = write_tradeoff_plot(merged, out / f"{stem}_tradeoff.png")
    if plot is not None:
        paths["tradeoff"] = plot
    return paths
