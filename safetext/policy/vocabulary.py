"""Real English words: the guard that keeps fuzzy, compound and inflection matching off clean words.

A word counts as English when Webster's Second International dictionary lists it (the ``web2`` list of
the ``english-words`` package: 234k headwords, proper names included, no modern slang) or when
``wordfreq`` gives it a Zipf frequency of at least 3 (once per million words: modern words such as
"bokeh", "cyberpunk", "bitcoin"). Both packages ship their data in the wheel; nothing is downloaded.

Why two sources: ``wordfreq`` alone counts misspelled profanity as words (it is built from social
media: "fook" and "biatch" have Zipf 2.5 and 2.0), while rare real words sit at the same frequency
("sextant" 2.3, "shiitake" 2.2). A dictionary separates them; ``wordfreq`` adds what the dictionary
is too old to know. The lists are loaded once per process (about 0.4 s) and shared read-only.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache

#: Zipf frequency from which a ``wordfreq`` word counts as English.
MIN_ZIPF = 3.0
#: Zipf frequency from which a one- or two-letter word counts as a word in split detection ("pen is").
MIN_ZIPF_SHORT = 5.0


@lru_cache(maxsize=1)
def _frequencies() -> dict[str, float]:
    import wordfreq

    return wordfreq.get_frequency_dict("en")


@lru_cache(maxsize=1)
def dictionary_words() -> frozenset[str]:
    """Lower-case headwords of Webster's Second International (``web2``): words with a dictionary sense.

    Profanity that is also such a word (``cock``, ``ass``, ``cum``, ``tit``, ``shag``, ``scum``) has a
    clean sense that names and places carry (Cockburn, Bankass, Castricum, Titsworth).
    """
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2"], lower=True, alpha=True))


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Lower-case alphabetic English words (Webster's 2nd + frequent ``wordfreq`` words)."""
    threshold = 10.0 ** (MIN_ZIPF - 9.0)
    frequent = {word for word, freq in _frequencies().items() if freq >= threshold and word.isascii() and word.isalpha()}
    return frozenset(dictionary_words() | frequent)


@lru_cache(maxsize=1)
def short_words() -> frozenset[str]:
    """One- and two-letter words frequent enough to be words of their own ("a", "i", "is", "it", "of")."""
    threshold = 10.0 ** (MIN_ZIPF_SHORT - 9.0)
    found = {w for w, f in _frequencies().items() if len(w) == 2 and w.isalpha() and w.isascii() and f >= threshold}
    return frozenset(found | {"a", "i"})


@lru_cache(maxsize=4)
def frequent_words(min_zipf: float) -> dict[str, float]:
    """``{word: Zipf}`` of the lower-case alphabetic ASCII ``wordfreq`` words seen at least ``min_zipf``."""
    threshold = 10.0 ** (min_zipf - 9.0)
    return {
        word: math.log10(freq) + 9.0 for word, freq in _frequencies().items() if freq >= threshold and word.isascii() and word.isalpha()
    }


def zipf(word: str) -> float:
    """Zipf frequency of a lower-case word in English ``wordfreq`` data (0.0 when never seen)."""
    freq = _frequencies().get(word)
    return math.log10(freq) + 9.0 if freq else 0.0


_SUFFIXES = (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("er", ""), ("ers", ""), ("ly", ""), ("'s", ""))


@lru_cache(maxsize=65536)
def is_english(word: str) -> bool:
    """True when ``word`` or its stem without a common suffix is an English word ("prickles", "baying")."""
    words = english_words()
    if word in words:
        return True
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)] + replacement
            if stem in words:
                return True
            if suffix in ("ing", "ed", "er", "ers") and len(stem) >= 4 and stem[-1] == stem[-2] and stem[:-1] in words:
                return True  # "bumming" -> "bum"
    return False


#: A capitalized word that ``wordfreq`` has seen this often is taken for a name ("Cockburn" 2.7,
#: "Cockfosters" 1.5, "Dickmann" 1.1), not for a glued word or a misspelling to be classified.
MIN_NAME_ZIPF = 1.0


def is_known_name(original: str, word: str) -> bool:
    """True when ``original`` (the token as typed) is capitalized like a name and ``wordfreq`` knows ``word``.

    Lower-case and CamelCase tokens (``shitlord``, ``ShitShow``) are never names here.
    """
    return original[:1].isupper() and original[1:].islower() and zipf(word) >= MIN_NAME_ZIPF


_NAME_JOINERS = re.compile(r"['’‘ʼ`.\-‐–—]+")
_LATIN_LETTER = re.compile(r"LATIN (CAPITAL|SMALL) LETTER .+")
_NAME_EDGES = "\"'“”‘’«»„`()[]{}<>,;:!?."


def _latin(char: str) -> bool:
    return char.isascii() or _LATIN_LETTER.fullmatch(unicodedata.name(char, "")) is not None


def is_name_shaped(original: str) -> bool:
    """True when a word as typed looks like a proper name: capitalized Latin letters (``Abala``,
    ``Afuá``, ``Łomża``), in parts joined by apostrophes or hyphens (``Kuz’minki``, ``Achkhoy-Martan``).

    Digits, symbols, other scripts' look-alikes, small capitals, fullwidth and mathematical letters,
    all-capitals and CamelCase (``ShitShow``) are not name-shaped.
    """
    marks_off = "".join(c for c in original if unicodedata.category(c) != "Mn")  # "Panauti̇̄", "Īz̄eh"
    parts = [part for part in _NAME_JOINERS.split(marks_off) if part]
    if not parts or not all(part.isalpha() and all(_latin(c) for c in part) for part in parts):
        return False
    if not any(part[:1].isupper() for part in parts):
        return False  # "l'Atalaye", "Saint-Michel" yes; "shitlord" no
    return all(not any(c.isupper() for c in part[1:]) for part in parts)


def name_shaped_at(text: str, start: int, end: int) -> bool:
    """:func:`is_name_shaped` for the whole whitespace-delimited word of ``text`` around ``[start, end)``.

    A token cut out of a longer word by an apostrophe or hyphen (``minki`` in ``Kuz’minki``) takes
    the shape of that word.
    """
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    word = text[start:end].strip(_NAME_EDGES)
    return is_name_shaped(word)
