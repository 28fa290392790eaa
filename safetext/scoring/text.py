"""Text metrics for OCR output: character-level precision/recall/F1, exact match, Levenshtein.

``ocr_f1`` follows the paper's research code (``get_p_r_acc`` in ``src/eval/ocr_eval.py`` of the
authors' repository), which compares the OCR string and the target as multisets of lower-cased
characters: every predicted character that is still unmatched in the target counts as a hit and
is removed, so order does not matter and repeated letters count as often as they occur.

Differences from that code, all deliberate and documented on the functions:

- whitespace is dropped before matching (the research code kept spaces as empty-string items
  that matched each other, so multi-word targets were scored partly on spaces);
- the degenerate cases are exact rather than ``x / (n + 1e-8)``: an empty prediction has
  precision 0, an empty target has recall 0, and an empty prediction against an empty target
  scores 1.0 everywhere (nothing to read, nothing read);
- dataset-level numbers use :func:`corpus_ocr_f1`, which, like the paper, averages precision and
  recall over samples and takes the harmonic mean of the two averages.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import NamedTuple, Sequence

__all__ = ["CharacterF1", "ocr_f1", "corpus_ocr_f1", "exact_match", "levenshtein", "normalize_for_match"]

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


class CharacterF1(NamedTuple):
    """Character-level scores of one OCR reading (or averages over a dataset), each in [0, 1]."""

    precision: float
    recall: float
    f1: float


def _characters(text: str) -> Counter[str]:
    return Counter(char for char in text.lower() if not char.isspace())


def _harmonic_mean(precision: float, recall: float) -> float:
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def ocr_f1(pred: str, target: str) -> CharacterF1:
    """Character-level precision, recall and F1 of an OCR reading against the expected text.

    Both strings are lower-cased (``str.lower``) and stripped of every whitespace character; what
    remains is compared as two multisets of characters. ``matched`` is the size of their
    intersection (each character counts ``min(count in pred, count in target)`` times);
    precision = matched / len(pred), recall = matched / len(target), F1 = their harmonic mean.

    Args:
        pred: The text OCR read from the image.
        target: The text the image should show.

    Returns:
        A :class:`CharacterF1`. Both empty: (1.0, 1.0, 1.0). Only ``pred`` empty: precision 0.0
        and recall 0.0. Only ``target`` empty: both 0.0.

    Example:
        >>> ocr_f1("Hell0", "hallo")  # matched h, l, l: precision 3/5, recall 3/5
        CharacterF1(precision=0.6, recall=0.6, f1=0.6)
    """
    if not isinstance(pred, str) or not isinstance(target, str):
        raise TypeError(
            f"ocr_f1 takes two strings, got pred={type(pred).__name__} and "
            f"target={type(target).__name__}; pass the OCR text and the expected text"
        )
    predicted, expected = _characters(pred), _characters(target)
    n_pred, n_target = sum(predicted.values()), sum(expected.values())
    if n_pred == 0 and n_target == 0:
        return CharacterF1(1.0, 1.0, 1.0)
    matched = sum((predicted & expected).values())
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_target if n_target else 0.0
    return CharacterF1(precision, recall, _harmonic_mean(precision, recall))


def corpus_ocr_f1(preds: Sequence[str], targets: Sequence[str]) -> CharacterF1:
    """Dataset-level character scores as reported in the paper.

    Precision and recall are averaged over the pairs (each from :func:`ocr_f1`) and F1 is the
    harmonic mean of the two averages, not the average of per-pair F1 values.

    Args:
        preds: OCR readings, one per image.
        targets: Expected texts, aligned with ``preds``.

    Returns:
        A :class:`CharacterF1` of the averages.
    """
    if len(preds) != len(targets):
        raise ValueError(
            f"preds has {len(preds)} items but targets has {len(targets)}; pass aligned sequences"
        )
    if not preds:
        raise ValueError("preds and targets are empty; pass at least one pair")
    scores = [ocr_f1(pred, target) for pred, target in zip(preds, targets)]
    precision = sum(score.precision for score in scores) / len(scores)
    recall = sum(score.recall for score in scores) / len(scores)
    return CharacterF1(precision, recall, _harmonic_mean(precision, recall))


def normalize_for_match(text: str) -> str:
    """Lower-case ``text`` and drop ASCII punctuation and all whitespace (``"Stop!\\n"`` -> ``"stop"``)."""
    return "".join(_PUNCTUATION.sub("", text.lower()).split())


def exact_match(pred: str, target: str) -> bool:
    """Whether two texts are equal after :func:`normalize_for_match` (case, punctuation, spaces).

    Args:
        pred: The text OCR read from the image.
        target: The text the image should show.

    Returns:
        True when the normalized strings are equal.

    Example:
        >>> exact_match("STOP!", "stop"), exact_match("s top", "stop"), exact_match("stops", "stop")
        (True, True, False)
    """
    return normalize_for_match(pred) == normalize_for_match(target)


def levenshtein(a: str, b: str) -> int:
    """Edit distance: the fewest single-character insertions, deletions and substitutions.

    The comparison is exact (case-sensitive); normalize first if case should not count. Runs the
    O(len(a) * len(b)) dynamic programme with two rows of memory.

    Args:
        a: First string.
        b: Second string.

    Returns:
        The distance, between ``abs(len(a) - len(b))`` and ``max(len(a), len(b))``.

    Example:
        >>> levenshtein("kitten", "sitting")
        3
    """
    if not isinstance(a, str) or not isinstance(b, str):
        raise TypeError(
            f"levenshtein takes two strings, got {type(a).__name__} and {type(b).__name__}"
        )
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, start=1):
            current[j] = min(
                previous[j] + 1,  # delete char_a
                current[j - 1] + 1,  # insert char_b
                previous[j - 1] + (char_a != char_b),  # substitute (free when equal)
            )
        previous = current
    return previous[-1]
