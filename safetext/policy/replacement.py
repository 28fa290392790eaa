"""Choose the benign word that replaces a neutralized span.

The sanitized prompt keeps its sentence; only the offending span changes, and the replacement keeps
the span's case style (``FUCK`` -> ``LOVE``, ``Shit`` -> ``Star``) and, in ``auto`` mode, its length
as closely as the benign list allows, so the layout of the rendered text is preserved. The choice
is deterministic per matched term (a BLAKE2b hash, never Python's salted ``hash()``), so the same
word gets the same replacement in every slot of a request and in every process.

A model can write some benign words better than others. A layer map that carries a per-word
``replacement_legibility`` table (the glyph preset does, measured on the model itself by
``benchmarks/glyph_legibility.py``) makes the generator re-choose each ``auto`` replacement with
:func:`rechoose`: among the benign words of the span's length, the one the model writes best (ties:
the policy's own hash order). :meth:`Replacer.ranked` gives the whole order, which the verification
escalation step ``next_word`` walks when an image does not read as its replacement.

The same table says which word *lengths* the model writes reliably (the mean legibility of each
length's words: the glyph model writes 4- and 6-letter words better than 3-, 7- or 8-letter ones).
:meth:`Replacer.legible_length` picks, for a span, the nearest length the model writes better than the
span's own; the escalation step ``legible_word`` re-chooses each replacement from that length (the
layout changes a little, the word is written more reliably).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Sequence

from safetext.errors import PolicyError
from safetext.policy.schema import ReplacementConfig

if TYPE_CHECKING:
    from safetext.policy.verdict import Verdict


def _stable_index(key: str, modulo: int) -> int:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % modulo


def match_case(replacement: str, original: str) -> str:
    """Give ``replacement`` the case style of ``original`` (UPPER, Title or as is).

    Example:
        >>> match_case("love", "FUCK"), match_case("love", "Fuck"), match_case("love", "fuck")
        ('LOVE', 'Love', 'love')
    """
    letters = [c for c in original if c.isalpha()]
    if not letters:
        return replacement
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return replacement.upper()
    if letters[0].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


class Replacer:
    """Pick replacements according to a policy's ``replacement:`` section.

    Args:
        config: the replacement settings.
        words: the benign words for ``auto`` mode (``replacements.txt``).

    Raises:
        PolicyError: the benign word list is empty.
    """

    def __init__(self, config: ReplacementConfig, words: Sequence[str]) -> None:
        self.config = config
        cleaned = tuple(dict.fromkeys(w.strip() for w in words if w.strip()))
        if not cleaned:
            raise PolicyError(f"replacement list '{config.path}' has no words; add benign words, one per line")
        self.words = cleaned
        by_length: dict[int, list[str]] = {}
        for word in cleaned:
            by_length.setdefault(len(word), []).append(word)
        self._by_length = {length: tuple(group) for length, group in by_length.items()}
        self._lengths = tuple(sorted(by_length))
        self._mapping = {key.lower(): value for key, value in config.mapping.items()}

    def auto(self, key: str, length: int) -> str:
        """A benign word of the length closest to ``length`` (ties -> the shorter), chosen by ``key``.

        Args:
            key: what makes the choice deterministic (the matched term).
            length: length of the span being replaced.
        """
        best = min(self._lengths, key=lambda n: (abs(n - length), n))
        group = self._by_length[best]
        return group[_stable_index(key, len(group))]

    def ranked(self, key: str, length: int, legibility: Mapping[str, float] | None = None) -> tuple[str, ...]:
        """Every benign word of the length closest to ``length``, best first.

        Without ``legibility`` the order starts at :meth:`auto`'s choice and goes on through the group
        (so ``ranked(...)[0] == auto(...)``). With it, words are ordered by their legibility on the model
        (highest first; words missing from the table last), ties keeping that order.

        Args:
            key: what makes the order deterministic (the matched term).
            length: length of the span being replaced.
            legibility: lower-case word -> legibility in [0, 1] (a layer map's ``replacement_legibility``).
        """
        best = min(self._lengths, key=lambda n: (abs(n - length), n))
        group = self._by_length[best]
        first = _stable_index(key, len(group))
        order = group[first:] + group[:first]
        if legibility:
            order = tuple(sorted(order, key=lambda word: -legibility.get(word.lower(), -1.0)))
        return order

    def length_legibility(self, legibility: Mapping[str, float]) -> dict[int, float]:
        """Per word length, the mean legibility of the benign words of that length the table rates.

        Args:
            legibility: lower-case word -> legibility in [0, 1] (a layer map's ``replacement_legibility``).
        """
        scores: dict[int, list[float]] = {}
        for length, group in self._by_length.items():
            rated = [legibility[w.lower()] for w in group if w.lower() in legibility]
            if rated:
                scores[length] = rated
        return {length: sum(values) / len(values) for length, values in sorted(scores.items())}

    def legible_length(self, length: int, legibility: Mapping[str, float] | None) -> int | None:
        """The nearest word length the model writes better than the span's own, or None.

        The span's own length is the group :meth:`auto` takes for ``length``; the candidates are the lengths
        whose mean legibility (:meth:`length_legibility`) is higher than that group's (nearest first; ties: the
        more legible, then the shorter). None without a table, when the table does not rate the span's group,
        or when no length is written better.

        Args:
            length: length of the span being replaced.
            legibility: the layer map's ``replacement_legibility``.
        """
        if not legibility:
            return None
        means = self.length_legibility(legibility)
        own = min(self._lengths, key=lambda n: (abs(n - length), n))
        if own not in means:
            return None
        better = [n for n, score in means.items() if score > means[own]]
        if not better:
            return None
        return min(better, key=lambda n: (abs(n - length), -means[n], n))

    def choose(self, term: str, base: str, original: str) -> str:
        """The replacement for one neutralized span.

        Args:
            term: the matched form (``"fucks"``).
            base: the listed term it came from (``"fuck"``), also tried in ``mapping`` mode.
            original: the span as written in the prompt (sets length and case style).

        Returns:
            The replacement text, case-matched when ``preserve_case`` is on.
        """
        config = self.config
        if config.mode == "fixed" and config.word:
            word = config.word
        else:
            word = None
            if config.mode == "mapping":
                word = self._mapping.get(term) or self._mapping.get(base)
            if not word:
                word = self.auto(term, len(original))
        return match_case(word, original) if config.preserve_case else word

    def every_configured_word(self) -> tuple[str, ...]:
        """Every word this replacer can output (checked against the policy so it never flags itself)."""
        fixed = (self.config.word,) if self.config.word else ()
        return fixed + tuple(self._mapping.values()) + self.words


def rechoose(
    verdict: "Verdict",
    replacer: Replacer,
    legibility: Mapping[str, float] | None = None,
    rank: int = 0,
    legible_length: bool = False,
) -> "Verdict":
    """``verdict`` (of one prompt slot) with each ``auto`` replacement re-chosen by :meth:`Replacer.ranked`.

    The ``rank``-th word of the order replaces each neutralized span (wrapping around a short group),
    with the span's case style when the policy preserves case; the sanitized prompt is rebuilt from the
    new findings. Findings of other languages' word lists and replacements the policy fixed (``fixed``
    and ``mapping`` modes) are left as they are.

    Args:
        verdict: a verdict from ``Policy.scan`` (offsets into ``verdict.prompt``).
        replacer: the policy's replacer (``Policy.replacer``).
        legibility: the layer map's ``replacement_legibility`` (None: the policy's own order).
        rank: 0 for the best word, 1 for the next one (the escalation step ``next_word``), ...
        legible_length: take the words of :meth:`Replacer.legible_length` instead of the span's length
            (the escalation step ``legible_word``; a span with no better length keeps its own).
    """
    from safetext.policy.engine import apply_replacements

    config = replacer.config
    if config.mode != "auto" or not any(f.replacement is not None and f.language == "en" for f in verdict.findings):
        return verdict
    findings = []
    for finding in verdict.findings:
        if finding.replacement is not None and finding.language == "en":
            length = len(finding.text)
            if legible_length:
                length = replacer.legible_length(length, legibility) or length
            order = replacer.ranked(finding.normalized, length, legibility)
            word = order[rank % len(order)]
            word = match_case(word, finding.text) if config.preserve_case else word
            finding = finding.model_copy(update={"replacement": word})
        findings.append(finding)
    return verdict.model_copy(
        update={"findings": tuple(findings), "sanitized_prompt": apply_replacements(verdict.prompt, findings)}
    )
