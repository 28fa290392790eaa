"""Closed-loop verification: read the generated images back and check what is actually written.

A prompt scan says what was *asked for*; this module says what the image *shows*. Each image is read
by OCR and the text is scanned with the same policy (all of it counts as rendered text), plus a
fragment check for lexicon words inside longer tokens (:class:`FragmentFinder`). With
``verification.expect: replacement`` a patched image must also *read as* its sanitized text (the
rendered text of the sanitized prompt, compared by normalized edit distance): a garbled mixture such as
``DOLFHJN`` fails like a toxic image does. The generator uses :class:`ImageVerifier` after a generation
and escalates while a check fails (see ``VerificationConfig`` in the policy schema): patch from step 0,
add the layer map's next ranked layers, every text-attention layer, another benign replacement word
(``next_word``), a word of a length the model writes better (``legible_word``), then refuse — each step recorded in
``verdict.details["escalations"]``, never a flagged image returned silently.

    >>> verifier = ImageVerifier.from_policy(policy)          # None when the policy disables verification
    >>> report = verifier.check(output.images, expected=["daylight"])
    >>> report.toxic, report.illegible, report.texts
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safetext.errors import PolicyError

_LETTERS = re.compile(r"[^a-z]+")


@dataclass(frozen=True)
class ImageCheck:
    """OCR result of one image: the text read (hashed for logs), whether the policy flags it, and whether it
    reads as the expected text.

    Attributes:
        toxic: the policy flags the text read, or a lexicon word is read inside a longer token.
        fragments: categories of the lexicon words found inside tokens (one entry per fragment).
        expected: the text the image should show (None: not checked, e.g. an unpatched prompt).
        similarity: ``1 - levenshtein / max(len)`` of the normalized reading and ``expected``.
        legible: ``similarity`` reaches the verifier's ``min_similarity`` (True when not checked).
    """

    index: int
    text: str
    toxic: bool
    categories: tuple[str, ...] = ()
    fragments: tuple[str, ...] = ()
    expected: str | None = None
    similarity: float | None = None
    legible: bool = True

    @property
    def passed(self) -> bool:
        return not self.toxic and self.legible

    def as_details(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16] if self.text else ""
        details = {"index": self.index, "toxic": self.toxic, "categories": list(self.categories), "text_sha256": digest}
        if self.fragments:
            details["fragments"] = list(self.fragments)
        if self.expected is not None:
            details.update(expected=self.expected, similarity=round(float(self.similarity or 0.0), 4), legible=self.legible)
        return details


@dataclass(frozen=True)
class VerificationReport:
    """The check of one generation's images (``seconds``: OCR and checks, wall clock)."""

    checks: tuple[ImageCheck, ...]
    seconds: float = 0.0

    @property
    def toxic(self) -> bool:
        return any(check.toxic for check in self.checks)

    @property
    def illegible(self) -> bool:
        return any(not check.legible for check in self.checks)

    @property
    def failed(self) -> bool:
        return self.toxic or self.illegible

    @property
    def toxic_images(self) -> tuple[int, ...]:
        return tuple(check.index for check in self.checks if check.toxic)

    @property
    def illegible_images(self) -> tuple[int, ...]:
        return tuple(check.index for check in self.checks if not check.legible)

    @property
    def reason(self) -> str:
        """``toxic`` (flagged text visible; wins over the other), ``illegible`` or ``""`` when every image passed."""
        return "toxic" if self.toxic else "illegible" if self.illegible else ""

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(check.text for check in self.checks)


def similarity(read: str, expected: str) -> float:
    """``1 - levenshtein / max(len)`` of the two texts after :func:`~safetext.scoring.normalize_for_match` (1.0: same)."""
    from safetext.scoring.text import levenshtein, normalize_for_match

    a, b = normalize_for_match(read), normalize_for_match(expected)
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


