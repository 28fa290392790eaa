"""Classifier backends behind one registry, and the built-in word-list matcher.

A backend turns a prompt into :class:`Detection` s: a span, a category and a score in ``[0, 1]``.
The engine applies the policy's per-category thresholds, allow-list and actions; backends only say
what they see. Backends run in the order the policy lists them and, for a span, the first backend
that flags it wins.

Register a backend with ONE call::

    from safetext.policy import register_backend

    def make_my_backend(params, context):
        return MyBackend(**params)

    register_backend("my_backend", make_my_backend)

after which a policy can say ``backends: [{name: wordlist}, {name: my_backend, params: {...}}]``.
Built-ins: ``wordlist`` (here, no dependency) and, in :mod:`safetext.policy.classifiers`,
``better_profanity``, ``alt_profanity_check`` and ``transformers``.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from safetext.errors import BackendError
from safetext.policy.confusables import CONFUSABLES, HTML, INVISIBLE, LEETSPEAK, REPEATS, SEPARATORS, step_names
from safetext.policy.lexicon import Lexicon
from safetext.policy.normalize import NormalizedText, Token
from safetext.policy.schema import NormalizationConfig
from safetext.policy.variants import COMPOUND_SCORE, FUZZY_SCORE, READING_SCORE, SPLIT_SCORE, VariantMatcher

#: Score of a word-list hit, by how much normalization it needed.
EXACT_SCORE = 1.0
OBFUSCATED_SCORE = 0.9
WILDCARD_SCORE = 0.8
_OBFUSCATION_BITS = INVISIBLE | CONFUSABLES | LEETSPEAK | SEPARATORS | REPEATS | HTML


@dataclass(frozen=True)
class Segment:
    """A piece of the prompt a classifier is asked to score.

    Attributes:
        start: original start offset.
        end: original end offset (exclusive).
        scope: ``"spans"`` for a rendered span or a word, ``"prompt"`` for the whole prompt.
    """

    start: int
    end: int
    scope: Literal["spans", "prompt"]


@dataclass(frozen=True)
class ScanDocument:
    """Everything a backend may look at for one scan (built once by the engine, read-only).

    Attributes:
        text: the original prompt.
        norm: its character-normalized form with the index map.
        tokens: its words after token-level normalization.
        rendered_spans: original spans of the text the prompt asks to be written.
        prompt_scope: True when the policy has ``scope: prompt`` rules (classifiers then also
            score the whole prompt).
    """

    text: str
    norm: NormalizedText
    tokens: tuple[Token, ...]
    rendered_spans: tuple[tuple[int, int], ...]
    prompt_scope: bool = False

    def word_spans(self) -> list[tuple[int, int]]:
        """Original spans of every word (a spaced-out "f u c k" is one word)."""
        return [self.norm.span(token.start, token.end) for token in self.tokens]

    def segments(self, granularity: Literal["words", "spans"]) -> list[Segment]:
        """The pieces a classifier scores.

        Args:
            granularity: ``"words"``: every word; ``"spans"``: every rendered span plus every word
                outside them (for context-aware models).

        Returns:
            Segments, plus the whole prompt (scope ``prompt``) when :attr:`prompt_scope` is set.
        """
        words = self.word_spans()
        if granularity == "words":
            segments = [Segment(s, e, "spans") for s, e in words]
        else:
            segments = [Segment(s, e, "spans") for s, e in self.rendered_spans]
            segments += [
                Segment(s, e, "spans") for s, e in words if not any(a < e and s < b for a, b in self.rendered_spans)
            ]
        if self.prompt_scope:
            segments.append(Segment(0, len(self.text), "prompt"))
        return segments


@dataclass(frozen=True)
class Detection:
    """What a backend saw.

    Attributes:
        start: original start offset.
        end: original end offset (exclusive).
        category: policy category (profanity, sexual, slur, insult, hate, custom).
        score: confidence in ``[0, 1]``.
        normalized: the span as matched (the list term, or the segment text for classifiers).
        normalizations: normalization steps that changed the span.
        backend: registered name of the backend.
        scope: ``"spans"`` or ``"prompt"`` (a whole-prompt judgement).
        rule_id: rule owning the detection when the backend knows it (word lists), else None.
        base: the listed term a plural/variant came from (used by mapping replacements).
        evidence: why the backend flagged it, for ``safetext scan --explain`` (never logged).
    """

    start: int
    end: int
    category: str
    score: float
    normalized: str
    normalizations: tuple[str, ...]
    backend: str
    scope: Literal["spans", "prompt"] = "spans"
    rule_id: str | None = None
    base: str = ""
    evidence: str = ""


@dataclass(frozen=True)
class BackendContext:
    """What a backend factory gets besides its ``params``."""

    lexicon: Lexicon
    normalization: NormalizationConfig
    base_dir: Path
    policy_name: str


class ClassifierBackend(ABC):
    """One-method protocol: :meth:`detect` a document. See :class:`WordListBackend` for the reference."""

    name: str = ""

    @abstractmethod
    def detect(self, document: ScanDocument) -> list[Detection]:
        """Detections for ``document``; every score must lie in ``[0, 1]``."""


BackendFactory = Callable[[Mapping[str, Any], BackendContext], ClassifierBackend]

_REGISTRY: dict[str, BackendFactory] = {}
_REGISTRY_LOCK = threading.Lock()
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register_backend(name: str, factory: BackendFactory, *, overwrite: bool = False) -> None:
    """Make a backend available to policies under ``name``.

    Args:
        name: lower-case identifier used in ``backends: [{name: ...}]``.
        factory: ``factory(params, context) -> ClassifierBackend``; raise :class:`BackendError` when
            the backend cannot be built (missing package, bad params).
        overwrite: replace an existing registration instead of refusing it.

    Raises:
        BackendError: bad name, non-callable factory, or name taken (without ``overwrite``).

    Example:
        >>> from safetext.policy import register_backend, registered_backends
        >>> "wordlist" in registered_backends()
        True
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise BackendError(f"backend name {name!r} is invalid; use lower-case letters, digits and '_' (e.g. 'my_backend')")
    if not callable(factory):
        raise BackendError(f"backend factory for '{name}' is {type(factory).__name__}, not callable; pass a function")
    with _REGISTRY_LOCK:
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not factory:
            raise BackendError(f"backend '{name}' is already registered; pick another name or pass overwrite=True")
        _REGISTRY[name] = factory


