"""Matching beyond exact list entries: ambiguous characters, split words, sound-alikes, compounds.

The word-list backend first looks every token up exactly (:meth:`Lexicon.find`). What it leaves, this
module tries, cheapest first, against the single-word entries of the same lexicon:

1. **Readings** of chunks that hold digits or symbols: every plausible reading of each ambiguous
   character is kept (``1`` is ``i`` or ``l``, ``@`` is ``a``/``o``/``u``, ``!`` is ``i``/``l`` or a
   separator, ``|_|`` is ``u``, ``|)`` is ``d`` ...) and the chunk matches when ANY reading is an entry
   (``s1ut``, ``f!u!c!k``, ``@$$h073``, ``c|_|nt``).
   **Masked words**: letters hidden behind ``_``, ``%``, ``?``, ``*``, ``#`` or runs of ``-``/``.``,
   one letter each, that fit an entry of the same length (``p__sy``, ``f--k``, ``a__hole``).
2. **Split words**: two neighbouring tokens whose concatenation is an entry (``fu ck``, ``as s``,
   ``a-hole``), unless both are ordinary words (``pen is``).
3. **Sound-alikes**: a token that is not an English word (:mod:`safetext.policy.vocabulary`) and whose
   phonetic skeleton (:func:`skeleton`: ``c``/``k``/``q``/``x`` alike, ``z`` = ``s``, vowels alike,
   silent ``r``/``h``/``w`` after vowels dropped) equals an entry's, or is one edit from it (not in
   the first or last sound) for skeletons of five or more sounds, or the word is an entry with ``x``
   masking one letter or ``l`` standing for ``i`` (``fuxk``, ``kunt``, ``biatch``, ``shxt``, ``shlt``,
   ``niggur``). The edit distance is Levenshtein's, from ``rapidfuzz``.
4. **Compounds**: a token that is not an English word and splits into entries and English words
   (three-letter ones only when common) with at least one entry (``bigass``, ``fagmouth``,
   ``shitshit``, ``blackc0ck``), unless it also splits into English words alone (``passover``,
   ``raccoonhat``).

Step 3 also matches an entry with its vowels dropped (``wnkr``, ``mthrfcker``), a sound-alike before a
word that completes an insult (``Fock Off``, ``kok sucker``), and, for words written like names, only
what names practically never are (:meth:`VariantMatcher.sound_alike`).

English words never match by 3 or 4, so ``assess``, ``cockpit``, ``therapist``, ``sextant`` stay clean;
the policy's allow-list still drops any hit inside an allowed phrase.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Sequence

from rapidfuzz.distance import Levenshtein

from safetext.policy.confusables import WILDCARD
from safetext.policy.lexicon import Lexicon, Term, by_length_and_first
from safetext.policy.normalize import NormalizedText, Token, run_lengths
from safetext.policy.schema import NormalizationConfig
from safetext.policy.vocabulary import (
    dictionary_words, english_words, frequent_words, is_english, name_shaped_at, short_words, zipf,
)

#: A sound-alike is never a word ``wordfreq`` has seen this often (Zipf): "Phuket" 3.0, "doormat" 2.7.
MAX_FUZZY_ZIPF = 2.5
#: ... and a sound-alike one edit away from an entry has practically never been seen ("Wankel" 1.8).
MAX_EDIT_ZIPF = 1.5
#: A three-letter piece of a compound must be a common word ("big", "fat", "hat").
MIN_PIECE_ZIPF = 3.5
#: Two-letter words that glue phrases into one token ("suckmydick", "kissmyass", "gofuckurself"); other
#: two-letter pieces never count ("as" + "slicker" must not make "asslicker" clean). Never the first piece.
GLUE_WORDS = frozenset({"my", "me", "ur", "of", "on", "in", "up", "to", "it", "is", "at", "no", "so", "ya", "yo", "we"})

#: Words that complete an insult after the word before them ("Phuk Off", "Fook You", "kok sucker",
#: "Dikk Head"): a sound-alike just before one is matched even when written like a name, and up to a
#: frequency at which a bare sound-alike is taken for somebody's word (``MAX_COMPLETED_ZIPF``).
COMPLETING_WORDS = frozenset({
    "off", "you", "u", "ya", "yourself", "urself", "sucker", "suckers", "head", "heads", "face", "hole",
    "wad", "bag", "licker", "lickers",
})
MAX_COMPLETED_ZIPF = 3.5

#: A word written like a name is matched as a respelling only when ``wordfreq`` has (almost) never seen it ...
MAX_RESPELLED_NAME_ZIPF = 1.0
#: ... and only to an entry seen at least this often ("slut", "bitch", "faggot"; not "boong", "guro").
MIN_RESPELLED_ENTRY_ZIPF = 3.0

#: Scores of the matches found here (exact list hits score 1.0 / 0.9 / 0.8 in the word-list backend).
READING_SCORE = 0.9
SPLIT_SCORE = 0.9
COMPOUND_SCORE = 0.85
FUZZY_SCORE = 0.75

# Every plausible reading of a character inside a word; "" = a separator between letters.
_READINGS: dict[str, tuple[str, ...]] = {
    "1": ("i", "l"), "!": ("i", "", "l"), "|": ("l", "i", ""), "@": ("a", "o", "u"), "$": ("s",),
    "5": ("s",), "0": ("o",), "3": ("e",), "4": ("a",), "7": ("t", "l"), "+": ("t", ""), "8": ("b",),
    "6": ("b", "g"), "9": ("g",), "^": ("a", "", "e"), "#": ("h", ""), "(": ("c",), "<": ("c", ""),
    ">": ("",), "~": ("",), "¡": ("i",),
}
# A number with a unit or ordinal ("1960s", "35mm", "8k", "4th"): not a word in disguise.
_NUMBER = re.compile(r"\d[\d,.]*(?:s|st|nd|rd|th|k|m|mm|cm|km|px|p|fps|x|hp|am|pm|d|h|g|kg|lb|ft|in)?")
# Letters drawn with several symbols.
_SEQUENCES: dict[str, str] = {
    "\\/\\/": "w", "|_|": "u", "(_)": "u", "|-|": "h", "|)": "d", "[)": "d", "|<": "k", "()": "o", "\\/": "v", "/\\": "a",
    "|\\|": "n", "|3": "b",
}
_SEQUENCE_STARTS = frozenset(s[0] for s in _SEQUENCES)
_MAX_READINGS = 64
# A digit read as a letter is a guess already; a sound-alike of that reading would be a second one.
_LEET_DIGIT = re.compile(r"[0-9]")
_CHUNK_MARK = re.compile(r"[0-9@$!|^#+(<>~\\/\[¡]")
#: a whitespace-delimited chunk holding a digit or a symbol that may stand for a letter (a :data:`_CHUNK_MARK`),
#: found by one search rather than by testing every chunk of the prompt
_MARKED_RUN = re.compile(r"(?<!\S)\S*?[0-9@$!|^#+(<>~\\/\[¡]\S*")  # anchored at a chunk's start: linear
#: glued words longer than this are no real compound: their entries are found as plain substrings (linear)
_MAX_COMPOUND_CHARS = 64
#: the longest clean piece a compound split tries (longer English words are not split out)
_MAX_PIECE_CHARS = 32
_EDGE = "\"'`,.;:?!()[]{}<>“”‘’«»"
# A word with letters hidden behind mask characters: "p__sy", "f--k", "s..t", "f%ck", "sh?t", "f&ck",
# "sh💩t", "f—k". Each mask character (an emoji too) stands for one letter, a run of dashes or dots for one
# to three (:meth:`VariantMatcher.masked`). A single hyphen or dot joins words
# ("x-ray", "e.g"), so those two mask only in runs of two or more; "*" and "#" are the lexicon's
# wildcards already. A trailing mask is only "_", "*" or "#": "bit..." is an ellipsis and "what??" a
# question, not "bitchy".
_EMOJI = "\u2600-\u27bf\U0001f000-\U0001faff"
_ONE_MASK = f"[_%?&{_EMOJI}]+|[-.]{{2,}}|[—–]+|[*#]+"
# Dashes and dots drawn at any length: a run of them hides one to three letters, or as many as it has.
_DRAWN_MASKS = frozenset("-.—–")
_MASKED = re.compile(
    rf"(?<![\w*#%?&.\-—–{_EMOJI}])[a-z]+(?:(?:{_ONE_MASK})[a-z]+)+[_*#]*(?![\w*#%?&\-—–{_EMOJI}])"
    rf"|(?<![\w*#%?&.\-—–{_EMOJI}])[a-z]+[_*#]{{2,}}(?![\w*#%?&\-—–{_EMOJI}])"
)
_MASK_RUN = re.compile(_ONE_MASK)
_MASK_HINT = re.compile(rf"[a-z](?:[_%?*#&—–{_EMOJI}]|[-.]{{2}})")
#: a masked word shows at least this many of its letters (``f--k``), and is this long at most
_MIN_SHOWN = 2
_MAX_MASKED_CHARS = 16
_VOWELS = frozenset("aeiou")
#: a word with its vowels dropped keeps at least this many consonants ("btch", "pssy", "mthrfckr")
_MIN_DROPPED_CONSONANTS = 4
_VOWEL = "a"
_SKELETON_MAP = str.maketrans({"c": "k", "q": "k", "x": "k", "z": "s", "y": "a", "e": "a", "i": "a", "o": "a", "u": "a"})
_V_BETWEEN_CONSONANTS = re.compile(r"(?<=[^aeiouy])v(?=[^aeiouy])")
_SILENT_AFTER_VOWEL = re.compile(r"(?<=a)[rhw](?=[^a]|$)")


@lru_cache(maxsize=65536)
def skeleton(word: str, collapse: bool = True) -> str:
    """Phonetic skeleton of a lower-case word: sound-alike spellings share it.

    Example:
        >>> [skeleton(w) for w in ("fuck", "fuxk", "phuq", "kunt", "cunt", "biatch", "bitch")]
        ['fak', 'fak', 'fak', 'kant', 'kant', 'batkh', 'batkh']
    """
    w = word.replace("ph", "f").replace("ck", "k").replace("cc", "k")
    if len(w) >= 6 and w[-1] == "e" and w[-2] not in "aeiouy":
        w = w[:-1]  # a silent final "e" in longer words ("asshole" sounds like "asshoal")
    w = _V_BETWEEN_CONSONANTS.sub("u", w)
    w = w.translate(_SKELETON_MAP)
    w = _SILENT_AFTER_VOWEL.sub("", w)
    return run_lengths(w)[0] if collapse else w


@dataclass(frozen=True)
class VariantHit:
    """A match found here, in normalized-character coordinates.

    Attributes:
        term: the lexicon entry it matched.
        start: first normalized character.
        end: one past the last normalized character.
        mask: normalization-step bits of the characters.
        how: ``readings``, ``split``, ``fuzzy`` or ``compound``.
        reading: the letters that matched (``slut`` for ``s1ut``, ``kunt`` for a sound-alike).
        evidence: a short human-readable reason (``skeleton kant = kant``).
    """

    term: Term
    start: int
    end: int
    mask: int
    how: str
    reading: str
    evidence: str


@dataclass(frozen=True)
class VariantPlaces:
    """Where :meth:`VariantMatcher.find` reads one prompt (from :meth:`VariantMatcher.places`).

    Attributes:
        settings: the normalization switches the places were found under.
        chunks: ``(raw, start, end)`` of chunks with digits or symbols.
        masked: ``(text, start, end)`` of words with masked letters.
        triples, pairs: tokens cut apart by punctuation (three) or a short gap (two).
    """

    settings: tuple
    chunks: list
    masked: list
    triples: list
    pairs: list


class VariantMatcher:
    """Readings, split words, sound-alikes and compounds against one lexicon (read-only, thread-safe).

    Args:
        lexicon: the policy's compiled lexicon; its single-word entries (with generated plurals and
            inflections) are the targets.
        fuzzy: enable sound-alike matching.
        compounds: enable compound matching.
        elisions: a word of one or two letters before an apostrophe (French and Italian ``l'``, ``d'``,
            ``qu'``) is a word of its own, never the second half of a split word (``de l'eau``).
    """

    def __init__(
        self,
        lexicon: Lexicon,
        normalization: NormalizationConfig | None = None,
        *,
        fuzzy: bool = True,
        compounds: bool = True,
        elisions: bool = False,
    ) -> None:
        config = normalization or NormalizationConfig()
        self.fuzzy = fuzzy
        self.elisions = elisions
        self.compounds = compounds
        self._leetspeak = config.leetspeak
        self._repeats = config.repeats
        self._separators = config.separators
        self._wildcards = config.wildcards
        self._split_gaps = "-._~/" + ("*" if config.wildcards else "")
        forms: dict[str, Term] = {}
        collapsed: dict[str, list[Term]] = {}
        for term in lexicon.single_word_terms():
            if not term.form.isalpha():
                continue
            forms.setdefault(term.form, term)
            collapsed.setdefault(run_lengths(term.form)[0], []).append(term)
        self._forms = forms
        self._collapsed = {key: tuple(group) for key, group in collapsed.items()}
        self._english = english_words()
        self._dictionary = dictionary_words()
        self._short = short_words()
        skeletons: dict[str, list[Term]] = {}
        for form, term in forms.items():
            # only listed entries: a sound-alike of a generated inflection is too far a guess
            if len(form) >= 3 and form == term.base and term.sound_alikes:
                skeletons.setdefault(skeleton(form, self._repeats), []).append(term)
        self._skeletons = {key: tuple(group) for key, group in skeletons.items() if len(key) >= 3}
        deletes: dict[str, set[str]] = {}
        for key in self._skeletons:
            if len(key) >= 4:
                for i in range(1, len(key)):  # the first sound must match
                    deletes.setdefault(key[:i] + key[i + 1 :], set()).add(key)
        self._deletes = {key: tuple(sorted(group)) for key, group in deletes.items()}
        # Listed words of four letters or more with one letter (not the first) masked: "sh?t".
        masked: dict[str, Term] = {}
        for form, term in forms.items():
            if len(form) >= 4 and form == term.base:
                for i in range(1, len(form)):
                    masked.setdefault(form[:i] + "?" + form[i + 1 :], term)
        self._masked = masked
        # Every prefix of an entry (and of its collapsed key): the first half of a split word is one.
        self._prefixes = frozenset(
            key[:i] for key in itertools.chain(forms, self._collapsed) for i in range(1, len(key))
        )
        # Entries that may be a part of a compound: three letters or more.
        self._parts = frozenset(form for form in forms if len(form) >= 3)
        self._max_part = max((len(p) for p in self._parts), default=0)
        # Listed entries (and their plurals) by length, for masked words ("p__sy" is five letters).
        by_length: dict[int, list[Term]] = {}
        for form, term in forms.items():
            if len(form) >= 4 and form in (term.base, term.base + "s", term.base + "es"):
                by_length.setdefault(len(form), []).append(term)
        # commonest first: "f--k" reads "fuck" before the respelling "fack"
        self._by_length = {n: tuple(sorted(group, key=lambda t: (-zipf(t.form), t.form))) for n, group in by_length.items()}
        # ... and by length and first letter: a masked word mostly shows its first letter ("s_l_u_t")
        self._by_length_first = by_length_and_first(self._by_length)
        # Listed entries (and plurals) with vowels dropped ("btch", "pssy", "fckr", "mthrfcker").
        dropped: dict[str, Term] = {}
        for n in sorted(self._by_length):
            for term in self._by_length[n]:
                for reading in _vowels_dropped(term.form):
                    dropped.setdefault(reading, term)
        self._dropped = dropped

    # ------------------------------------------------------------------ single words
    def lookup(self, word: str) -> Term | None:
        """The entry ``word`` spells, exactly or with stretched letters (``fuuuck``)."""
        term = self._forms.get(word)
        if term is not None or not self._repeats:
            return term
        key, runs = run_lengths(word)
        for candidate in self._collapsed.get(key, ()):
            wanted = run_lengths(candidate.form)[1]
            if all(have >= need for have, need in zip(runs, wanted)) and word not in self._english:
                return candidate
        return None

    def is_clean_word(self, word: str) -> bool:
        """True for an English word that is not itself an entry."""
        return word in self._english and word not in self._forms

    def sound_alike(
        self, word: str, name_shaped: bool = False, completed: bool = False, plain: bool = True
    ) -> tuple[Term, str] | None:
        """The entry ``word`` sounds like, with the evidence, or None (English words never match).

        Args:
            word: the token's letters.
            name_shaped: the word was written like a proper name (``Abala``, ``Agía``, ``Kuz’minki``).
                Real names and places sound like entries by the thousand (``Orge``, ``Seman``, ``Zemen``,
                ``Bitche``: 2,118 of 34,384 place names before this rule), so such a word matches only an
                entry with ``x`` masking a letter or ``l`` standing for ``i``; capitalized respellings
                are matched through the lists (``Phuk``, ``Biatch``).
            plain: a name-shaped word is typed in plain ASCII letters, with no accent and no hyphen or
                apostrophe joining it to another (``Beotch``, not ``Jucás`` or ``Saint-Josse-ten-Noode``):
                then a respelling of a common entry's vowels and consonant sounds is matched
                (:meth:`_respelled`) when ``wordfreq`` has not seen it (Zipf below :data:`MAX_RESPELLED_NAME_ZIPF`).
            completed: the next word completes an insult (:data:`COMPLETING_WORDS`: ``Sloot Face``,
                ``kok sucker``): a sound-alike with the entry's very skeleton is then matched even when
                name-shaped, up to Zipf :data:`MAX_COMPLETED_ZIPF`.
        """
        if not self.fuzzy or len(word) < 3 or not word.isalpha() or is_english(word):
            return None
        frequency = zipf(word)
        if completed and frequency < MAX_COMPLETED_ZIPF:
            key = skeleton(word, self._repeats)
            found = self._skeletons.get(key) if len(key) >= 3 else None
            if found:
                term = min(found, key=lambda t: Levenshtein.distance(word, t.form))
                if not name_shaped or len(term.base) >= 4:  # "Kas Head" is a headland, not "kys"
                    return term, f"skeleton {key} = {skeleton(term.form)} before a word that completes an insult"
        if frequency >= MAX_FUZZY_ZIPF:
            return None
        if frequency < MAX_EDIT_ZIPF:
            dropped = self._dropped_vowels(word, name_shaped)
            if dropped is not None:
                return dropped
        if name_shaped:
            masked = self._masked_reading(word)
            if masked is not None or not plain or frequency >= MAX_RESPELLED_NAME_ZIPF:
                return masked
            return self._respelled(word)
        key = skeleton(word, self._repeats)
        if len(key) < 3:
            return None
        found = self._skeletons.get(key)
        if found:
            term = min(found, key=lambda t: Levenshtein.distance(word, t.form))
            return term, f"skeleton {key} = {skeleton(term.form)}"
        masked = self._masked_reading(word)
        if masked is not None:
            return masked
        if len(key) < 5 or frequency >= MAX_EDIT_ZIPF:
            return None
        candidates: set[str] = set(self._deletes.get(key, ()))
        for i in range(1, len(key)):
            shorter = key[:i] + key[i + 1 :]
            if shorter in self._skeletons and len(shorter) >= 4:
                candidates.add(shorter)
            candidates.update(self._deletes.get(shorter, ()))
        best: tuple[int, Term, str] | None = None
        for other in sorted(candidates):  # set order follows the salted str hash: sorted, ties go the same way in every process
            if other[0] != key[0] or other[-1] != key[-1] or Levenshtein.distance(key, other) > 1:
                continue  # one edit, never in the first or last sound ("gele" is not "gilf")
            for term in self._skeletons[other]:
                distance = Levenshtein.distance(word, term.form)
                if best is None or distance < best[0]:
                    best = (distance, term, other)
        if best is None:
            return None
        return best[1], f"skeleton {key} ~ {best[2]} (1 edit)"

    def _respelled(self, word: str) -> tuple[Term, str] | None:
        """A common entry respelled, for a plain word written like a name that ``wordfreq`` has not seen
        (``Beotch``, ``Faggit``, ``Dikk``).

        The word has the entry's skeleton, first and last letter and consonant sounds (:func:`_consonants`),
        and its sounds (:func:`_sounds`) are one edit from the entry's (two from six letters); the entry is
        one ``wordfreq`` sees often (Zipf :data:`MIN_RESPELLED_ENTRY_ZIPF`: the names that sound like
        entries mostly sound like rare ones, "Boeng", "Geiro", "Saaxo").
        """
        key = skeleton(word, self._repeats)
        consonants = _consonants(word)
        sounds = _sounds(word)
        edits = 1 if len(word) <= 5 else 2
        for term in self._skeletons.get(key, ()):
            form = term.form
            if (
                len(form) >= 4 and form[0] == word[0] and form[-1] == word[-1] and _consonants(form) == consonants
                and Levenshtein.distance(sounds, _sounds(form)) <= edits and zipf(form) >= MIN_RESPELLED_ENTRY_ZIPF
            ):
                return term, f"a respelling of {form!r}"
        return None

    def _dropped_vowels(self, word: str, name_shaped: bool) -> tuple[Term, str] | None:
        """An entry written without (some of) its vowels: ``btch``, ``pssy``, ``fckr``, ``mthrfcker``.

        A word with no vowel left is no name (``Btch``); one that keeps vowels must have dropped two, or
        one between two consonants from an entry of five letters or more (``rtard``, ``wankr``): a vowel
        dropped beside another is a spelling of its own (``creps``, ``hymes``).
        """
        term = self._dropped.get(word)
        if term is None:
            return None
        vowels = sum(c in _VOWELS for c in word)
        dropped = sum(c in _VOWELS for c in term.form) - vowels
        if vowels and (name_shaped or (dropped < 2 and not _between_consonants(term.form, word))):
            return None
        common = _consonant_words().get(word)
        if not vowels and common is not None and common[0] not in self._forms and common[1] > zipf(term.base):
            return None  # the short form of a commoner English word: "grps" is "groups", not "gropes"
        return term, f"{term.form!r} with vowels dropped"

    def masked(self, chunk: str) -> tuple[Term, str] | None:
        """The entry a word with masked letters spells (``p__sy``, ``f--k``, ``f—k``).

        Each mask character is one letter, except a run of dashes or dots, which a writer draws at any
        length: it stands for one to three letters or for as many as it has (``f—k``, ``a—hole``).
        """
        if len(chunk) > _MAX_MASKED_CHARS:
            return None
        pieces = _MASK_RUN.split(chunk)
        runs = _MASK_RUN.findall(chunk)
        shown = sum(len(piece) for piece in pieces)
        if shown < _MIN_SHOWN or not runs:
            return None
        widths = [[len(run)] + [w for w in (1, 2, 3) if w != len(run)] if run[0] in _DRAWN_MASKS else [len(run)] for run in runs]
        for combo in itertools.islice(itertools.product(*widths), _MAX_READINGS):
            pattern = pieces[0] + "".join("?" * width + piece for width, piece in zip(combo, pieces[1:]))
            first = pattern[0]
            candidates = self._by_length.get(len(pattern), ()) if first == "?" else self._by_length_first.get((len(pattern), first), ())
            for term in candidates:
                form = term.form
                if all(p == f or p == "?" for p, f in zip(pattern, form)):
                    return term, f"{chunk!r} masks letters of {form!r}"
        return None

    def _masked_reading(self, word: str) -> tuple[Term, str] | None:
        """``x`` as a masked letter (``shxt``, ``fxck``), ``l`` as an ``i`` (``shlt``), or the one letter of
        another script that no confusables table reads among plain letters (Cherokee ``Ꮖ`` in ``ᎠᏆᏟᏦ``)."""
        foreign = [i for i, c in enumerate(word) if not c.isascii()]
        if len(foreign) == 1 and foreign[0] > 0 and len(word) >= 4:
            i = foreign[0]
            term = self._masked.get(word[:i] + "?" + word[i + 1 :])
            if term is not None:
                return term, f"{word[i]!r} at {i} is a letter no table reads, masking one of {term.form!r}"
        for i in range(1, len(word)):
            if word[i] == "x":
                term = self._masked.get(word[:i] + "?" + word[i + 1 :])
                if term is not None:
                    return term, f"'x' at {i} masks a letter of {term.form!r}"
            elif word[i] == "l":
                term = self._forms.get(word[:i] + "i" + word[i + 1 :])
                if term is not None and term.form == term.base:
                    return term, f"'l' at {i} reads as 'i'"
        return None

    def compound(self, word: str, obfuscated: bool, name_shaped: bool = False) -> tuple[Term, str] | None:
        """The entry inside a glued word, or None.

        Args:
            word: the token's letters.
            obfuscated: the token needed leetspeak or homoglyph folding; an English word spelled that
                way (``blackc0ck``) is not exempt.
            name_shaped: the token was written like a proper name (``Bankass``, ``Castricum``,
                ``Semender``): its entries must have no dictionary sense (``fuck``, ``twat``, not
                ``ass``, ``cum``, ``semen``) and its other pieces common words of four letters or more
                (``Shitgibbon``, not ``Shitterton``).
        """
        if not self.compounds or len(word) < 5 or not word.isalpha():
            return None
        if not obfuscated and word in self._english:
            return None
        n = len(word)
        if not any(word[i:j] in self._parts for i in range(n) for j in range(i + 3, min(n, i + self._max_part) + 1)):
            return None
        if n > _MAX_COMPOUND_CHARS:
            return self._overlong(word)
        longest = max(self._max_part, _MAX_PIECE_CHARS)
        # clean[i]: word[:i] splits into English words; dirty[i]: ... into pieces with at least one entry
        # (the pieces, entries as Terms and English words as strings).
        clean = [False] * (n + 1)
        dirty: list[tuple[Term | str, ...] | None] = [None] * (n + 1)
        clean[0] = True
        for i in range(n):
            if not clean[i] and dirty[i] is None:
                continue
            for j in range(i + 1, min(n, i + longest) + 1):
                piece = word[i:j]
                if piece in self._parts:
                    before = dirty[i] if dirty[i] is not None else (tuple(word[:i].split()) if clean[i] else None)
                    if before is not None and dirty[j] is None:
                        dirty[j] = before + (self._forms[piece],)
                elif self._is_piece(piece, at_end=j == n) or (i > 0 and piece in GLUE_WORDS):
                    if clean[i]:
                        clean[j] = True
                    if dirty[i] is not None and dirty[j] is None:
                        dirty[j] = dirty[i] + (piece,)
        if dirty[n] is None or (clean[n] and not obfuscated):
            return None
        entries = [p for p in dirty[n] if isinstance(p, Term)]
        if name_shaped and (
            len(dirty[n]) < 2  # a name that is one generated form ("Kuntz") is the lexicon's to judge
            or any(self._has_dictionary_sense(t) for t in entries)
            or any(len(p) < 4 or zipf(p) < MAX_FUZZY_ZIPF for p in dirty[n] if isinstance(p, str))
        ):
            return None
        term = max(entries, key=lambda t: len(t.form))
        parts = " + ".join(p.form if isinstance(p, Term) else p for p in dirty[n])
        return term, f"compound {parts}"

    def _has_dictionary_sense(self, term: Term) -> bool:
        """The entry (or its singular) is a dictionary word: ``ass``, ``cum``, ``rapes``, ``tits``."""
        forms = (term.form, term.base, term.form[:-1] if term.form.endswith("s") else term.form)
        return any(form in self._dictionary for form in forms)

    def _overlong(self, word: str) -> tuple[Term, str] | None:
        """The longest entry (4+ letters) inside a token too long to be a word, in ``O(len * longest entry)``.

        No split into clean pieces is tried: a run of letters this long is no word a sign would show,
        and the split's dynamic programme would cost time quadratic in an attacker's token.
        """
        best: str | None = None
        for i in range(len(word)):
            for j in range(i + 4, min(len(word), i + self._max_part) + 1):
                piece = word[i:j]
                if piece in self._parts and (best is None or len(piece) > len(best)):
                    best = piece
        if best is None:
            return None
        return self._forms[best], f"{best!r} inside a {len(word)}-letter token"

    def _is_piece(self, piece: str, at_end: bool) -> bool:
        if len(piece) <= 2:
            return False  # "as" + "slicker" must not make "asslicker" clean
        if len(piece) == 3:
            # the dictionary's three-letter rarities ("nig", "ger") would split anything
            return zipf(piece) >= MIN_PIECE_ZIPF
        if piece in self._english:
            return True
        return at_end and piece.endswith("s") and piece[:-1] in self._english

    # ------------------------------------------------------------------ whole document
    def places(self, norm: NormalizedText, tokens: Sequence[Token]) -> "VariantPlaces":
        """Where :meth:`find` reads a prompt, independent of the lexicon: matchers built with the same
        normalization share them (the language packs compute them once per scan)."""
        text = norm.text
        chunks = []
        for chunk in _MARKED_RUN.finditer(text) if self._leetspeak else ():
            start, end = chunk.start(), chunk.end()
            while start < end and text[start] in _EDGE and text[start] not in "(|[<":
                start += 1
            while end > start and text[end - 1] in _EDGE and text[end - 1] not in ")|":
                end -= 1
            raw = text[start:end]
            if len(raw) < 2 or raw.isalpha() or not any(c.isalpha() or c in _READINGS for c in raw):
                continue
            if _NUMBER.fullmatch(raw):
                continue
            chunks.append((raw, start, end))
        masked = [
            (m.group(), m.start(), m.end()) for m in (_MASKED.finditer(text) if self._wildcards and _MASK_HINT.search(text) else ())
        ]
        gaps = self._split_gaps
        triples = [
            (first, second, third)
            for first, second, third in (zip(tokens, tokens[1:], tokens[2:]) if self._separators else ())
            # a word cut in three by punctuation, no spaces ("hu.ren.sohn", "mo-ther-fucker")
            if second.start - first.end == 1 and third.start - second.end == 1 and text[first.end] in gaps
            and text[second.end] in gaps and third.end - first.start <= 24
        ]
        pairs = [
            (first, second)
            for first, second in (zip(tokens, tokens[1:]) if self._separators else ())
            if second.start - first.end <= 3 and second.end - second.start <= 8
        ]
        return VariantPlaces((self._leetspeak, self._wildcards, self._separators, gaps), chunks, masked, triples, pairs)

    def find(
        self, norm: NormalizedText, tokens: Sequence[Token], taken: list[tuple[int, int]], places: "VariantPlaces | None" = None
    ) -> list[VariantHit]:
        """Matches in normalized coordinates that do not overlap ``taken`` (normalized spans).

        Args:
            norm: the normalized prompt.
            tokens: its tokens.
            taken: spans already matched (by the exact lexicon look-up); extended in place.
            places: :meth:`places` of the prompt from a matcher with the same normalization, when
                already computed.

        Returns:
            The hits, in the order found (readings, split words, then single tokens).
        """
        if places is None or places.settings != (self._leetspeak, self._wildcards, self._separators, self._split_gaps):
            places = self.places(norm, tokens)
        hits: list[VariantHit] = []
        # one flag per normalized character: a span is free when none of its characters is taken
        # (linear in the spans' lengths, where comparing with every earlier span was quadratic in findings)
        covered = bytearray(len(norm.text) + 1)
        for s, e in taken:
            covered[s:e] = b"\x01" * max(0, e - s)

        def free(start: int, end: int) -> bool:
            return covered.find(1, start, end) < 0

        def add(hit: VariantHit) -> None:
            hits.append(hit)
            taken.append((hit.start, hit.end))
            covered[hit.start : hit.end] = b"\x01" * max(0, hit.end - hit.start)

        for raw, start, end in places.chunks:
            if not free(start, end):
                continue
            hit = self._match_chunk(norm, raw, start, end)
            if hit is not None:
                add(hit)
        for group, start, end in places.masked:
            if not free(start, end):
                continue
            found = self.masked(group)
            if found is not None:
                add(VariantHit(found[0], start, end, norm.mask(start, end) | WILDCARD, "masked", group, found[1]))
        prefixes = self._prefixes
        for first, second, third in places.triples:
            if first.text not in prefixes:
                continue
            hit = self._match_split3(norm, first, second, third)
            if hit is not None and free(hit.start, hit.end):
                add(hit)
        for first, second in places.pairs:
            if first.text not in prefixes:
                continue
            hit = self._match_split(norm, first, second)
            if hit is not None and free(hit.start, hit.end):
                add(hit)
        english = self._english
        for index, token in enumerate(tokens) if (self.fuzzy or self.compounds) else ():
            word = token.text
            if word in english or len(word) < 3 or token.wildcard or not word.isalpha():
                continue  # an obfuscated English word ("blackc0ck") was read as a chunk above
            if taken and not free(token.start, token.end):
                continue
            obfuscated = norm.text[token.start : token.end] != word
            if not obfuscated and is_english(word):
                continue
            written = norm.original[slice(*norm.span(token.start, token.end))]
            flipped = None if written.isascii() else upside_down(written)
            if flipped is not None:  # upside-down text: its reading is the word, no other guess is made
                term = self.lookup(flipped)
                if term is not None:
                    add(VariantHit(term, token.start, token.end, token.mask, "readings", word, f"{written!r} read upside down: {flipped!r}"))
                continue
            name_shaped = self._name_shaped(norm, token)
            found = self.compound(word, obfuscated, name_shaped=name_shaped)
            how = "compound"
            if found is None:
                start, end = norm.span(token.start, token.end)
                if _LEET_DIGIT.search(norm.original, start, end) is None:  # "h1n1": one guess (the digit) is enough
                    following = tokens[index + 1] if index + 1 < len(tokens) else None
                    completed = (
                        following is not None and following.text in COMPLETING_WORDS
                        and 1 <= following.start - token.end <= 2 and norm.text[token.end : following.start].isspace()
                    )  # "Fock Off", not the hyphenated name "Daik-u"
                    plain = name_shaped and _plain_word(norm.original, start, end)
                    found = self.sound_alike(word, name_shaped=name_shaped, completed=completed, plain=plain)
                how = "fuzzy"
            if found is not None:
                add(VariantHit(found[0], token.start, token.end, token.mask, how, word, found[1]))
        return hits

    @staticmethod
    def _name_shaped(norm: NormalizedText, token: Token) -> bool:
        """Written like a proper name: capitalized (``Abala``) or with accented letters (``Afuá``)."""
        start, end = norm.span(token.start, token.end)
        return name_shaped_at(norm.original, start, end)

    def _match_chunk(self, norm: NormalizedText, raw: str, start: int, end: int) -> VariantHit | None:
        readings = [r for r in _readings(raw, uniform_only=len(raw) > _MAX_COMPOUND_CHARS) if len(r) >= 2 and r.isalpha()]
        mask = norm.mask(start, end)
        for reading in readings:
            term = self.lookup(reading)
            if term is not None:
                return VariantHit(term, start, end, mask, "readings", reading, f"reading {reading!r} of {raw!r}")
        for reading in readings:
            found = self.compound(reading, obfuscated=True)
            if found is not None:
                evidence = f"reading {reading!r} of {raw!r}; {found[1]}"
                return VariantHit(found[0], start, end, mask, "readings", reading, evidence)
        return None

    def _match_split(self, norm: NormalizedText, first: Token, second: Token) -> VariantHit | None:
        a, b = first.text, second.text
        if not (a.isalpha() and b.isalpha()) or len(a) + len(b) < 3:
            return None
        gap = norm.text[first.end : second.start]
        if not gap or any(c.isalnum() for c in gap):
            return None
        if gap.strip(" ") and gap.strip(" ") not in self._split_gaps:
            return None
        term = self.lookup(a + b)
        if term is None:
            return None
        if " " in gap and self._word_alone(a) and self._word_alone(b):
            return None  # "pen is": two words, not one split
        if self.elisions and " " in gap and len(b) <= 2 and norm.text[second.end : second.end + 1] in _APOSTROPHES:
            return None  # an elided article: French "de l'eau" is no "del", Italian "su l'"
        evidence = f"{a!r} + {b!r} = {a + b!r}"
        return VariantHit(term, first.start, second.end, first.mask | second.mask, "split", a + b, evidence)

    def _match_split3(self, norm: NormalizedText, first: Token, second: Token, third: Token) -> VariantHit | None:
        pieces = (first.text, second.text, third.text)
        if not all(piece.isalpha() for piece in pieces):
            return None
        for left, right in ((first, second), (second, third)):
            gap = norm.text[left.end : right.start]
            if not gap or gap not in self._split_gaps:
                return None
        joined = "".join(pieces)
        term = self.lookup(joined)
        if term is None:
            return None
        evidence = " + ".join(repr(piece) for piece in pieces) + f" = {joined!r}"
        return VariantHit(term, first.start, third.end, first.mask | second.mask | third.mask, "split", joined, evidence)

    def _word_alone(self, word: str) -> bool:
        if len(word) <= 2:
            return word in self._short
        return word in self._forms or (self.is_clean_word(word) and zipf(word) >= 3.0)


_APOSTROPHES = frozenset("'\u2019\u02bc`")
# Letters of upside-down text that Unicode names by another letter (the rest are "TURNED x"), and the
# plain letters that read as another when turned (``p`` is an upside-down ``d``).
_FLIPPED = {"ɔ": "c", "ɟ": "f", "ƃ": "g", "ɾ": "j", "ʃ": "l", "p": "d", "d": "p", "b": "q", "q": "b", "n": "u", "u": "n"}


def upside_down(raw: str) -> str | None:
    """``raw`` read turned half a circle (``ʞɔnɟ`` -> ``fuck``), or None when it holds no turned letter.

    Upside-down text is written right to left with each letter turned: ``LATIN SMALL LETTER TURNED K``
    is a ``k``, the open o an upside-down ``c``. A word counts as upside-down only with two turned
    letters or more, so an IPA transcription with one open o is not read backwards.
    """
    letters = []
    turned = 0
    for char in reversed(raw):
        name = unicodedata.name(char, "")
        if name.startswith("LATIN SMALL LETTER TURNED ") and len(name) == 27:
            letters.append(name[-1].lower())
            turned += 1
        elif char in _FLIPPED and not char.isascii():
            letters.append(_FLIPPED[char])
            turned += 1
        elif char.isascii() and char.isalpha():
            letters.append(_FLIPPED.get(char.lower(), char.lower()))
        else:
            return None
    return "".join(letters) if turned >= 2 else None


@lru_cache(maxsize=1)
def _consonant_words() -> dict[str, tuple[str, float]]:
    """``{consonants: (word, Zipf)}``: the commonest English word (Zipf 3 or more) with those consonants
    alone (``grps`` -> ``groups``)."""
    found: dict[str, tuple[str, float]] = {}
    for word, frequency in frequent_words(3.0).items():
        key = "".join(c for c in word if c not in _VOWELS)
        if len(key) >= _MIN_DROPPED_CONSONANTS and frequency > found.get(key, ("", 0.0))[1]:
            found[key] = (word, frequency)
    return found


def _plain_word(text: str, start: int, end: int) -> bool:
    """The whitespace-delimited word around ``text[start:end]``, edge punctuation off, is ASCII letters only."""
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    word = text[start:end].strip(_EDGE + "„")
    return word.isascii() and word.isalpha()


_CONSONANT_SOUNDS = str.maketrans({"c": "k", "q": "k", "z": "s"})


def _sounds(word: str) -> str:
    """A word's letters with consonants that sound alike written alike, doubled letters once (``puzzy`` -> ``pusy``)."""
    return run_lengths(word.replace("ph", "f").replace("ck", "k").translate(_CONSONANT_SOUNDS))[0]


