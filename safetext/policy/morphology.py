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
#: Participle prefixes of verbs (``ficken`` -> ``gefickt``, ``verfickt``; ``neuken`` -> ``geneukt``).
PARTICIPLES: dict[str, tuple[str, ...]] = {"de": ("ge", "ver"), "nl": ("ge",)}
#: Back-compatible view: every suffix rule of a language.
INFLECTIONS: dict[str, tuple[tuple[str, str], ...]] = {code: NUMBER[code] + DERIVED[code] for code in NUMBER}


def inflected(word: str, code: str) -> list[tuple[str, bool]]:
    """``(form, is_number_form)`` of a folded single word: plurals, gender/size and verb forms, participles."""
    forms: list[tuple[str, bool]] = []
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
    if word.endswith("en") and len(word) >= 6:
        stem = word[:-2]
        for prefix in PARTICIPLES.get(code, ()):
            participle = prefix + stem + "t"
            forms += [(participle + ending, False) for ending in ("", "e", "er", "es", "en")]
    return forms


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