class FragmentFinder:
    """Lexicon words read *inside* longer tokens (``DYKEGHT`` holds ``dyke``), with the allow-list honoured.

    The rule: a token read (letters only, after the policy's normalization, so ``5H1T`` is ``shit``)
    holds a fragment when a one-word lexicon entry of at least ``min_chars`` letters is a proper
    substring of it, unless

    * the token is itself an English word (:func:`~safetext.policy.vocabulary.is_english`: ``classic``,
      ``grapefruit``, ``scunthorpe`` is allow-listed) or allow-listed, or
    * a longer English or allow-listed word inside the token covers the fragment and is not itself a
      lexicon word (``grapefruitx``: ``grape`` covers ``rape``; ``cockpitz``: allow-listed ``cockpit``).

    A token that *is* a lexicon word is the policy scan's business, not this check's. Short entries
    (``ass``, ``cum``) are left out by default because garbled letter mixtures hold them by chance.

    Args:
        policy: a loaded :class:`~safetext.policy.Policy` (its one-word lexicon entries and allow-list).
        min_chars: the shortest lexicon entry looked for inside tokens.
    """

    def __init__(self, policy: Any, min_chars: int = 4) -> None:
        config = policy.config
        self.min_chars = int(min_chars)
        self._config = config.normalization
        self.terms: dict[str, str] = {}
        for term in policy.lexicon.single_word_terms():
            form = _LETTERS.sub("", term.form)
            if len(form) >= self.min_chars:
                self.terms.setdefault(form, term.category)
        self.allowed = frozenset(word for word in (_LETTERS.sub("", a.lower()) for a in policy.allow_terms) if word)
        self._longest = max(map(len, self.terms), default=0)

    def _ordinary(self, word: str) -> bool:
        from safetext.policy.vocabulary import is_english

        return word in self.allowed or (word not in self.terms and len(word) > 2 and is_english(word))

    def find(self, text: str) -> list[tuple[str, str, str]]:
        """``(token, fragment, category)`` for every fragment in ``text``."""
        from safetext.policy.normalize import normalize_chars, tokenize

        found = []
        norm = normalize_chars(text, self._config)
        for token in tokenize(norm, self._config):
            word = _LETTERS.sub("", token.text)
            if len(word) <= self.min_chars or word in self.terms or self._ordinary(word):
                continue
            for i in range(len(word)):
                for j in range(i + self.min_chars, min(len(word), i + self._longest) + 1):
                    fragment = word[i:j]
                    if fragment in self.terms and (i, j) != (0, len(word)) and not self._covered(word, i, j):
                        found.append((word, fragment, self.terms[fragment]))
        return found

    def _covered(self, word: str, i: int, j: int) -> bool:
        for a in range(i + 1):
            for b in range(len(word), j - 1, -1):
                if b - a > j - i and (a, b) != (0, len(word)) and self._ordinary(word[a:b]):
                    return True
        return False


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
    """OCR + policy scan of generated images, and (``expect="replacement"``) the reading checked against the sanitized text.

    Args:
        policy: the policy whose rules judge the text read (the same policy that scanned the prompt).
        ocr: an OCR backend (``safetext.scoring.get_ocr(...)``) — anything with ``read(image).text``.
        escalation: the steps to try in order while a check fails.
        check_allowed: also check images of prompts the scan allowed.
        expect: ``"not_toxic"`` (no flagged text visible) or ``"replacement"`` (a patched image must also
            read as its sanitized text).
        min_similarity: least :func:`similarity` of the reading and the expected text.
        fragment_min_chars: shortest lexicon word looked for inside tokens (:class:`FragmentFinder`; 0: off).
    """

    def __init__(
        self,
        policy: Any,
        ocr: Any,
        escalation: Sequence[str] = ("earlier_start", "all_layers", "block"),
        check_allowed: bool = True,
        *,
        expect: str = "not_toxic",
        min_similarity: float = 0.9,
        fragment_min_chars: int = 4,
    ):
        from safetext.scoring.toxicity import ToxicityScorer

        if expect not in ("not_toxic", "replacement"):
            raise PolicyError(f"expect must be 'not_toxic' or 'replacement', got {expect!r}")
        if not 0.0 <= float(min_similarity) <= 1.0:
            raise PolicyError(f"min_similarity must be in [0, 1], got {min_similarity!r}")
        self.scorer = ToxicityScorer(policy)
        self.ocr = ocr
        self.escalation = tuple(escalation)
        self.check_allowed = bool(check_allowed)
        self.expect = expect
        self.min_similarity = float(min_similarity)
        config = getattr(policy, "config", None)
        self.fragments = (
            FragmentFinder(policy, fragment_min_chars)
            if fragment_min_chars and config is not None and hasattr(policy, "lexicon") else None
        )
        self._max_words = config.rendered_text.max_words if config is not None else 8

    @classmethod
    def from_policy(cls, policy: Any) -> "ImageVerifier | None":
        """The verifier a policy asks for, or None when its ``verification`` is absent or disabled."""
        config = getattr(getattr(policy, "config", None), "verification", None)
        if config is None or not config.enabled:
            return None
        from safetext.scoring import get_ocr

        return cls(
            policy, get_ocr(config.ocr, **dict(config.ocr_options)), config.escalation, config.check_allowed,
            expect=config.expect, min_similarity=config.min_similarity, fragment_min_chars=config.fragment_min_chars,
        )

    def expected_text(self, sanitized_prompt: str, replacements: Sequence[str] = ()) -> str:
        """What a patched image should show: the rendered text of the sanitized prompt (quoted text,
        ``says X``), else the replacement words."""
        from safetext.policy.rendered import find_rendered_spans

        spans = find_rendered_spans(sanitized_prompt, self._max_words)
        if spans:
            return " ".join(sanitized_prompt[start:end] for start, end in spans)
        return " ".join(replacements)

    def check(self, images: Sequence[Any], pipe: Any = None, expected: Sequence[str | None] | None = None) -> VerificationReport:
        """OCR and scan each image; with ``pipe``, read only where it declares its text (see ``text_region``).

        Args:
            images: the generated images.
            pipe: the pipeline (its text region, if it declares one).
            expected: per image, the text it should show (None: not checked); only used with
                ``expect="replacement"``.
        """
        started = time.perf_counter()
        ocr = self.ocr
        if pipe is not None:
            from safetext.scoring import ocr_for_pipeline

            ocr = ocr_for_pipeline(ocr, pipe)
        if expected is not None and len(expected) != len(images):
            raise ValueError(f"expected has {len(expected)} entries for {len(images)} images; pass one per image")
        checks = []
        for index, image in enumerate(images):
            text = ocr.read(image).text.strip()
            verdict = self.scorer.scan(text) if text else None
            flagged = verdict is not None and verdict.flagged
            categories = {f.category for f in verdict.findings} if flagged else set()
            fragments = tuple(category for _, _, category in self.fragments.find(text)) if self.fragments and text else ()
            categories.update(fragments)
            target = expected[index] if expected is not None and self.expect == "replacement" else None
            score = similarity(text, target) if target is not None else None
            legible = score is None or score >= self.min_similarity
            checks.append(
                ImageCheck(index, text, flagged or bool(fragments), tuple(sorted(categories)), fragments, target, score, legible)
            )
        return VerificationReport(tuple(checks), time.perf_counter() - started)

    def __repr__(self) -> str:
        return f"ImageVerifier(ocr={type(self.ocr).__name__}, expect={self.expect!r}, escalation={list(self.escalation)})"
