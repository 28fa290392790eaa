"""Morphology of the language packs: the forms generated from each listed word, per language.

Each language gets its own rules, applied only to its own lexicon (no English plurals for German,
no German participles for Spanish): plurals, gender, augmentatives and diminutives of Spanish,
Portuguese and Italian (``puta`` -> ``putas``, ``puto``, ``putita``, ``putón``; ``stronzo`` ->
``stronzone``), French plural and feminine (``connard`` -> ``connarde``), German and Dutch declension,
verb forms and participles (``ficken`` -> ``fickt``, ``gefickt``, ``verfickter``; ``neuken`` ->
``geneukt``), and the chat spelling of Spanish and Portuguese with ``k`` for a hard ``c``/``qu``.
:func:`~safetext.policy.languages.load_pack` drops the generated forms that are other words.
"""

from __future__ import annotations

import re

#: Number and gender/size suffixes per language, ``(ending to remove, ending to add)``, applied to the
#: folded single words of the pack's lexicon. A generated form that the language uses more than the
#: listed word is another word and is dropped (Italian *zoccole* -> *zoccoli*, "clogs"); ``DERIVED``
#: forms (gender, augmentative, diminutive, verb forms) already when they come within half a Zipf
#: unit of it (Spanish *polla* -> *pollo*, "chicken"), while plurals stay (*puta* -> *putas*).
NUMBER: dict[str, tuple[tuple[str, str], ...]] = {
    "de": (("", "e"), ("", "en"), ("", "n"), ("", "s"), ("", "er"), ("", "es")),
    "es": (("", "s"), ("", "es")),
    "fr": (("", "s"), ("", "x"), ("", "es")),
    "pt": (("", "s"), ("", "es"), ("ao", "oes"), ("ao", "aes")),
    "it": (("o", "i"), ("a", "e")),
    "nl": (("", "en"), ("", "s"), ("", "e")),
}
_ES_PT_O = ("a", "as", "os", "ito", "ita", "itos", "itas", "azo", "aza", "on", "ona", "ones", "onas", "ote", "ota", "ao")
_ES_PT_A = ("o", "os", "as", "ita", "itas", "ito", "azo", "aza", "on", "ona", "onas", "ones", "ota", "ao")
_PT_SMALL = ("inho", "inha", "inhos", "inhas", "zinho", "zinha", "aco", "ona", "onas", "ao", "oes")
DERIVED: dict[str, tuple[tuple[str, str], ...]] = {
    "de": (("en", ""), ("en", "t"), ("en", "st"), ("en", "te"), ("en", "e"), ("e", "en"), ("e", "n"), ("er", "erin"), ("er", "erinnen")),
    "es": tuple(("o", a) for a in _ES_PT_O) + tuple(("a", a) for a in _ES_PT_A)
    + (("on", "ona"), ("on", "onas"), ("on", "onazo"), ("on", "oncito"), ("e", "ito"), ("e", "ita")),
    "fr": (("", "e"), ("", "es"), ("e", "es"), ("ard", "arde"), ("ard", "ardes"), ("eur", "euse"), ("eur", "euses"), ("er", "e"), ("er", "es"), ("er", "ee"), ("er", "ees"), ("e", "ee"), ("e", "ees")),
    "pt": tuple(("o", a) for a in _ES_PT_O + _PT_SMALL) + tuple(("a", a) for a in _ES_PT_A + _PT_SMALL)
    + (("ao", "ona"), ("ao", "onas"), ("ao", "aozinho")),
    "it": (("o", "a"), ("o", "e"), ("a", "o"), ("o", "ino"), ("o", "ina"), ("a", "ina"), ("o", "one"), ("a", "one"), ("o", "ona"),
           ("a", "ona"), ("o", "oni"), ("a", "oni"), ("o", "etto"), ("a", "etta"), ("o", "accio"), ("a", "accia"), ("one", "oni"), ("one", "ona"), ("one", "one"),
           ("o", "azzo"), ("a", "azza"), ("e", "azzo"), ("e", "azza"), ("e", "accio")),
    "nl": (("", "je"), ("", "jes"), ("", "tje"), ("", "tjes"), ("en", ""), ("en", "t"), ("en", "te"), ("en", "ten")),
}
#: Languages whose plural of a short word is the word and ``s`` (the three-letter list words: French *con* -> *cons*).
PLAIN_PLURALS = frozenset({"fr", "es", "pt"})
#: Participle prefixes of verbs (``ficken`` -> ``gefickt``, ``verfickt``; ``neuken`` -> ``geneukt``).
PARTICIPLES: dict[str, tuple[str, ...]] = {"de": ("ge", "ver"), "nl": ("ge",)}
#: Back-compatible view: every suffix rule of a language.
INFLECTIONS: dict[str, tuple[tuple[str, str], ...]] = {code: NUMBER[code] + DERIVED[code] for code in NUMBER}


