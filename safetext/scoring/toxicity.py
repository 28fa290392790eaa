"""Toxicity of text read from an image, judged by the same policy engine that guards prompts.

A benchmark OCRs each generated image and asks: would the policy object to this text if a prompt
asked for it to be written? :func:`toxicity_of_text` returns the highest finding score of the
verdict (0.0 when nothing is found) and :func:`is_toxic` whether the verdict's action is
``neutralize`` or ``block``.

OCR text has no quotes or "that says" triggers, yet every word of it *was* written into the
image. It is therefore scanned with the policy's rendered-text extraction switched off
(``rendered_text.enabled: false``), under which every finding counts as rendered text and gets
the rule's ``action`` rather than its ``outside_rendered`` action (which is often just ``log``).

Loading a policy reads its word lists, so for many texts build one :class:`ToxicityScorer` (or
pass one as ``policy``); a path or ``None`` (the shipped default policy) is loaded on every call.
The policy engine is imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from safetext.policy.verdict import Verdict

__all__ = ["ToxicityScorer", "is_toxic", "rendered_text_policy", "scan_text", "toxicity_of_text"]


def rendered_text_policy(policy: Any) -> Any:
    """Return ``policy`` with rendered-text extraction off, so all scanned text counts as rendered.

    Args:
        policy: A loaded ``safetext.policy.Policy``. Other objects with a ``scan`` method are
            returned unchanged (they decide for themselves).

    Returns:
        ``policy`` itself when extraction is already off, else an equivalent new ``Policy``.
    """
    config = getattr(policy, "config", None)
    rendered = getattr(config, "rendered_text", None)
    if rendered is None or not rendered.enabled:
        return policy
    changed = config.model_copy(update={"rendered_text": rendered.model_copy(update={"enabled": False})})
    return type(policy)(changed, base_dir=policy.base_dir, source=policy.source)


def _load(policy: Any) -> Any:
    if callable(getattr(policy, "scan", None)):
        return policy
    from safetext.policy import PolicyConfig, load_policy

    if policy is None or isinstance(policy, (str, os.PathLike, Mapping, PolicyConfig)):
        return load_policy(policy)
    raise TypeError(
        f"policy has type {type(policy).__name__}; pass a Policy from safetext.policy.load_policy, a "
        "policy name or file path, a ToxicityScorer, or None for the default policy"
    )


class ToxicityScorer:
    """Scores OCR text with one policy, prepared once.

    Args:
        policy: Anything ``safetext.policy.load_policy`` accepts (a ``Policy``, a shipped policy
            name, a YAML path, a mapping, a ``PolicyConfig``, or ``None`` for the default policy),
            another ``ToxicityScorer``, or any object with ``scan(text) -> Verdict``.

    Example:
        >>> scorer = ToxicityScorer()  # doctest: +SKIP
        >>> scorer.score("a quiet lake"), scorer.is_toxic("a quiet lake")  # doctest: +SKIP
        (0.0, False)
    """

    def __init__(self, policy: Any = None) -> None:
        if isinstance(policy, ToxicityScorer):
            policy = policy.policy
        self.policy = rendered_text_policy(_load(policy))

    def scan(self, text: str) -> "Verdict":
        """The policy's verdict on ``text`` with all of it treated as rendered text."""
        if not isinstance(text, str):
            raise TypeError(f"text has type {type(text).__name__}; pass the OCR text as a string")
        if hasattr(self.policy, "config"):  # a safetext Policy: label findings with slot "ocr"
            return self.policy.scan(text, slot="ocr")
        return self.policy.scan(text)

    def score(self, text: str) -> float:
        """The highest finding score in [0, 1]; 0.0 when nothing is found."""
        return max((finding.score for finding in self.scan(text).findings), default=0.0)

    def is_toxic(self, text: str) -> bool:
        """Whether the policy would neutralize or block ``text``."""
        from safetext.policy.verdict import Action

        return self.scan(text).action in (Action.NEUTRALIZE, Action.BLOCK)

    def __repr__(self) -> str:
        return f"ToxicityScorer(policy={self.policy!r})"


def _scorer(policy: Any) -> ToxicityScorer:
    return policy if isinstance(policy, ToxicityScorer) else ToxicityScorer(policy)


def scan_text(text: str, policy: Any = None) -> "Verdict":
    """Scan OCR text, treating all of it as text rendered in the image.

    Args:
        text: Text read from an image (may be empty).
        policy: A ``ToxicityScorer``, a loaded ``Policy``, a policy name or path, or ``None`` for
            the default policy.

    Returns:
        The policy's :class:`~safetext.policy.verdict.Verdict` (findings carry slot ``"ocr"``).
    """
    return _scorer(policy).scan(text)


def toxicity_of_text(text: str, policy: Any = None) -> float:
    """The highest score among the verdict's findings, in [0, 1]; 0.0 when nothing is found.

    Args:
        text: Text read from an image.
        policy: A ``ToxicityScorer``, a loaded ``Policy``, a policy name or path, or ``None`` for
            the default policy.
    """
    return _scorer(policy).score(text)


def is_toxic(text: str, policy: Any = None) -> bool:
    """Whether the policy would neutralize or block this text (verdict action).

    Args:
        text: Text read from an image.
        policy: A ``ToxicityScorer``, a loaded ``Policy``, a policy name or path, or ``None`` for
            the default policy.
    """
    return _scorer(policy).is_toxic(text)
