"""Normalization with an index map: undo evasions, keep every character traceable to the prompt.

Two stages:

1. **Characters** (:func:`normalize_chars`): HTML tags dropped and entities decoded, NFKC, invisible
   characters removed, homoglyphs folded, lower-cased. Every normalized character remembers the original ``[start, end)`` it came from.
2. **Tokens** (:func:`tokenize`): words of the normalized text, with leetspeak read as letters
   (``sh1t``), runs of single letters split by separators joined (``f u c k``), and ``*``/``#``
   inside words kept as wildcards (``f*ck``). Repeated letters are not rewritten here; the matcher
   compares run lengths instead, so ``fuuuck`` matches ``fuck`` but ``as`` never matches ``ass``.

Offsets reported anywhere in a :class:`~safetext.policy.verdict.Verdict` come from these maps and
always point into the ORIGINAL prompt.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby

from safetext.policy.confusables import HTML, LEET, LEETSPEAK, SEPARATORS, WILDCARD, WILDCARDS, fold_char
from safetext.policy.schema import NormalizationConfig

_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_ASCII_WHITESPACE = str.maketrans("\t\n\r\x0b\x0c", "     ")
# HTML comments, tags and character entities (named, decimal, hexadecimal).
_HTML = re.compile(
    r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]{0,80})?/?>"
    r"|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});",
    re.S,
)
# A raw token: letters/digits plus the characters leetspeak and wildcards give meaning to, keyed by
# (leetspeak on, wildcards on).
_RAW_TOKEN = {
    (True, True): re.compile(r"(?:[^\W_]|[@$!+*#])+"),
    (True, False): re.compile(r"(?:[^\W_]|[@$!+])+"),
    (False, True): re.compile(r"(?:[^\W_]|[*#])+"),
    (False, False): re.compile(r"[^\W_]+"),
}
# What may sit between the single letters of a spaced-out word ("f u c k", "f.u.c.k", "f-u-c-k", "f=u=c=k", "f * u * c * k").
# Symbols and emoji count as separators too ("f❤u❤c❤k", "s💩h💩i💩t"); variation selectors are dropped before.
_SEPARATOR_GAP = re.compile(r"[\s.\-_,/\\|~·•:;=*\u2190-\u21ff\u2500-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff]{1,3}")
# A token like "f*u*c*k": single letters alternating with single wildcards.
_STARRED_LETTERS = re.compile(r"(?:[^\W_][*#]){2,}[^\W_]")


@dataclass(frozen=True)
class NormalizedText:
    """The prompt after character normalization, with a map back to the original.

    Attributes:
        original: the prompt as given.
        text: the normalized text (lower case).
        starts: original start offset of each normalized character (``None`` = identity map).
        ends: original end offset (exclusive) of each normalized character (``None`` = identity).
        masks: normalization-step bits per normalized character (``None`` = no step changed any).
    """

    original: str
    text: str
    starts: tuple[int, ...] | None
    ends: tuple[int, ...] | None
    masks: tuple[int, ...] | None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``[start, end)`` of the normalized characters ``[start, end)``."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]

    def mask(self, start: int, end: int) -> int:
        """OR of the step bits of normalized characters ``[start, end)``."""
        if self.masks is None:
            return 0
        bits = 0
        for value in self.masks[start:end]:
            bits |= value
        return bits


@dataclass(frozen=True)
class Token:
    """One word of the normalized text.

    Attributes:
        text: the word as matched: leetspeak resolved, wildcards kept as ``*``.
        start: first normalized character of the word.
        end: one past the last normalized character.
        mask: normalization-step bits that shaped it (characters and token steps).
        wildcard: True when ``text`` holds ``*`` wildcards.
    """

    text: str
    start: int
    end: int
    mask: int
    wildcard: bool = False


def normalize_chars(text: str, config: NormalizationConfig) -> NormalizedText:
    """Character-level normalization with an index map.

    Args:
        text: the original prompt.
        config: which steps are on.

    Returns:
        The :class:`NormalizedText`. Pure ASCII prompts without control characters take a fast
        path (lower-casing only, identity map).
    """
    has_html = config.html and ("<" in text or "&" in text) and _HTML.search(text) is not None
    if text.isascii() and not has_html and not (config.invisible and _ASCII_CONTROL.search(text)):
        return NormalizedText(text, text.lower().translate(_ASCII_WHITESPACE), None, None, None)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    masks: list[int] = []
    nfkc, invisible, confusables = config.nfkc, config.invisible, config.confusables
    pending = 0
    for char, start, end, html_bits in _units(text, has_html):
        if not char:
            # a dropped HTML tag or comment: inside a word it marks the next character
            pending = HTML if out and out[-1].isalnum() else 0
            continue
        if char.isascii() and not (invisible and _ASCII_CONTROL.match(char)):
            folded, bits = char.lower(), 0
            if folded in "\t\n\r\x0b\x0c":
                folded = " "
        else:
            folded, bits = fold_char(char, nfkc, invisible, confusables)
        bits |= html_bits | pending
        pending = 0
        if not folded:
            # A dropped character (zero-width, lone accent) belongs to the character before it.
            if ends:
                ends[-1] = end
                masks[-1] |= bits
            continue
        for piece in folded:
            out.append(piece)
            starts.append(start)
            ends.append(end)
            masks.append(bits)
    return NormalizedText(text, "".join(out), tuple(starts), tuple(ends), tuple(masks))


def _units(text: str, has_html: bool):
    """``(char, start, end, bits)`` per character of ``text``, with HTML tags dropped and entities decoded.

    A decoded entity yields its characters, each mapped to the whole entity; a tag yields one empty
    unit (the tag maps to nothing, so ``f<b>u</b>ck`` reads ``fuck``).
    """
    if not has_html:
        for index, char in enumerate(text):
            yield char, index, index + 1, 0
        return
    position = 0
    for match in _HTML.finditer(text):
        for index in range(position, match.start()):
            yield text[index], index, index + 1, 0
        piece = match.group()
        if piece[0] == "&":
            decoded = html.unescape(piece)
            if decoded == piece:  # not an entity HTML knows: keep the characters
                for index in range(match.start(), match.end()):
                    yield text[index], index, index + 1, 0
            else:
                for char in decoded:
                    yield char, match.start(), match.end(), HTML
        else:
            yield "", match.start(), match.end(), HTML
        position = match.end()
    for index in range(position, len(text)):
        yield text[index], index, index + 1, 0


def _clean_bounds(raw: str, start: int, end: int, wildcards: bool) -> tuple[int, int]:
    """Trim punctuation-like edges of a raw token: ``shit!`` -> ``shit``, ``*bold*`` -> ``bold``."""
    while end > start and raw[end - 1] in "!+":
        end -= 1
    while start < end and raw[start] == "+" and not (start + 1 < end and raw[start + 1].isalpha()):
        start += 1  # "+1" is a sign, "+wat" is leetspeak
    if start >= end:
        return start, end
    lead_wild = raw[start] in WILDCARDS
    trail_wild = raw[end - 1] in WILDCARDS
    if not wildcards or (lead_wild and trail_wild):
        while start < end and raw[start] in WILDCARDS:
            start += 1
        while end > start and raw[end - 1] in WILDCARDS:
            end -= 1
    elif raw[start] == "#" and end - start > 1 and raw[start + 1].isalpha():
        start += 1  # a hashtag, not a wildcard
    return start, end


def _read_word(norm: NormalizedText, start: int, end: int, config: NormalizationConfig) -> Token | None:
    """Build a token from normalized characters ``[start, end)`` (leetspeak and wildcards applied)."""
    raw = norm.text[start:end]
    if raw.isalpha():
        return Token(raw, start, end, norm.mask(start, end))
    if not any(c.isalpha() for c in raw):
        # Numbers stay tokens ("2 girls 1 cup"); all-leet words with a symbol ("4$$", "717$") are read
        # as leetspeak; other symbol runs ("***", "#1") are not words.
        if raw.isalnum():
            return Token(raw, start, end, norm.mask(start, end))
        if not (config.leetspeak and len(raw) > 1 and all(c in LEET for c in raw)):
            return None
    bits = norm.mask(start, end)
    chars = list(raw)
    wildcard = False
    for i, char in enumerate(chars):
        if char.isalpha() or (char.isdigit() and char not in LEET):
            continue
        if config.leetspeak and char in LEET:
            chars[i] = LEET[char]
            bits |= LEETSPEAK
        elif config.wildcards and char in WILDCARDS:
            chars[i] = "*"
            wildcard = True
            bits |= WILDCARD
        elif not char.isalnum():
            return None
    word = "".join(chars)
    if wildcard and not any(c.isalpha() for c in word):
        return None
    return Token(word, start, end, bits, wildcard)


def tokenize(norm: NormalizedText, config: NormalizationConfig) -> tuple[Token, ...]:
    """Split normalized text into words, undoing leetspeak, spaced-out letters and wildcards.

    Args:
        norm: output of :func:`normalize_chars`.
        config: which token-level steps are on (``leetspeak``, ``separators``, ``wildcards``).

    Returns:
        Tokens in text order. A run of three or more single-character words separated only by
        separator characters becomes ONE token spanning the whole run.
    """
    text = norm.text
    spans: list[tuple[int, int]] = []
    for match in _RAW_TOKEN[config.leetspeak, config.wildcards].finditer(text):
        start, end = _clean_bounds(text, match.start(), match.end(), config.wildcards)
        if start < end:
            spans.append((start, end))
    tokens: list[Token] = []
    i = 0
    count = len(spans)
    while i < count:
        start, end = spans[i]
        if config.separators and end - start == 1:
            j = i
            while (
                j + 1 < count
                and spans[j + 1][1] - spans[j + 1][0] == 1
                and _SEPARATOR_GAP.fullmatch(text, spans[j][1], spans[j + 1][0]) is not None
            ):
                j += 1
            if j - i >= 2:
                joined = _join_run(norm, spans[i : j + 1], config)
                if joined is not None:
                    tokens.append(joined)
                    i = j + 1
                    continue
        if config.separators and config.wildcards and _STARRED_LETTERS.fullmatch(text, start, end):
            joined = _join_run(norm, [(k, k + 1) for k in range(start, end, 2)], config)
            if joined is not None:
                tokens.append(joined)
                i += 1
                continue
        token = _read_word(norm, start, end, config)
        if token is not None:
            tokens.append(token)
        i += 1
    return tuple(tokens)


def _join_run(norm: NormalizedText, spans: list[tuple[int, int]], config: NormalizationConfig) -> Token | None:
    """One token from single characters spread over ``spans`` ("f u c k" -> "fuck")."""
    chars = [norm.text[s] for s, _ in spans]
    bits = SEPARATORS
    for i, char in enumerate(chars):
        if char.isalpha():
            continue
        if config.leetspeak and char in LEET:
            chars[i] = LEET[char]
            bits |= LEETSPEAK
        else:
            return None
    start, end = spans[0][0], spans[-1][1]
    return Token("".join(chars), start, end, bits | norm.mask(start, end))


@lru_cache(maxsize=65536)
def run_lengths(word: str) -> tuple[str, tuple[int, ...]]:
    """Collapse repeated letters: ``"fuuuck"`` -> ``("fuck", (1, 3, 1, 1))``.

    Memoized: the same words recur from prompt to prompt, and this runs for every token.
    """
    if not word:
        return "", ()
    letters = [char for char, _ in groupby(word)]
    if len(letters) == len(word):
        return word, (1,) * len(word)
    return "".join(letters), tuple(len(list(run)) for _, run in groupby(word))
