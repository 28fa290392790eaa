"""``verify_layer_map``: does a shipped layer map still move the written text on this model?

After merging a LoRA or fine-tuning a checkpoint, the text may have moved to other layers. The check
re-runs the map's patch (its layers, from its start fraction) on prompt pairs and fails when the flip
rate to the target text falls below ``min_flip`` (and, optionally, when SSIM to the unpatched image
falls below ``min_similarity``)::

    $ safetext localize --verify safetext/patching/presets/glyph.yaml   # exit status 1 on failure

    >>> result = verify_layer_map(pipe, "glyph.yaml", min_flip=0.8)
    >>> result.passed, result.score.flip_rate
    (True, 0.94)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetext.errors import LayerMapError
from safetext.localize.pairs import default_prompt_pairs
from safetext.localize.records import CandidateScore, LocalizationError, PatchCandidate, PromptPair
from safetext.localize.scorers import PatchScorer
from safetext.localize.shards import SingleProcess
from safetext.localize.sweep import PatchSweep
from safetext.patching.layer_map import LayerMap
from safetext.patching.resolve import resolve_layer_map

#: Seed of the default verification pairs (localization's default pairs use seed 0).
VERIFY_PAIR_SEED = 1


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verify_layer_map`.

    Attributes:
        passed: the map still moves the text (every threshold met).
        layer_map: the map checked.
        score: the map's scores over the pairs.
        source: scores of the unpatched source images (what the flip rate would be without the patch).
        min_flip: the flip-rate threshold.
        min_similarity: the SSIM threshold (``None``: not checked).
        failures: one line per threshold missed.
        notes: warnings from resolving the map (e.g. it was made for another model configuration).
    """

    passed: bool
    layer_map: LayerMap
    score: CandidateScore
    source: CandidateScore
    min_flip: float
    min_similarity: float | None
    failures: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "layer_map": self.layer_map.name,
            "layers": list(self.layer_map.layers),
            "start_fraction": self.layer_map.start_fraction,
            "score": self.score.summary(),
            "unpatched": self.source.summary(),
            "min_flip": self.min_flip,
            "min_similarity": self.min_similarity,
            "failures": list(self.failures),
            "notes": list(self.notes),
        }


def verify_layer_map(
    pipe: Any,
    layer_map: LayerMap | str | Path,
    pairs: Sequence[PromptPair] | None = None,
    *,
    pair_count: int = 16,
    scorer: PatchScorer | str | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
    min_flip: float = 0.5,
    min_similarity: float | None = None,
    raise_on_failure: bool = False,
    progress: bool = False,
) -> VerificationResult:
    """Re-score a layer map on ``pipe`` and report whether it still flips the written text.

    Args:
        pipe: the pipeline to check (e.g. after loading a LoRA).
        layer_map: a :class:`~safetext.patching.LayerMap`, a map file, or a shipped preset name.
        pairs: prompt pairs (default: ``pair_count`` pairs with seed 1, unlike localization's seed 0).
        pair_count: number of default pairs.
        scorer: scorer instance or name (default: OCR).
        call_kwargs: pipeline settings (``num_inference_steps``, ...).
        min_flip: lowest acceptable share of images that read as the target text.
        min_similarity: lowest acceptable mean SSIM to the unpatched images (``None``: not checked).
        raise_on_failure: raise :class:`~safetext.errors.LayerMapError` instead of returning a failed result.
        progress: show a progress bar.

    Raises:
        LayerMapError: the map names layers the model lacks; or it failed and ``raise_on_failure``.
        LocalizationError: a threshold outside [0, 1].
    """
    for label, value in (("min_flip", min_flip), ("min_similarity", min_similarity)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise LocalizationError(f"{label} must be in [0, 1], got {value!r}")
    resolved = resolve_layer_map(pipe, layer_map)
    chosen = resolved.layer_map
    pairs = tuple(pairs) if pairs is not None else tuple(default_prompt_pairs(pipe, pair_count, seed=VERIFY_PAIR_SEED))
    sweep = PatchSweep(pipe, pairs, scorer, call_kwargs=call_kwargs, process_group=SingleProcess(), progress=progress)
    candidate = PatchCandidate(tuple(layer.index for layer in resolved.layers), chosen.start_fraction)
    source, _ = sweep.reference_scores()
    score = sweep.evaluate([candidate], desc="verify")[candidate]
    failures = []
    if score.flip_rate < min_flip:
        failures.append(
            f"flip rate {score.flip_rate:.2f} < {min_flip:.2f}: the map no longer moves the written text "
            f"(unpatched: {source.flip_rate:.2f}); re-run `safetext localize` on this model"
        )
    if min_similarity is not None and score.similarity < min_similarity:
        failures.append(f"SSIM {score.similarity:.3f} < {min_similarity:.3f}: the patch changes too much of the image")
    result = VerificationResult(
        not failures, chosen, score, source, min_flip, min_similarity, tuple(failures), tuple(resolved.notes)
    )
    if failures and raise_on_failure:
        raise LayerMapError(f"layer map {chosen.name!r} failed verification: " + "; ".join(failures))
    return result
