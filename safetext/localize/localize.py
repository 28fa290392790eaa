"""``localize_layers``: find the few text-attention layers that decide what text a model writes.

    >>> from safetext.localize import localize_layers
    >>> result = localize_layers(pipe, pair_count=32, call_kwargs={"num_inference_steps": 20}, out_dir="loc/")
    >>> result.layer_map.layers, result.layer_map.start_fraction
    (('mid_block.attentions.0.transformer_blocks.0.attn2',), 0.1)

Runs the paper's procedure on a :class:`~safetext.localize.sweep.PatchSweep`: the single-layer sweep,
greedy growth within a layer budget, then the start-fraction search (:mod:`safetext.localize.search`).
With ``out_dir`` it checkpoints every candidate under ``out_dir/checkpoint`` (``resume=True`` continues
an interrupted run and reaches the same map) and writes ``layer_map.yaml``, ``report.md``,
``per_layer.png`` and ``localization.json`` (:mod:`safetext.localize.report`). Under an accelerate
launch with several processes the prompt pairs are split between the processes and only the main
process writes the outputs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetext.localize.pairs import default_prompt_pairs
from safetext.localize.records import CandidateScore, PromptPair
from safetext.localize.scorers import PatchScorer
from safetext.localize.search import (
    DEFAULT_START_FRACTIONS,
    GrowthResult,
    StartSearchResult,
    grow_layer_set,
    search_start_fraction,
    sweep_single_layers,
)
from safetext.localize.shards import ProcessGroup
from safetext.localize.sweep import PatchSweep, ResultCallback
from safetext.patching.adapters.base import TextAttentionLayer
from safetext.patching.layer_map import LayerMap
from safetext.patching.layers import find_denoiser, is_lora_wrapped, resolve_adapter, select_layers

logger = logging.getLogger("safetext.localize")

#: Default number of prompt pairs (the paper used 100 on SDXL; a small model needs fewer).
DEFAULT_PAIR_COUNT = 32


@dataclass(frozen=True)
class ParameterShare:
    """How many parameters a layer set patches, against the denoiser and all text K/V projections.

    Attributes:
        layers: layers in the set.
        text_layers: text-attention layers of the model.
        kv_parameters: parameters of the set's text K/V projections (weights and biases).
        text_kv_parameters: parameters of every text-attention layer's K/V projections.
        denoiser_parameters: all parameters of the denoiser.
    """

    layers: int
    text_layers: int
    kv_parameters: int
    text_kv_parameters: int
    denoiser_parameters: int

    @property
    def share_of_text_layers(self) -> float:
        return self.layers / self.text_layers

    @property
    def share_of_denoiser(self) -> float:
        return self.kv_parameters / self.denoiser_parameters

    @property
    def share_of_text_kv(self) -> float:
        return self.kv_parameters / self.text_kv_parameters

    def to_dict(self) -> dict[str, float]:
        return {
            "layers": self.layers,
            "text_layers": self.text_layers,
            "kv_parameters": self.kv_parameters,
            "text_kv_parameters": self.text_kv_parameters,
            "denoiser_parameters": self.denoiser_parameters,
            "share_of_text_layers": self.share_of_text_layers,
            "share_of_denoiser": self.share_of_denoiser,
            "share_of_text_kv": self.share_of_text_kv,
        }


def _projection_parameters(module: Any) -> int:
    base = module.base_layer if is_lora_wrapped(module) else module
    return sum(parameter.numel() for parameter in base.parameters())


def parameter_share(pipe: Any, layers: Sequence[str | int]) -> ParameterShare:
    """Count the K/V projection parameters of ``layers`` against the denoiser and all text layers.

    Args:
        pipe: a pipeline or its denoiser.
        layers: attention-module names or forward-order indices.
    """
    denoiser, adapter = resolve_adapter(pipe)
    available = tuple(adapter.discover(denoiser))
    chosen = select_layers(available, list(layers))

    def kv(items: Sequence[TextAttentionLayer]) -> int:
        return sum(_projection_parameters(denoiser.get_submodule(name)) for layer in items for name in (layer.key, layer.value))

    total = sum(parameter.numel() for name, parameter in find_denoiser(pipe).named_parameters() if "lora_" not in name)
    return ParameterShare(len(chosen), len(available), kv(chosen), kv(available), total)


@dataclass(frozen=True)
class LocalizationResult:
    """Everything a localization found and measured.

    Attributes:
        layer_map: the chosen layers and start fraction, ready to save and ship.
        layers: the model's text-attention layers (forward order).
        single_layers: each layer alone, from step 0 (forward order).
        growth: the greedy growth rounds.
        start: the start-fraction search of the chosen set.
        source: scores of the unpatched source images (where movement starts).
        target: scores of the unpatched target images (what the model writes for the target prompt).
        parameters: parameter share of the chosen set.
        pairs: the prompt pairs.
        scorer: the scorer's settings.
        call_kwargs: the pipeline settings.
        seconds: wall time of the localization.
        pipeline_calls: pipeline calls made by this process (0 for candidates read from a checkpoint).
        files: output files written (empty without ``out_dir`` and on non-main processes).
    """

    layer_map: LayerMap
    layers: tuple[TextAttentionLayer, ...]
    single_layers: tuple[CandidateScore, ...]
    growth: GrowthResult
    start: StartSearchResult
    source: CandidateScore
    target: CandidateScore
    parameters: ParameterShare
    pairs: tuple[PromptPair, ...]
    scorer: dict[str, Any]
    call_kwargs: dict[str, Any]
    seconds: float
    pipeline_calls: int
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def chosen(self) -> CandidateScore:
        """The chosen set at the chosen start fraction."""
        return self.start.score

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (averages only; per-pair OCR texts are in the checkpoint)."""
        return {
            "layer_map": self.layer_map.to_dict(),
            "chosen": self.chosen.summary(),
            "converged": self.growth.converged,
            "stop_reason": self.growth.stop_reason,
            "budget": self.growth.budget,
            "parameters": self.parameters.to_dict(),
            "source": self.source.summary(),
            "target": self.target.summary(),
            "single_layers": [
                {**score.summary(), "name": layer.name, "block": layer.block}
                for layer, score in zip(self.layers, self.single_layers)
            ],
            "growth": [
                {**step.score.summary(), "added": step.added, "gain": step.gain,
                 "similarity_loss": step.similarity_loss, "efficiency": step.efficiency}
                for step in self.growth.steps
            ],
            "start_fractions": [score.summary() for score in self.start.scores],
            "pairs": len(self.pairs),
            "scorer": self.scorer,
            "call_kwargs": {key: repr(value) if not isinstance(value, (int, float, str, bool)) else value
                            for key, value in self.call_kwargs.items()},
            "seconds": self.seconds,
            "pipeline_calls": self.pipeline_calls,
        }


