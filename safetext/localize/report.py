"""The localization report: per-layer bar chart, trade-off table, chosen set with its parameter share.

:func:`write_localization_outputs` writes, into one directory:

* ``layer_map.yaml``: the :class:`~safetext.patching.LayerMap` to ship or pass as ``layer_map=``;
* ``per_layer.png``: movement, flip rate and SSIM of every layer patched alone (chosen layers marked);
* ``report.md``: the chosen set, its parameter share, and the trade-off tables;
* ``localization.json``: the same numbers for scripts.

The chart is drawn on a ``matplotlib.figure.Figure`` with its own Agg canvas, so no global matplotlib
state (backend, pyplot figures, rcParams) is touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from safetext.localize.records import CandidateScore

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from safetext.localize.localize import LocalizationResult

OUTPUT_FILES = {
    "layer_map": "layer_map.yaml",
    "chart": "per_layer.png",
    "report": "report.md",
    "summary": "localization.json",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def single_layer_figure(result: "LocalizationResult") -> "Figure":
    """Bar chart of every layer patched alone: movement and flip rate (top), SSIM (bottom)."""
    from matplotlib.figure import Figure

    count = len(result.single_layers)
    positions = list(range(count))
    chosen = set(result.layer_map.layers)
    marked = [layer.name in chosen for layer in result.layers]
    figure = Figure(figsize=(max(6.0, 0.32 * count + 2.0), 5.0), dpi=120)
    top, bottom = figure.subplots(2, 1, sharex=True)
    width = 0.4
    movement = [score.movement for score in result.single_layers]
    flips = [score.flip_rate for score in result.single_layers]
    top.bar([p - width / 2 for p in positions], movement, width, label="movement to target", color="#3b75af")
    top.bar([p + width / 2 for p in positions], flips, width, label="flip rate", color="#ef8636")
    top.axhline(result.source.movement, color="grey", linestyle="--", linewidth=1, label="unpatched")
    top.set_ylim(0, 1.05)
    top.set_ylabel("text moved")
    top.legend(loc="upper left", fontsize=8)
    similarity = [score.similarity for score in result.single_layers]
    bottom.bar(positions, similarity, 0.6, color=["#c03d3e" if mark else "#8c8c8c" for mark in marked])
    bottom.set_ylim(min(similarity + [1.0]) - 0.05, 1.0)
    bottom.set_ylabel("SSIM to unpatched")
    bottom.set_xlabel("text-attention layer (forward order; red = chosen)")
    bottom.set_xticks(positions)
    bottom.set_xticklabels([str(p) for p in positions], fontsize=7)
    for position, mark in zip(positions, marked):
        if mark:
            top.annotate("*", (position, 1.0), ha="center", color="#c03d3e", fontsize=12)
    figure.suptitle(f"{result.layer_map.name}: each text-attention layer patched alone ({len(result.pairs)} pairs)")
    figure.tight_layout()
    return figure


def save_figure(figure: "Figure", path: str | Path) -> Path:
    """Render ``figure`` to PNG with a private Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def _row(label: str, score: CandidateScore, reference: float) -> str:
    candidate = score.candidate
    layers = ", ".join(str(index) for index in candidate.layers) if candidate is not None else "-"
    start = f"{candidate.start_fraction:g}" if candidate is not None else "-"
    return (
        f"| {label} | {layers} | {start} | {_fmt(score.flip_rate, 2)} | {_fmt(score.movement)} | "
        f"{_fmt(score.target_f1)} | {_fmt(score.similarity)} | {_fmt(reference - score.similarity)} |"
    )


def trade_off_table(result: "LocalizationResult") -> str:
    """Markdown table of every configuration the search scored: text movement against image change."""
    header = (
        "| configuration | layers | start | flip rate | movement | target F1 | SSIM | SSIM lost |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    rows = [
        _row("unpatched source", result.source, result.source.similarity),
        _row("unpatched target (ceiling)", result.target, result.source.similarity),
    ]
    for layer, score in zip(result.layers, result.single_layers):
        rows.append(_row(f"layer {layer.index} alone (`{layer.name}`)", score, result.source.similarity))
    for round_index, step in enumerate(result.growth.steps, start=1):
        rows.append(_row(f"growth round {round_index} (+{step.added})", step.score, result.source.similarity))
    for score in result.start.scores:
        rows.append(_row("chosen set, start search", score, result.source.similarity))
    return "\n".join([header, *rows])