def inflected(word: str, code: str) -> list[tuple[str, bool]]:
    """``(form, is_number_form)`` of a folded single word: plurals, gender/size and verb forms, participles."""
    forms: list[tuple[str, bool]] = []
    if len(word) == 3 and word.isalpha() and code in PLAIN_PLURALS:
        return [(word + "s", True)] if word[-1] not in "sxz" else []  # French "cons", "culs"
    if len(word) < 4 or not word.isalpha():
        return forms
    for number, rules in ((True, NUMBER.get(code, ())), (False, DERIVED.get(code, ()))):
        for remove, add in rules:
            if remove and not word.endswith(remove):
                continue
            if not remove and add in ("s", "x") and word[-1] in "sxz":
                continue
            stem = word[: len(word) - len(remove)] if remove else word
            if len(stem) >= 3:
                forms.append((stem + add, number))
    if code == "nl" and (plural := _dutch_plural_stem(word)) is not None:
        forms += [(plural + "en", True), (plural + "e", False)]
    if word.endswith("en") and len(word) >= 6:
        stem = word[:-2]
        for prefix in PARTICIPLES.get(code, ()):
            participle = prefix + stem + "t"
            forms += [(participle + ending, False) for ending in ("", "e", "er", "es", "en")]
    return forms


_DUTCH_LONG = re.compile(r"(?<![aeiou])(aa|ee|oo|uu)([bcdfgklmnprstvz])$")
_DUTCH_SHORT = re.compile(r"(?<![aeiou])([aeiou])([bdfgklmnprt])$")


def _dutch_plural_stem(word: str) -> str | None:
    """The stem a Dutch ending ``-en``/``-e`` takes after Dutch spelling: a long vowel written double in a closed
    syllable is written single in an open one (``spleetoog`` -> ``spleetogen``, ``aap`` -> ``apen``), a
    consonant after a short vowel doubles (``klootzak`` -> ``klootzakken``, ``drol`` -> ``drollen``)."""
    if (long := _DUTCH_LONG.search(word)) is not None:
        return word[: long.start()] + long.group(1)[0] + long.group(2)
    if (short := _DUTCH_SHORT.search(word)) is not None and not word.endswith(("er", "el", "en", "em")):  # no schwa: "kankeren"
        return word + short.group(2)
    return None


#: Languages where chat spelling writes the hard ``c`` (and Spanish/Portuguese/French ``qu``, Italian ``ch``)
#: as ``k``: ``kabrón``, ``kulero``, ``koño``; Italian ``kazzo``, ``minkia``, ``kulo``; French ``enkulé``.
_HARD_C = {
    "es": re.compile(r"c(?=[aouñlr])|qu(?=[ei])"),
    "pt": re.compile(r"c(?=[aouñlr])|qu(?=[ei])"),
    "it": re.compile(r"ch(?=[ei])|c(?=[aoulrc])"),
    "fr": re.compile(r"c(?=[aou])|qu(?=[ei])"),
}
K_SPELLING = frozenset(_HARD_C)


def k_spelled(word: str, code: str) -> list[str]:
    """The chat spelling of a listed word with every hard ``c`` as ``k`` (Spanish, Portuguese, Italian, French)."""
    if code not in K_SPELLING or len(word) < 4:
        return []
    spelled = _HARD_C[code].sub("k", word)
    return [spelled] if spelled != word else []


#: Chat spellings beyond ``k`` per language, ``(pattern, written as)``: Spanish ``x`` for ``ch`` and ``b``
#: for ``v`` (the two sound alike: ``xinga``, ``berga``, ``huebón``).
_CHAT = {
    "es": ((re.compile(r"ch"), "x"), (re.compile(r"v"), "b")),
}
#: Letters written the Roman way in every language of the packs: ``v`` for ``u`` (``pvta``, ``cvlo``, ``hvre``).
_ROMAN_U = re.compile(r"u")


def chat_spelled(word: str, code: str) -> list[str]:
    """Chat spellings of a folded listed word (or phrase): :func:`k_spelled`, the language's own
    (:data:`_CHAT`), each alone, and, for single words, ``v`` for every ``u`` (Roman inscriptions)."""
    if len(word) < 4:
        return []
    forms = k_spelled(word, code)
    for pattern, written in _CHAT.get(code, ()):
        spelled = pattern.sub(written, word)
        if spelled != word:
            forms.append(spelled)
    if " " not in word and "u" in word:
        forms.append(_ROMAN_U.sub("v", word))
    return forms
