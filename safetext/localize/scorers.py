"""Scorers of a localization sweep: did the patched image move toward the target, and how much changed?

A scorer gets a batch of patched images and the :class:`SweepReferences` of the same pairs (the
prompts, and the unpatched source and target images generated with the same seeds) and returns one
:class:`~safetext.localize.records.PairScore` per image. Scores live in a documented range:
``movement`` in [0, 1] (0 = source, 1 = target), ``similarity`` = SSIM to the unpatched source image.

* :class:`OcrMovementScorer` (default): reads each image with OCR and compares the text with both
  words, as the paper does: ``movement = (F1_target - F1_source + 1) / 2`` with character F1 on the
  texts lower-cased and stripped of punctuation and spaces, ``flipped`` = the OCR text equals the
  target word (case, punctuation and spaces ignored).
* :class:`ImageDistanceScorer`: no OCR; ``movement`` = how much closer (MSE) the patched image is to
  the unpatched *target* image than to the unpatched source image. For models whose text no OCR can
  read (random-weight test models) and for a quick look at a new model before OCR settings are tuned.

A new scorer subclasses :class:`PatchScorer`, sets ``name`` and implements :meth:`PatchScorer.score`.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from safetext.localize.records import LocalizationError, PairScore, PromptPair
from safetext.scoring import exact_match, mse, ocr_f1, ssim
from safetext.scoring.text import normalize_for_match


@dataclass(frozen=True)
class SweepReferences:
    """The pairs of a batch with their unpatched images (same seeds as the patched ones).

    Attributes:
        pairs: the prompt pairs, one per image.
        source_images: unpatched source-prompt images, float CHW tensors in [0, 1].
        target_images: unpatched target-prompt images, float CHW tensors in [0, 1].
    """

    pairs: tuple[PromptPair, ...]
    source_images: tuple[torch.Tensor, ...]
    target_images: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        sizes = {len(self.pairs), len(self.source_images), len(self.target_images)}
        if len(sizes) != 1:
            raise LocalizationError(
                f"references need one source and one target image per pair, got {len(self.pairs)} pairs, "
                f"{len(self.source_images)} source and {len(self.target_images)} target images"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, positions: Sequence[int]) -> "SweepReferences":
        """The references of the pairs at ``positions`` (in that order)."""
        return SweepReferences(
            tuple(self.pairs[i] for i in positions),
            tuple(self.source_images[i] for i in positions),
            tuple(self.target_images[i] for i in positions),
        )


def images_to_tensors(images: Any) -> list[torch.Tensor]:
    """Pipeline output images (``output_type="np"``: NHWC float, or ``"pt"``: NCHW) as float CHW tensors."""
    if isinstance(images, np.ndarray):
        return [torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() for image in images]
    if torch.is_tensor(images):
        return [image.detach().float().cpu() for image in images]
    raise LocalizationError(
        f"expected the pipeline to return numpy or torch images, got {type(images).__name__}; "
        "localization calls pipelines with output_type='np'"
    )


class PatchScorer(abc.ABC):
    """Base class of sweep scorers (reference implementation: :class:`OcrMovementScorer`).

    Attributes:
        name: short identifier stored in checkpoints and reports (a resumed sweep must use the same).
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def score(self, images: Sequence[torch.Tensor], references: SweepReferences) -> list[PairScore]:
        """One :class:`PairScore` per image; ``images[i]`` was generated for ``references.pairs[i]``."""

    def describe(self) -> dict[str, Any]:
        """Settings that change scores (part of the checkpoint fingerprint)."""
        return {"name": self.name}

    def for_pipeline(self, pipe: Any) -> "PatchScorer":
        """The scorer to use on ``pipe``'s images (default: this one; OCR reads a declared text region)."""
        return self

    def _check(self, images: Sequence[torch.Tensor], references: SweepReferences) -> None:
        if len(images) != len(references):
            raise LocalizationError(f"{self.name}: got {len(images)} images for {len(references)} pairs")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class OcrMovementScorer(PatchScorer):
    """OCR each image; movement from OCR F1 to the source and target texts; SSIM to the unpatched source.

    Args:
        ocr: an :class:`~safetext.scoring.OcrBackend`, or a backend name for
            :func:`safetext.scoring.get_ocr` (default ``"rapidocr"``, recognition on the whole image:
            ``mode="crop"``, right for images that hold one word).
        **ocr_options: options for :func:`~safetext.scoring.get_ocr` when ``ocr`` is a name.

    Example:
        >>> scorer = OcrMovementScorer()                      # doctest: +SKIP
        >>> scorer.score(patched_images, references)[0]       # doctest: +SKIP
        PairScore(movement=1.0, flipped=True, similarity=0.93, text='DOG', target_f1=1.0, source_f1=0.0)
    """

    name: ClassVar[str] = "ocr"

    def __init__(self, ocr: Any = "rapidocr", **ocr_options: Any) -> None:
        self._ocr_name = ocr if isinstance(ocr, str) else type(ocr).__name__
        self._ocr_options = {"mode": "crop", **ocr_options} if isinstance(ocr, str) else {}
        self._backend = None if isinstance(ocr, str) else ocr
        self._region: Any = None
        self._cropped: Any = None

    @property
    def backend(self) -> Any:
        """The OCR backend, created on first use (cropped to the text region when one is bound)."""
        if self._backend is None:
            from safetext.scoring import get_ocr

            self._backend = get_ocr(self._ocr_name, **self._ocr_options)
        if self._region is not None:
            from safetext.scoring import RegionOcr

            if not isinstance(self._cropped, RegionOcr) or self._cropped.backend is not self._backend:
                self._cropped = RegionOcr(self._backend, self._region)
            return self._cropped
        return self._backend

    def for_pipeline(self, pipe: Any) -> "OcrMovementScorer":
        """This scorer reading only where ``pipe`` declares its text (a copy; ``self`` is unchanged)."""
        from safetext.scoring import text_region

        region = text_region(pipe)
        if region is None:
            return self
        bound = copy.copy(self)
        bound._region = region
        return bound

    def describe(self) -> dict[str, Any]:
        described = {"name": self.name, "ocr": self._ocr_name, "options": dict(sorted(self._ocr_options.items()))}
        if self._region is not None:
            described["text_region"] = True
        return described

    def read(self, images: Sequence[torch.Tensor]) -> list[str]:
        """OCR text of each image."""
        return [result.text for result in self.backend.read_many(list(images))]

    def score(self, images: Sequence[torch.Tensor], references: SweepReferences) -> list[PairScore]:
        self._check(images, references)
        if not images:
            return []
        texts = self.read(images)
        similarities = ssim(list(images), list(references.source_images))
        scores = []
        for text, similarity, pair in zip(texts, similarities, references.pairs):
            read = normalize_for_match(text)
            to_target = ocr_f1(read, normalize_for_match(pair.target_text)).f1
            to_source = ocr_f1(read, normalize_for_match(pair.source_text)).f1
            scores.append(
                PairScore(
                    movement=min(1.0, max(0.0, (to_target - to_source + 1.0) / 2.0)),
                    flipped=exact_match(text, pair.target_text),
                    similarity=float(similarity),
                    text=text,
                    target_f1=to_target,
                    source_f1=to_source,
                )
            )
        return scores

    def __repr__(self) -> str:
        return f"OcrMovementScorer(ocr={self._ocr_name!r})"