def _layer_lines(result: "LocalizationResult") -> Iterable[str]:
    by_name = {layer.name: layer for layer in result.layers}
    for name in result.layer_map.layers:
        layer = by_name[name]
        yield f"- {layer.index}: `{name}` ({layer.block} block)"


def localization_report(result: "LocalizationResult") -> str:
    """The Markdown report of a localization."""
    chosen = result.chosen
    share = result.parameters
    layer_map = result.layer_map
    steps = result.call_kwargs.get("num_inference_steps")
    start_note = ""
    if isinstance(steps, int):
        from safetext.patching.kv_patch import start_step_for

        start_note = f" (step {start_step_for(layer_map.start_fraction, steps)} of {steps})"
    lines = [
        f"# Localization report: {layer_map.name}",
        "",
        f"- Model: {layer_map.fingerprint.short()} ({layer_map.family}), {share.text_layers} text-attention layers",
        f"- Prompt pairs: {len(result.pairs)}; scorer: {result.scorer.get('name')}; "
        f"pipeline settings: {result.call_kwargs or 'defaults'}",
        f"- Wall time: {result.seconds:.1f} s, {result.pipeline_calls} pipeline calls",
        "",
        "## Chosen set",
        "",
        *_layer_lines(result),
        "",
        f"Start fraction: {layer_map.start_fraction:g}{start_note}. Growth stopped: {result.growth.stop_reason} "
        f"(budget {result.growth.budget} layers).",
    ]
    if not result.growth.converged:
        lines += ["", "**Warning: no layer moved the text by the minimum gain; do not ship this map.**"]
    lines += [
        "",
        "| metric | chosen set | unpatched source | unpatched target |",
        "|---|---|---|---|",
        f"| flip rate to target | {_fmt(chosen.flip_rate, 2)} | {_fmt(result.source.flip_rate, 2)} | {_fmt(result.target.flip_rate, 2)} |",
        f"| movement to target | {_fmt(chosen.movement)} | {_fmt(result.source.movement)} | {_fmt(result.target.movement)} |",
        f"| OCR F1 to target | {_fmt(chosen.target_f1)} | {_fmt(result.source.target_f1)} | {_fmt(result.target.target_f1)} |",
        f"| SSIM to unpatched source | {_fmt(chosen.similarity)} | {_fmt(result.source.similarity)} | {_fmt(result.target.similarity)} |",
        "",
        "## Parameter share",
        "",
        f"- Layers: {share.layers} of {share.text_layers} text-attention layers ({share.share_of_text_layers:.1%})",
        f"- K/V projection parameters patched: {share.kv_parameters:,}",
        f"- Share of all denoiser parameters ({share.denoiser_parameters:,}): {share.share_of_denoiser:.3%}",
        f"- Share of all text-attention K/V parameters ({share.text_kv_parameters:,}): {share.share_of_text_kv:.1%}",
        "",
        "## Each layer alone",
        "",
        f"![per-layer scores]({OUTPUT_FILES['chart']})",
        "",
        "## Trade-off table",
        "",
        "Movement is in [0, 1] (0 = the source text, 1 = the target text); SSIM is to the unpatched source image.",
        "",
        trade_off_table(result),
        "",
    ]
    return "\n".join(lines)


def write_localization_outputs(result: "LocalizationResult", out_dir: str | Path) -> dict[str, Path]:
    """Write the layer map, chart, report and JSON summary; returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {kind: out / name for kind, name in OUTPUT_FILES.items()}
    result.layer_map.save(files["layer_map"])
    save_figure(single_layer_figure(result), files["chart"])
    files["report"].write_text(localization_report(result), encoding="utf-8")
    files["summary"].write_text(json.dumps(result.summary(), indent=2) + "\n", encoding="utf-8")
    return files
