"""The records a localization sweep passes around: prompt pairs, candidates and their scores.

A sweep generates the *source* prompt of every :class:`PromptPair` with the text keys/values of a
:class:`PatchCandidate`'s layers taken from the *target* prompt (same seed), and scores every image
into a :class:`PairScore`. The per-pair scores of one candidate average into a
:class:`CandidateScore`, which is what the search compares. All records are frozen and JSON
round-trip (:meth:`PairScore.to_dict` / :meth:`PairScore.from_dict`), because checkpoints and the
per-process shard files store them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safetext.errors import SafetextError


class LocalizationError(SafetextError, ValueError):
    """A localization input is invalid (pairs, budget, fractions, checkpoint), or a sweep found nothing."""


@dataclass(frozen=True)
class PromptPair:
    """One source/target prompt pair of a sweep.

    Attributes:
        source_prompt: the prompt that is generated (e.g. ``'A sign that says "cat".'``).
        target_prompt: the prompt whose text K/V are swapped in (e.g. ``'A sign that says "dog".'``).
        source_text: the text the source prompt asks to write (``"cat"``).
        target_text: the text the target prompt asks to write (``"dog"``).
        seed: seed of the initial noise; the source, target and patched images all use it.
    """

    source_prompt: str
    target_prompt: str
    source_text: str
    target_text: str
    seed: int

    def __post_init__(self) -> None:
        for name in ("source_prompt", "target_prompt", "source_text", "target_text"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise LocalizationError(f"PromptPair.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise LocalizationError(f"PromptPair.seed must be an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_prompt": self.source_prompt,
            "target_prompt": self.target_prompt,
            "source_text": self.source_text,
            "target_text": self.target_text,
            "seed": self.seed,
        }


@dataclass(frozen=True, order=True)
class PatchCandidate:
    """A set of text-attention layers (forward-order indices) patched from ``start_fraction`` on.

    Attributes:
        layers: sorted, distinct layer indices (at least one).
        start_fraction: first patched step as a fraction of the schedule, in [0, 1].
    """

    layers: tuple[int, ...]
    start_fraction: float = 0.0

    def __post_init__(self) -> None:
        layers = tuple(sorted(set(int(index) for index in self.layers)))
        if not layers:
            raise LocalizationError("a patch candidate needs at least one layer index")
        if any(index < 0 for index in layers):
            raise LocalizationError(f"layer indices must be >= 0, got {list(self.layers)}")
        if not 0.0 <= float(self.start_fraction) <= 1.0:
            raise LocalizationError(f"start_fraction must be in [0, 1], got {self.start_fraction!r}")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "start_fraction", float(self.start_fraction))

    @property
    def key(self) -> str:
        """Stable text key used in checkpoints: ``"2+5@0.25"``."""
        return "+".join(str(index) for index in self.layers) + f"@{self.start_fraction:g}"

    def with_layer(self, index: int) -> "PatchCandidate":
        """This candidate with one more layer."""
        return PatchCandidate(self.layers + (index,), self.start_fraction)

    def starting_at(self, start_fraction: float) -> "PatchCandidate":
        """The same layers from another start fraction."""
        return PatchCandidate(self.layers, start_fraction)


@dataclass(frozen=True)
class PairScore:
    """How one patched image scored against its pair.

    Attributes:
        movement: in [0, 1]; 0 = the image shows the source text (or looks like the unpatched source
            image), 1 = it shows the target text. For OCR scoring, ``(F1_target - F1_source + 1) / 2``.
        flipped: the image reads as the target text (OCR exact match after normalization).
        similarity: SSIM of the image to the unpatched source image (1 = unchanged).
        text: what OCR read ("" for scorers that do not read).
        target_f1: character F1 of the OCR text against the target text (``None`` without OCR).
        source_f1: character F1 of the OCR text against the source text (``None`` without OCR).
    """

    movement: float
    flipped: bool
    similarity: float
    text: str = ""
    target_f1: float | None = None
    source_f1: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.movement <= 1.0 or math.isnan(self.movement):
            raise LocalizationError(f"PairScore.movement must be in [0, 1], got {self.movement!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "movement": self.movement,
            "flipped": self.flipped,
            "similarity": self.similarity,
            "text": self.text,
            "target_f1": self.target_f1,
            "source_f1": self.source_f1,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PairScore":
        return cls(
            movement=float(data["movement"]),
            flipped=bool(data["flipped"]),
            similarity=float(data["similarity"]),
            text=str(data.get("text", "")),
            target_f1=None if data.get("target_f1") is None else float(data["target_f1"]),
            source_f1=None if data.get("source_f1") is None else float(data["source_f1"]),
        )


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


@dataclass(frozen=True)
class CandidateScore:
    """A candidate's scores averaged over every prompt pair of the sweep.

    Attributes:
        candidate: the candidate (``None`` for the unpatched reference images).
        label: ``candidate.key``, or ``"source"`` / ``"target"`` for the unpatched references.
        movement: mean :attr:`PairScore.movement`.
        flip_rate: share of pairs whose image reads as the target text.
        similarity: mean SSIM to the unpatched source image.
        target_f1: mean OCR F1 to the target text (``None`` when the scorer does not read text).
        per_pair: the pair scores, in pair order.
    """

    candidate: PatchCandidate | None
    label: str
    movement: float
    flip_rate: float
    similarity: float
    target_f1: float | None
    per_pair: tuple[PairScore, ...]

    @classmethod
    def of(cls, candidate: PatchCandidate | None, scores: Sequence[PairScore], label: str | None = None) -> "CandidateScore":
        """Average ``scores`` (at least one) into a candidate score."""
        if not scores:
            raise LocalizationError("cannot average an empty list of pair scores")
        f1s = [score.target_f1 for score in scores]
        return cls(
            candidate=candidate,
            label=label if label is not None else (candidate.key if candidate is not None else "reference"),
            movement=_mean([score.movement for score in scores]),
            flip_rate=_mean([1.0 if score.flipped else 0.0 for score in scores]),
            similarity=_mean([score.similarity for score in scores]),
            target_f1=None if any(value is None for value in f1s) else _mean([float(v) for v in f1s]),
            per_pair=tuple(scores),
        )

    @property
    def pairs(self) -> int:
        return len(self.per_pair)

    def summary(self) -> dict[str, Any]:
        """JSON-ready averages (no per-pair detail)."""
        return {
            "label": self.label,
            "layers": list(self.candidate.layers) if self.candidate is not None else [],
            "start_fraction": self.candidate.start_fraction if self.candidate is not None else None,
            "movement": self.movement,
            "flip_rate": self.flip_rate,
            "similarity": self.similarity,
            "target_f1": self.target_f1,
            "pairs": self.pairs,
        }
