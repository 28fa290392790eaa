"""Closed-loop verification: read the generated images back and check what is actually written.

A prompt scan says what was *asked for*; this module says what the image *shows*. Each image is read
by OCR and the text is scanned with the same policy (all of it counts as rendered text). The generator
uses :class:`ImageVerifier` after a generation and escalates while toxic text is still visible (see
``VerificationConfig`` in the policy schema): patch from step 0, then every text-attention layer, then
refuse — each step recorded in ``verdict.details["escalations"]``, never a flagged image returned silently.

    >>> verifier = ImageVerifier.from_policy(policy)          # None when the policy disables verification
    >>> report = verifier.check(output.images)
    >>> report.toxic, report.texts
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safetext.errors import PolicyError


@dataclass(frozen=True)
class ImageCheck:
    """OCR result of one image: the text read (hashed for logs), and whether the policy flags it."""

    index: int
    text: str
    toxic: bool
    categories: tuple[str, ...] = ()

    def as_details(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16] if self.text else ""
        return {"index": self.index, "toxic": self.toxic, "categories": list(self.categories), "text_sha256": digest}


@dataclass(frozen=True)
class VerificationReport:
    """The check of one generation's images."""

    checks: tuple[ImageCheck, ...]

    @property
    def toxic(self) -> bool:
        return any(check.toxic for check in self.checks)

    @property
    def toxic_images(self) -> tuple[int, ...]:
        return tuple(check.index for check in self.checks if check.toxic)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(check.text for check in self.checks)


def output_images(output: Any) -> list[Any]:
    """The images of a pipeline output as a list OCR accepts (PIL, HWC arrays, CHW tensors in [0, 1]).

    Raises:
        PolicyError: latent outputs, which cannot be read (ask for ``output_type="pil"``, ``"np"`` or ``"pt"``).
    """
    images = output.images if hasattr(output, "images") else output[0]
    if isinstance(images, list):
        return images
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) == 4 and (shape[-1] in (1, 3) or shape[1] in (1, 3)):
        return [images[i] for i in range(shape[0])]
    raise PolicyError(
        f"cannot verify images of shape {shape}: the policy enables OCR verification, which needs decoded images; "
        "call with output_type='pil', 'np' or 'pt' (not 'latent'), or disable verification in the policy"
    )


class ImageVerifier:
    """OCR + policy scan of generated images.

    Args:
        policy: the policy whose rules judge the text read (the same policy that scanned the prompt).
        ocr: an OCR backend (``safetext.scoring.get_ocr(...)``) — anything with ``read(image).text``.
        escalation: the steps to try in order while toxic text is visible.
        check_allowed: also check images of prompts the scan allowed.
    """

    def __init__(self, policy: Any, ocr: Any, escalation: Sequence[str] = ("earlier_start", "all_layers", "block"), check_allowed: bool = True):
        from safetext.scoring.toxicity import ToxicityScorer

        self.scorer = ToxicityScorer(policy)
        self.ocr = ocr
        self.escalation = tuple(escalation)
        self.check_allowed = bool(check_allowed)

    @classmethod
    def from_policy(cls, policy: Any) -> "ImageVerifier | None":
        """The verifier a policy asks for, or None when its ``verification`` is absent or disabled."""
        config = getattr(getattr(policy, "config", None), "verification", None)
        if config is None or not config.enabled:
            return None
        from safetext.scoring import get_ocr

        return cls(policy, get_ocr(config.ocr, **dict(config.ocr_options)), config.escalation, config.check_allowed)

    def check(self, images: Sequence[Any], pipe: Any = None) -> VerificationReport:
        """OCR and scan each image; with ``pipe``, read only where it declares its text (see ``text_region``)."""
        ocr = self.ocr
        if pipe is not None:
            from safetext.scoring import ocr_for_pipeline

            ocr = ocr_for_pipeline(ocr, pipe)
        checks = []
        for index, image in enumerate(images):
            text = ocr.read(image).text.strip()
            verdict = self.scorer.scan(text) if text else None
            toxic = verdict is not None and verdict.flagged
            categories = tuple(sorted({f.category for f in verdict.findings})) if toxic else ()
            checks.append(ImageCheck(index, text, toxic, categories))
        return VerificationReport(tuple(checks))

    def __repr__(self) -> str:
        return f"ImageVerifier(ocr={type(self.ocr).__name__}, escalation={list(self.escalation)})"
