"""Character folding for evasion: homoglyphs (confusables), invisible characters, leetspeak.

A non-ASCII character is read as the ASCII letter it looks like, in this order:

1. NFKC (mathematical alphanumerics, enclosed and full-width letters, superscripts, ligatures);
2. a short table of visual look-alikes that Unicode's confusables data leaves out (Cyrillic ``и``
   ``в`` ``н`` ``п``, Greek ``β`` ``κ`` ``ω``, small capitals, and the Canadian-syllabics alphabet of
   "fancy text" generators: ``ᖴᑌᑕK``);
3. the Unicode TR39 confusables data shipped by ``confusable-homoglyphs`` (every script: Cherokee
   ``ᏟᎾᏟᏦ``, Lisu ``ꓑ``, Armenian ``օ``, letterlike ``ℎ`` ...), followed once more through 1-3 when it
   leads to another non-ASCII letter;
4. ``anyascii`` transliteration, for Latin-derived letters and symbols only (accented and hooked
   letters ``ƒ`` ``ɗ``, negative-squared ``🅵``, regional indicators ``🇫``, ``©`` / ``®`` as ``c`` /
   ``r``): other scripts are never transliterated into Latin words.
"""

from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from pathlib import Path

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
# The letters of "fancy text" generators built from Canadian syllabics, and Cyrillic sha/shcha as w.
_SYLLABICS = (
    "ᗩa ᗷb ᑕc ᗪd ᕮe ᖴf ᘜg ᕼh ᓰi ᒍj ᛕk ᒪl ᗰm ᑎn ᗝo ᑭp ᑫq ᖇr ᔕs ᑌu ᐯv ᗯw ᙭x ᘔz "
    "шw Шw щw Щw"
)
_MULTI = {"ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "þ": "th", "Þ": "th", "ĳ": "ij"}


def _pairs(table: str) -> dict[str, str]:
    return {pair[0]: pair[1].lower() for pair in table.split()}


HOMOGLYPHS: dict[str, str] = {**_pairs(_CYRILLIC), **_pairs(_GREEK), **_pairs(_LATIN), **_pairs(_SYLLABICS), **_MULTI}
# Unicode names of the characters anyascii may transliterate (Latin-derived letters and symbols).
_TRANSLITERATE_NAMES = ("LATIN", "REGIONAL INDICATOR", "CIRCLED", "SQUARED", "PARENTHESIZED", "MODIFIER LETTER", "COPYRIGHT", "REGISTERED")

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
HTML = 128
CONFUSABLES = 4
LEETSPEAK = 8
SEPARATORS = 16
REPEATS = 32
WILDCARD = 64
STEP_BITS: tuple[tuple[str, int], ...] = (
    ("html", HTML),
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


@lru_cache(maxsize=1)
def _tr39() -> dict[str, str]:
    """TR39 confusables: character -> the ASCII letter (or digit) it is confusable with."""
    try:
        import confusable_homoglyphs
    except ImportError:  # the dependency is declared; without it only the other steps fold
        return {}
    data = json.loads((Path(confusable_homoglyphs.__file__).parent / "confusables.json").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for char, entries in data.items():
        if len(char) != 1 or char.isascii():
            continue
        letters, digits, others = [], [], []
        for entry in entries:
            target = "".join(c for c in unicodedata.normalize("NFD", entry["c"]) if unicodedata.category(c) != "Mn")
            target = target.replace("\u200e", "")
            if len(target) != 1:
                continue
            if target.isascii() and target.isalpha():
                letters.append(target.lower())
            elif target.isascii() and target.isdigit():
                digits.append(target)
            elif not target.isascii() and target.isalpha():
                others.append(target)
        if letters or digits:
            table[char] = (letters or digits)[0]
        elif others:
            table[char] = others[0]
    return table


def _transliterate(char: str) -> str | None:
    name = unicodedata.name(char, "")
    if not any(part in name for part in _TRANSLITERATE_NAMES):
        return None
    from anyascii import anyascii

    out = anyascii(char).strip("()").lower()
    if 1 <= len(out) <= 2 and out.isascii() and out.isalnum():
        return out
    return None


def _fold_confusable(char: str, depth: int = 0) -> str:
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
    confusable = _tr39().get(char)
    if confusable is not None:
        if confusable.isascii():
            return confusable
        if depth == 0:
            folded = unicodedata.normalize("NFKC", confusable).lower()
            if len(folded) == 1 and folded.isascii():
                return folded
            again = _fold_confusable(folded if len(folded) == 1 else confusable, depth + 1)
            if again.isascii():
                return again
    transliterated = _transliterate(char)
    if transliterated is not None:
        return transliterated
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
        if len(folded) == 3 and folded[0] == "(" and folded[2] == ")" and folded[1].isalnum():
            folded = folded[1]  # a parenthesized letter or digit ("⒡" is "(f)"): the letter, not a bracketed word
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
