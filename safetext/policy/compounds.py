"""Glued words of the language packs: a list word glued to a word of the language (``Drecksfotze``, ``kutwijf``).

German and Dutch write compounds as one word, and insults are built the same way (``Drecks-``,
``Scheiß-``, ``kut-``, ``-lijer``); Spanish, Portuguese and Italian glue verb and noun (``comemierda``,
``lameculos``). No list can hold them all, so :class:`CompoundFinder` splits a token that no covered
language knows as an established word into a list word and a word of the language.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

from safetext.policy.languages import MIN_ZIPF
from safetext.policy.lexicon import Match, Term
from safetext.policy.normalize import Token

#: Parts of glued insults that are not list words on their own, taken only glued to a word
#: (``Drecks``-``kerl``, ``kut``-``zooi``; German and Dutch write compounds as one word). Heads join
#: any common word of the language; weak heads (ordinary words: Dutch *kanker* "cancer", *tyfus*
#: "typhoid") join only a list word or a glued-insult tail (``kankerlijer``, not ``kankeronderzoek``).
COMPOUND_HEADS: dict[str, frozenset[str]] = {
    "de": frozenset("scheiss scheis drecks huren fotzen wichs fick kack nutten schlampen".split()),
    "nl": frozenset("kut klote kloot hoeren hoere kkr kenker".split()),
}
COMPOUND_WEAK_HEADS: dict[str, frozenset[str]] = {
    "de": frozenset("sau arsch mist".split()),
    "nl": frozenset("kanker kk tering tyfus pleuris rot lul zeik".split()),
}
#: Weak heads that are diseases, cursed with in Dutch (``kankerfriet``, ``teringweer``, ``tyfusherrie``): glued
#: to any common word of the language too, when ``wordfreq`` does not know the whole token
#: (:data:`DISEASE_GLUED_ZIPF`) and the word is not one that names the disease's care or study
#: (:data:`DISEASE_TAILS`: ``kankerrisico``, ``kankersoort`` are clean though ``wordfreq`` misses them).
DISEASE_HEADS: dict[str, frozenset[str]] = {
    "nl": frozenset("kanker kk tering tyfus pleuris".split()),
}
DISEASE_TAILS: frozenset[str] = frozenset(
    "risico risicos soort soorten cel cellen patient patienten patiente onderzoek onderzoeken behandeling behandelingen "
    "zorg fonds bestrijding centrum centra afdeling preventie screening gezwel gezwellen medicijn medicijnen diagnose "
    "therapie specialist specialisten kliniek instituut stichting vereniging weefsel gevallen geval vrij verwekkend "
    "verwekkende achtig achtige vaccin uitzaaiing uitzaaiingen arts artsen dokter ziekenhuis test testen dag week "
    "wereld overleving sterfte genezing epidemie bacterie bacterien virus vaccinatie".split()
)
#: The ``wordfreq`` Zipf (the whole token, as written) from which a disease head glued to a common word is a
#: word of its own (``kankerfonds`` 1.4, ``kankerzorg`` 1.8).
DISEASE_GLUED_ZIPF = 1.0
COMPOUND_TAILS: dict[str, frozenset[str]] = {
    "de": frozenset("loch sau kerl sack stuck gesicht schwein fresse bock kopf lappen".split()),
    "nl": frozenset("lijer lijers leier leiers leijer zooi wijf wijven kop zak hoer hond jood joden mongool homo homos turk turken mof moffen".split()),
}
#: Elements that end German and Dutch place names and surnames (``Fickmühlen``, ``Wichsenstein``,
#: ``Klootwijk``, ``Kuttenhoeve``): a capitalized glued token ending in one is a name, not a glued insult.
PLACE_TAILS: dict[str, tuple[str, ...]] = {
    "de": tuple(
        "berg berge burg dorf dorff heim hausen husen ingen stein feld felde bach hof hofen muhle muhlen thal tal "
        "rode roda see wald brunn born hagen leben stedt stadt kirchen weiler reuth grun ried haus hausen furt "
        "lingen beck horst busch weg strasse gasse platz".split()
    ),
    "nl": tuple(
        "wijk hoeve berg dorp dam veen horst hoven rode dijk kerk burg broek meer hout loo huizen zand straat "
        "laan weg plein gracht kade steeg hoek veld heide beek sloot dal".split()
    ),
}
#: A word that starts a glued token past its list word and that ``wordfreq`` knows at least this well
#: keeps the token whole ("flikkeren" in "flikkerende").
CLEAN_COMPOUND_ZIPF = 3.0
#: The least ``wordfreq`` Zipf of a compound part that is not a list word (a word of the language);
#: after a glued-insult head, which is shorter and less specific than a list word, :data:`MIN_ZIPF`.
PART_ZIPF = 2.0
_LINKERS = ("", "s", "e", "n", "en", "es")
#: A list word that ends (starts) at least this many ordinary words of its language (``wordfreq`` Zipf
#: >= :data:`MIN_ZIPF`) is also a suffix (prefix) of the language: French *nique* in *technique*,
#: Dutch *tering* in *vertering*, Italian *fica* in *pianifica*, Spanish *culo* in *vehículo*. A split on it
#: alone marks a glued word only when ``wordfreq`` does not know the whole token (:attr:`Glued.limit`).
AFFIX_WORDS = 3
#: ``wordfreq`` Zipf (full list, the token as written) from which a token split into a list word and an
#: ordinary word is a word of its own, not a glued insult: writers' everyday words that hold a list word
#: (Spanish *computa*, French *cornichons*, Italian *assistette*) are this frequent, made-up insults
#: (*neukpartij* 2.1, *vuistneuken* 2.4) mostly are not. Splits with a glued-insult part
#: (:data:`COMPOUND_HEADS`, :data:`COMPOUND_TAILS`) or two list words have no limit.
ESTABLISHED_GLUED_ZIPF = 2.5
#: The limit of a split on an affix-like list word (:func:`affix_parts`): any word ``wordfreq`` knows.
AFFIX_GLUED_ZIPF = 1.5


def affix_parts(toxic: Sequence[str], zipf: dict[str, float]) -> tuple[frozenset[str], frozenset[str]]:
    """The list words of ``toxic`` that end / start at least :data:`AFFIX_WORDS` longer ordinary words of ``zipf``.

    Counted by two binary searches per list word in the language's words sorted forwards and
    backwards, so the cost is one sort of the table, not the table times the list.
    """
    words = [word for word, value in zipf.items() if value >= MIN_ZIPF]
    forwards = sorted(words)
    backwards = sorted(word[::-1] for word in words)

    known = set(words)

    def longer(ordered: list[str], key: str, part: str) -> int:
        found = bisect.bisect_left(ordered, key + "\U0010ffff") - bisect.bisect_left(ordered, key)
        return found - (1 if part in known else 0)  # the list word itself is no longer word

    suffixes = frozenset(part for part in toxic if longer(backwards, part[::-1], part) >= AFFIX_WORDS)
    prefixes = frozenset(part for part in toxic if longer(forwards, part, part) >= AFFIX_WORDS)
    return suffixes, prefixes


@dataclass(frozen=True)
class Glued:
    """A glued word found by :meth:`CompoundFinder.find`.

    Attributes:
        match: the token's match.
        limit: the ``wordfreq`` Zipf of the token as written (in the pack's language) from which it is a
            word of its own and the caller drops it: :data:`AFFIX_GLUED_ZIPF` for a split on a list word
            that is also a common suffix or prefix of the language (``pianifica``, ``vertering``),
            :data:`ESTABLISHED_GLUED_ZIPF` for a list word and an ordinary word (``computa``), ``None``
            for a split with a glued-insult part or two list words (``Drecksarbeit``, ``pijpslet``).
    """

    match: Match
    limit: float | None


@dataclass(frozen=True)
class CompoundFinder:
    """Finds glued words made of a list word and a word of the language (``Drecksfotze``, ``kutwijf``, ``comemierda``).

    A token not matched otherwise is split at every position into a head and a tail of at least three
    letters (with an optional German/Dutch linking ``s``/``e``/``n``/``en`` after the head). It is a finding
    when one part is a single-word list entry of the language (four letters or more) or a glued-insult
    part of :data:`COMPOUND_HEADS`/:data:`COMPOUND_TAILS`, and the other part is a word of the language
    (``wordfreq`` Zipf >= :data:`PART_ZIPF` after a list word, >= :data:`MIN_ZIPF` after a glued-insult
    head or before a list word) or a list entry too; unless the whole token is an established word of
    any covered language (Zipf >= :data:`CLEAN_COMPOUND_ZIPF`) or allow-listed, or a clean established
    word starts it past the head ("flikkeren" in "flikkerende").

    Attributes:
        toxic: single-word list entries of the language, folded, with their term.
        heads: glued-insult heads of the language.
        tails: glued-insult tails of the language.
        zipf: the language's ``wordfreq`` table (:func:`language_zipf`).
        established: established words of every covered language (never split).
        suffixes, prefixes: list words that are also common suffixes/prefixes (:func:`affix_parts`).
        places: place-name elements of the language (:data:`PLACE_TAILS`, :meth:`place_name`).
    """

    toxic: dict[str, Term]
    heads: frozenset[str]
    weak_heads: frozenset[str]
    tails: frozenset[str]
    zipf: dict[str, float]
    established: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    places: tuple[str, ...] = ()
    disease_heads: frozenset[str] = frozenset()

    def candidates(self, tokens: Sequence[Token]) -> list[Token]:
        """Tokens that may be glued words: 6+ letters, no established word of a covered language
        ("artículo" is no "arti" + "culo"); the same for every pack, so computed once per prompt."""
        established = self.established
        return [t for t in tokens if len(t.text) >= 6 and t.text not in established and t.text.isalpha()]

    def place_name(self, word: str, original: str) -> bool:
        """``original`` (the token as written, ``word`` folded) is capitalized like a name and ends in a
        place-name element of :data:`PLACE_TAILS` that is not itself its list word."""
        if not original[:1].isupper() or original.isupper():
            return False
        return any(word.endswith(tail) and len(word) - len(tail) >= 3 and word[-len(tail):] not in self.toxic for tail in self.places)

    def find(self, candidates: Sequence[Token], taken: Sequence[tuple[int, int]]) -> list[Glued]:
        """Glued words among ``candidates`` (:meth:`candidates`) that overlap no span of ``taken``."""
        found = []
        for token in candidates:
            word = token.text
            if word in self.toxic or any(s < token.end and token.start < e for s, e in taken):
                continue
            split = self._split(word)
            if split is not None:
                term, limit = split
                glued = Term(word, term.base, (word,), (), term.category, term.rule_id)
                found.append(Glued(Match(glued, token.start, token.end, token.mask), limit))
        return found

    def _known_prefix(self, word: str, longer_than: int) -> bool:
        """A clean established word starts ``word`` past the head ("flikkeren" in "flikkerende", "culata" in "culatello")."""
        zipf, toxic = self.zipf, self.toxic
        return any(
            zipf.get(word[:cut], 0.0) >= CLEAN_COMPOUND_ZIPF and word[:cut] not in toxic
            for cut in range(longer_than + 1, len(word))
        )

    def _split(self, word: str) -> tuple[Term, float | None] | None:
        """The term of a split of ``word`` and its :attr:`Glued.limit`."""
        toxic, zipf = self.toxic, self.zipf
        for cut in range(3, len(word) - 2):
            head, rest = word[:cut], word[cut:]
            head_term = toxic.get(head) if len(head) >= 4 else None
            weak = head in self.weak_heads
            if head_term is not None or head in self.heads or weak:
                for linker in _LINKERS if head_term is not None else ("",):
                    tail = rest[len(linker):]
                    if not rest.startswith(linker) or (len(tail) < 4 and tail not in self.tails):
                        continue
                    strong_tail = tail in toxic or tail in self.tails
                    least = PART_ZIPF if head_term is not None else MIN_ZIPF
                    if weak and not strong_tail and head in self.disease_heads and not linker:
                        term = self._any_term(head)
                        if term is not None and zipf.get(tail, 0.0) >= MIN_ZIPF and tail not in DISEASE_TAILS and not self._known_prefix(word, cut):
                            return term, DISEASE_GLUED_ZIPF
                        continue
                    if strong_tail or (not weak and zipf.get(tail, 0.0) >= least):
                        if not strong_tail and self._known_prefix(word, cut):
                            continue
                        term = head_term or toxic.get(tail) or self._any_term(head)
                        if term is None:
                            continue
                        if strong_tail or head_term is None:
                            return term, None
                        return term, AFFIX_GLUED_ZIPF if head in self.prefixes else ESTABLISHED_GLUED_ZIPF
            tail_term = toxic.get(rest) if len(rest) >= 4 else None
            if tail_term is not None:
                for linker in _LINKERS:
                    stem = head[: len(head) - len(linker)] if linker else head
                    if linker and not head.endswith(linker) or len(stem) < 3:
                        continue
                    if stem in self.heads or stem in self.weak_heads or zipf.get(stem, 0.0) >= MIN_ZIPF:
                        if stem in self.heads or stem in toxic:
                            return tail_term, None
                        return tail_term, AFFIX_GLUED_ZIPF if rest in self.suffixes else ESTABLISHED_GLUED_ZIPF
        return None

    def _any_term(self, part: str) -> Term | None:
        sample = next(iter(self.toxic.values()), None)
        if sample is None:
            return None
        return Term(part, part, (part,), (), sample.category, sample.rule_id)