def _consonants(word: str) -> str:
    """The consonant sounds of a word as spelled (``faggot`` -> ``fgt``, ``beotch`` -> ``btkh``, ``Dikk`` -> ``dk``)."""
    return run_lengths("".join(c for c in _sounds(word) if c not in "aeiouy"))[0]


def _between_consonants(form: str, word: str) -> bool:
    """``word`` is ``form`` (five letters or more) less one vowel that stood between two consonants."""
    if len(form) < 5 or len(word) != len(form) - 1:
        return False
    i = next((k for k in range(len(word)) if word[k] != form[k]), len(word))
    return 0 < i < len(form) - 1 and form[i - 1] not in "aeiouy" and form[i + 1] not in "aeiouy"


def _vowels_dropped(form: str) -> Iterator[str]:
    """``form`` with two or more of its vowels (never the first letter) dropped, or with all of them,
    when at least :data:`_MIN_DROPPED_CONSONANTS` consonants remain (``bitch`` -> ``btch``)."""
    positions = [i for i, c in enumerate(form) if c in _VOWELS and i > 0]
    if len(form) - len(positions) < _MIN_DROPPED_CONSONANTS or not positions or len(positions) > 6:
        return
    for count in range(1, len(positions) + 1):
        for drop in itertools.combinations(positions, count):
            yield "".join(c for i, c in enumerate(form) if i not in drop)


def _readings(raw: str, uniform_only: bool = False) -> Iterator[str]:
    """Readings of a chunk: each ambiguous character's options (uniform choices first), at most 64.

    ``uniform_only``: only the readings that take the same option for every character (long chunks,
    where each reading costs time linear in the chunk).
    """
    options: list[tuple[str, ...]] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        sequence = next((seq for seq in _SEQUENCES if raw.startswith(seq, i)), None) if char in _SEQUENCE_STARTS else None
        if sequence is not None:
            options.append((_SEQUENCES[sequence],))
            i += len(sequence)
            continue
        if char.isalpha():
            options.append((char,))
        elif char in _READINGS:
            options.append(_READINGS[char])
        else:
            return  # a character with no letter reading: not a word
        i += 1
    seen: set[str] = set()
    width = max(len(o) for o in options) if options else 0
    for k in range(width):
        reading = "".join(o[min(k, len(o) - 1)] for o in options)
        if reading not in seen:
            seen.add(reading)
            yield reading
    if uniform_only:
        return
    for combo in itertools.islice(itertools.product(*options), _MAX_READINGS):
        reading = "".join(combo)
        if reading not in seen:
            seen.add(reading)
            yield reading