class ImageDistanceScorer(PatchScorer):
    """Movement measured in pixels: ``d_source / (d_source + d_target)`` with MSE distances.

    ``d_source`` is the MSE of the patched image to the unpatched source image, ``d_target`` to the
    unpatched target image (same seed). 0 = identical to the source image, 1 = identical to the target
    image; when both unpatched images are equal, movement is 0. ``flipped`` = closer to the target image
    than to the source image (movement > 0.5). Needs no OCR, so it works on random-weight models.
    """

    name: ClassVar[str] = "image-distance"

    def score(self, images: Sequence[torch.Tensor], references: SweepReferences) -> list[PairScore]:
        self._check(images, references)
        if not images:
            return []
        to_source = mse(list(images), list(references.source_images))
        to_target = mse(list(images), list(references.target_images))
        similarities = ssim(list(images), list(references.source_images))
        scores = []
        for d_source, d_target, similarity in zip(to_source, to_target, similarities):
            total = d_source + d_target
            movement = 0.0 if total == 0.0 else min(1.0, max(0.0, d_source / total))
            scores.append(PairScore(movement=movement, flipped=movement > 0.5, similarity=float(similarity)))
        return scores


SCORERS: dict[str, type[PatchScorer]] = {
    OcrMovementScorer.name: OcrMovementScorer,
    ImageDistanceScorer.name: ImageDistanceScorer,
}


def get_scorer(scorer: PatchScorer | str | None) -> PatchScorer:
    """A scorer instance from an instance, a name (``"ocr"``, ``"image-distance"``) or ``None`` (OCR).

    Raises:
        LocalizationError: an unknown name.
    """
    if scorer is None:
        return OcrMovementScorer()
    if isinstance(scorer, PatchScorer):
        return scorer
    if isinstance(scorer, str) and scorer in SCORERS:
        return SCORERS[scorer]()
    raise LocalizationError(f"unknown scorer {scorer!r}; pass a PatchScorer or one of {', '.join(SCORERS)}")
