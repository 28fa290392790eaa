"""Character tables for evasion folding: homoglyphs (confusables), invisible characters, leetspeak.

The homoglyph table is deliberately compact: it covers the look-alikes actually used to dodge word
filters (Cyrillic and Greek letters that render like Latin ones, small capitals, a few Latin
extensions) rather than the full Unicode ``confusables.txt``. Accented Latin letters are folded by
decomposition (``é`` -> ``e``), full-width forms by code-point offset.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Pairs "<look-alike><ascii>" separated by spaces; upper- and lower-case forms listed separately.
_CYRILLIC = (
    "аa вb гr дd еe ёe зz иu йu кk лn мm нh оo пn рp сc тt уy фf хx ъb ьb ѕs іi їi јj ԁd ԛq ԝw ӏl һh օo սu ոn "
    "Аa Вb Гr Дd Еe Ёe Зz Кk Мm Нh Оo Пn Рp Сc Тt Уy Хx Ѕs Іi Їi Јj Ԁd Ԛq Ԝw Ӏl Һh"
)
_GREEK = (
    "αa βb γy δd εe ζz ηn θo ιi κk λl μu νv οo πn ρp σo ςc τt υu φf χx ψw ωw άa έe ήn ίi όo ύu ώw "
    "Αa Βb Γr Δd Εe Ζz Ηh Θo Ιi Κk Λl Μm Νn Οo Πn Ρp Σe Τt Υy Φf Χx Ψw Ωo"
)
_LATIN = (
    "ƒf ſs ıi ȷj łl øo đd ħh ŧt ŋn ɑa ɡg ɩi ʋu ɓb ɗd ƙk ƥp ʠq ʂs ʐz ȥz ꝗq ɦh ɱm ɲn ƞn ʀr "
    "ᴀa ʙb ᴄc ᴅd ᴇe ғf ɢg ʜh ɪi ᴊj ᴋk ʟl ᴍm ɴn ᴏo ᴘp ꜱs ᴛt ᴜu ᴠv ᴡw ʏy ᴢz "
    "ÐD Øo Łl Đd Ħh Ŧt"
)
_MULTI = {"ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "þ": "th", "Þ": "th", "ĳ": "ij"}


def _pairs(table: str) -> dict[str, str]:
    return {pair[0]: pair[1].lower() for pair in table.split()}


HOMOGLYPHS: dict[str, str] = {**_pairs(_CYRILLIC), **_pairs(_GREEK), **_pairs(_LATIN), **_MULTI}

#: Characters read as letters inside a word when ``leetspeak`` is on.
LEET: dict[str, str] = {
    "1": "i",
    "3": "e",
    "4": "a",
    "@": "a",
    "$": "s",
    "0": "o",
    "5": "s",
    "7": "t",
    "!": "i",
    "+": "t",
}

#: Characters read as "any one letter" inside a word when ``wildcards`` is on.
WILDCARDS = frozenset("*#")

# Zero-width and other invisible code points that are not all in category Cf.
_INVISIBLE_EXTRA = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0\u2800")
_WHITESPACE_CONTROLS = frozenset("\t\n\r\x0b\x0c")

# Bit flags recorded per normalized character; the names match NormalizationConfig fields.
NFKC = 1
INVISIBLE = 2
CONFUSABLES = 4
LEETSPEAK = 8
SEPARATORS = 16
REPEATS = 32
WILDCARD = 64
STEP_BITS: tuple[tuple[str, int], ...] = (
    ("nfkc", NFKC),
    ("invisible", INVISIBLE),
    ("confusables", CONFUSABLES),
    ("leetspeak", LEETSPEAK),
    ("separators", SEPARATORS),
    ("repeats", REPEATS),
    ("wildcards", WILDCARD),
)


def step_names(mask: int) -> tuple[str, ...]:
    """Names of the normalization steps whose bits are set in ``mask``, in pipeline order."""
    return tuple(name for name, bit in STEP_BITS if mask & bit)


def is_invisible(char: str) -> bool:
    """True for zero-width, format, bidi, variation-selector and non-whitespace control characters."""
    if char in _WHITESPACE_CONTROLS:
        return False
    if char in _INVISIBLE_EXTRA or "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef":
        return True
    return unicodedata.category(char) in ("Cf", "Cc")


def _fold_confusable(char: str) -> str:
    mapped = HOMOGLYPHS.get(char)
    if mapped is not None:
        return mapped
    code = ord(char)
    if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII block
        return chr(code - 0xFEE0).lower()
    if unicodedata.category(char) == "Mn":  # a lone combining accent
        return ""
    decomposed = unicodedata.normalize("NFD", char)
    if len(decomposed) > 1:
        base = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
        if base and base != char:
            return HOMOGLYPHS.get(base, base).lower()
    return char


@lru_cache(maxsize=8192)
def fold_char(char: str, nfkc: bool, invisible: bool, confusables: bool) -> tuple[str, int]:
    """Normalize one non-ASCII character.

    Args:
        char: one code point of the original prompt.
        nfkc: apply NFKC compatibility folding.
        invisible: drop invisible characters (and turn whitespace controls into a space).
        confusables: fold homoglyphs, full-width forms and accents.

    Returns:
        ``(text, mask)``: the lower-case replacement (possibly empty or several characters) and the
        bit mask of the steps that changed it.
    """
    out, mask = char, 0
    if char in _WHITESPACE_CONTROLS:
        return " ", 0
    if nfkc:
        folded = unicodedata.normalize("NFKC", out)
        if folded != out:
            out, mask = folded, mask | NFKC
    if invisible:
        kept = "".join(c for c in out if not is_invisible(c))
        if kept != out:
            out, mask = kept, mask | INVISIBLE
    if confusables and out:
        folded = "".join(_fold_confusable(c) for c in out)
        if folded != out.lower():
            out, mask = folded, mask | CONFUSABLES
    return out.lower(), mask