def registered_backends() -> tuple[str, ...]:
    """Names of the registered backends, sorted."""
    with _REGISTRY_LOCK:
        return tuple(sorted(_REGISTRY))


def create_backend(name: str, params: Mapping[str, Any], context: BackendContext) -> ClassifierBackend:
    """Build a registered backend.

    Raises:
        BackendError: ``name`` is not registered (the message lists the registered ones) or the
            factory failed.
    """
    with _REGISTRY_LOCK:
        factory = _REGISTRY.get(name)
    if factory is None:
        raise BackendError(
            f"unknown backend '{name}'; registered backends: {', '.join(registered_backends())}. "
            "Fix the name in the policy or register it with safetext.policy.register_backend()"
        )
    try:
        backend = factory(dict(params), context)
    except BackendError:
        raise
    except Exception as exc:  # a factory bug or a bad parameter: surface it, never swallow it
        raise BackendError(f"backend '{name}' failed to load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(backend, ClassifierBackend):
        raise BackendError(f"backend factory '{name}' returned {type(backend).__name__}, not a ClassifierBackend")
    return backend


class WordListBackend(ClassifierBackend):
    """The built-in matcher: whole-word, evasion-aware look-up of the policy's word lists.

    Exact look-up first (:meth:`Lexicon.find`), then, for what it leaves, the variants of
    :class:`~safetext.policy.variants.VariantMatcher`: ambiguous-character readings, split words,
    sound-alikes and compounds.

    Scores: 1.0 for a plain hit, 0.9 when leetspeak, homoglyphs, separators, repeats, HTML or
    invisible characters were undone or a word was split, 0.85 for a compound, 0.8 for a wildcard
    guess (``f*ck``) or a masked word (``p__sy``), 0.75 for a sound-alike. A policy threshold above 0.9 thus keeps only
    unobfuscated hits.

    Args:
        lexicon: the policy's compiled lexicon.
        fuzzy: match sound-alikes (``kunt``, ``fuxk``).
        compounds: match entries inside glued words (``bigass``).
    """

    name = "wordlist"

    def __init__(
        self, lexicon: Lexicon, normalization: NormalizationConfig | None = None, fuzzy: bool = True, compounds: bool = True
    ) -> None:
        self.lexicon = lexicon
        self.variants = _variant_matcher(lexicon, normalization or NormalizationConfig(), fuzzy, compounds)

    def detect(self, document: ScanDocument) -> list[Detection]:
        norm = document.norm
        detections = []
        taken: list[tuple[int, int]] = []
        for match in self.lexicon.find(norm, document.tokens):
            start, end = norm.span(match.start, match.end)
            taken.append((match.start, match.end))
            if match.wildcard:
                score = WILDCARD_SCORE
            elif match.mask & _OBFUSCATION_BITS:
                score = OBFUSCATED_SCORE
            else:
                score = EXACT_SCORE
            term = match.term
            detections.append(
                Detection(
                    start, end, term.category, score, term.form, step_names(match.mask), self.name,
                    rule_id=term.rule_id, base=term.base, evidence="list entry",
                )
            )
        for hit in self.variants.find(norm, document.tokens, taken):
            start, end = norm.span(hit.start, hit.end)
            term = hit.term
            detections.append(
                Detection(
                    start, end, term.category, _VARIANT_SCORES[hit.how], term.form,
                    step_names(hit.mask) + (hit.how,), self.name, rule_id=term.rule_id, base=term.base,
                    evidence=hit.evidence,
                )
            )
        return detections


_VARIANT_SCORES = {
    "readings": READING_SCORE, "split": SPLIT_SCORE, "compound": COMPOUND_SCORE, "fuzzy": FUZZY_SCORE, "masked": WILDCARD_SCORE,
}


@lru_cache(maxsize=32)
def _variant_matcher(lexicon: Lexicon, normalization: NormalizationConfig, fuzzy: bool, compounds: bool) -> VariantMatcher:
    return VariantMatcher(lexicon, normalization, fuzzy=fuzzy, compounds=compounds)


def _wordlist_factory(params: Mapping[str, Any], context: BackendContext) -> ClassifierBackend:
    unknown = sorted(set(params) - {"fuzzy", "compounds"})
    if unknown:
        raise BackendError(
            f"backend 'wordlist' got unknown params {unknown}; it takes 'fuzzy' and 'compounds' (true/false). "
            "Configure word lists under 'lists:' instead"
        )
    flags = {}
    for key in ("fuzzy", "compounds"):
        value = params.get(key, True)
        if not isinstance(value, bool):
            raise BackendError(f"backend 'wordlist': '{key}' must be true or false, got {value!r}")
        flags[key] = value
    return WordListBackend(context.lexicon, context.normalization, **flags)


class SegmentClassifier(ClassifierBackend):
    """Base for classifiers that score text segments (rendered spans, words, the whole prompt).

    Subclasses implement :meth:`score_texts`; ``labels`` maps the classifier's label names to
    policy categories; ``granularity`` says whether they judge single words (word censors) or
    rendered spans (context-aware models).
    """

    granularity: Literal["words", "spans"] = "words"

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = dict(labels)

    @abstractmethod
    def score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per text, ``{label: score}`` for the labels in ``self.labels``."""

    def detect(self, document: ScanDocument) -> list[Detection]:
        segments = document.segments(self.granularity)
        if not segments:
            return []
        texts = [document.text[s.start : s.end] for s in segments]
        scores = self.score_texts(texts)
        if len(scores) != len(texts):
            raise BackendError(f"backend '{self.name}' returned {len(scores)} results for {len(texts)} texts")
        detections = []
        for segment, text, per_label in zip(segments, texts, scores):
            for label, category in self.labels.items():
                score = float(per_label.get(label, 0.0))
                detections.append(
                    Detection(segment.start, segment.end, category, score, text.lower(), (), self.name, segment.scope)
                )
        return detections


register_backend("wordlist", _wordlist_factory)