def localize_layers(
    pipe: Any,
    pairs: Sequence[PromptPair] | None = None,
    *,
    pair_count: int = DEFAULT_PAIR_COUNT,
    scorer: PatchScorer | str | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
    budget: int | None = None,
    min_gain: float = 0.02,
    similarity_floor: float = 0.1,
    fractions: Sequence[float] = DEFAULT_START_FRACTIONS,
    tolerance: float = 0.05,
    out_dir: str | Path | None = None,
    resume: bool = False,
    name: str | None = None,
    process_group: ProcessGroup | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    on_result: ResultCallback | None = None,
) -> LocalizationResult:
    """Localize the text layers of a pipeline and build its :class:`~safetext.patching.LayerMap`.

    Args:
        pipe: a diffusers text-to-image pipeline safetext can patch.
        pairs: prompt pairs (default: ``pair_count`` pairs from :func:`~safetext.localize.default_prompt_pairs`).
        pair_count: number of default pairs.
        scorer: scorer instance or name (default: OCR movement, :class:`~safetext.localize.OcrMovementScorer`).
        call_kwargs: pipeline settings (``num_inference_steps``, ``guidance_scale``, ...).
        budget: most layers in the set (default: 25% of the text-attention layers, at least 1).
        min_gain: growth stops when no layer adds this much movement.
        similarity_floor: smallest similarity loss a growth efficiency is divided by.
        fractions: start fractions to try for the chosen set.
        tolerance: how far the flip rate / movement may fall for a later start.
        out_dir: write the layer map, report and checkpoints here (``None``: nothing is written).
        resume: continue the checkpoint in ``out_dir/checkpoint``.
        name: the layer map's name (default: ``"<family>-localized"``).
        process_group: accelerate ``PartialState`` or compatible (default: from the launch environment).
        batch_size: pairs per pipeline call (default: all pairs of a process).
        progress: show progress bars.
        on_result: callback after each newly scored candidate (see :class:`PatchSweep`).

    Returns:
        :class:`LocalizationResult`.

    Raises:
        LocalizationError: invalid inputs or a checkpoint conflict (see :class:`PatchSweep`).
        UnsupportedArchitectureError: a pipeline safetext cannot patch.
    """
    started = time.perf_counter()
    pairs = tuple(pairs) if pairs is not None else tuple(default_prompt_pairs(pipe, pair_count))
    out = Path(out_dir) if out_dir is not None else None
    sweep = PatchSweep(
        pipe,
        pairs,
        scorer,
        call_kwargs=call_kwargs,
        workdir=out / "checkpoint" if out is not None else None,
        resume=resume,
        process_group=process_group,
        batch_size=batch_size,
        progress=progress,
        on_result=on_result,
    )
    source, target = sweep.reference_scores()
    singles = sweep_single_layers(sweep)
    growth = grow_layer_set(sweep, budget=budget, min_gain=min_gain, similarity_floor=similarity_floor)
    start = search_start_fraction(sweep, growth.layers, fractions=fractions, tolerance=tolerance)
    chosen = start.score
    share = parameter_share(pipe, list(growth.layers))
    family = resolve_adapter(pipe)[1].family
    layer_map = LayerMap.for_model(
        pipe,
        list(growth.layers),
        start.start_fraction,
        name=name or f"{family}-localized",
        notes=_notes(growth, len(pairs), sweep.scorer.name, sweep.call_kwargs),
        metrics={
            "flip_rate": chosen.flip_rate,
            "movement": chosen.movement,
            "ssim": chosen.similarity,
            "share_of_text_layers": share.share_of_text_layers,
            "share_of_denoiser_parameters": share.share_of_denoiser,
            "pairs": float(len(pairs)),
        },
    )
    # the other layers, most influential first (movement toward the target, then change to the image):
    # the verification escalation 'next_layers' adds them in this order
    ranked = sorted(zip(sweep.layers, singles.values()), key=lambda pair: (-pair[1].movement, pair[1].similarity))
    ranking = tuple(layer.name for layer, _ in ranked if layer.name not in layer_map.layers)
    layer_map = layer_map.model_copy(update={"ranking": ranking or None})
    result = LocalizationResult(
        layer_map=layer_map,
        layers=sweep.layers,
        single_layers=tuple(singles.values()),
        growth=growth,
        start=start,
        source=source,
        target=target,
        parameters=share,
        pairs=pairs,
        scorer=sweep.scorer.describe(),
        call_kwargs=dict(sweep.call_kwargs),
        seconds=time.perf_counter() - started,
        pipeline_calls=sweep.pipeline_calls,
    )
    logger.info(
        "localized %s: layers %s from %.2f, flip rate %.2f, SSIM %.3f (%d pairs, %.0f s)",
        layer_map.name, list(growth.layers), start.start_fraction, chosen.flip_rate, chosen.similarity,
        len(pairs), result.seconds,
    )
    if out is not None and sweep.group.is_main_process:
        from safetext.localize.report import write_localization_outputs

        result = dataclasses.replace(result, files=write_localization_outputs(result, out))
    return result


def _notes(growth: GrowthResult, pairs: int, scorer: str, call_kwargs: Mapping[str, Any]) -> str:
    settings = ", ".join(f"{key}={value}" for key, value in sorted(call_kwargs.items())) or "pipeline defaults"
    note = f"safetext localize: {pairs} prompt pairs, scorer {scorer}, {settings}; growth stopped: {growth.stop_reason}"
    if not growth.converged:
        note += "; WARNING: no layer moved the text by min_gain, this map holds the best single layer only"
    return note
