"""Word lists compiled for whole-word, evasion-aware matching.

A :class:`Lexicon` holds terms (single words or phrases) normalized with the SAME pipeline as the
prompts, so ``2g1c`` in a list and ``2g1c`` in a prompt meet in the middle whatever steps are on.
Matching is token-exact: a term matches whole words only, which is why ``Scunthorpe``, ``cockpit``
and ``therapist`` never hit ``cunt``, ``cock`` or ``rapist``. Repeated letters are compared as run
lengths (``fuuuck`` has at least the runs of ``fuck``; ``niger`` lacks the double ``g`` of the slur).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from safetext.errors import PolicyError
from safetext.policy.confusables import REPEATS
from safetext.policy.normalize import NormalizedText, Token, normalize_chars, run_lengths, tokenize
from safetext.policy.schema import NormalizationConfig
from safetext.policy.vocabulary import dictionary_words, english_words, name_shaped_at, zipf

_PLURAL_ES_ENDINGS = ("s", "x", "z", "ch", "sh")
#: A word with one letter doubled that ``wordfreq`` sees this often is a spelling of its own ("bonner"
#: 3.0), not an entry stretched ("fukk" 1.5, "shitt" 1.4); likewise an inflection of a dictionary word.
MAX_DOUBLED_ZIPF = 2.5
#: A "z" plural written like a name is matched unless ``wordfreq`` sees it this often ("Kuntz" 2.1, "Twatz" 0).
MAX_Z_PLURAL_NAME_ZIPF = 1.5
#: An entry this common with no dictionary sense has no clean sense a name could carry.
MIN_ONLY_PROFANE_ZIPF = 3.0
_VOWELS = "aeiouy"
# What may stand between a one-letter word of a phrase and its neighbour: spaces, apostrophes, hyphens, dots.
_WORD_GAP = " '’-."


@dataclass(frozen=True)
class Term:
    """One entry of a lexicon.

    Attributes:
        form: normalized words joined by spaces, as matched (``"fucks"``).
        base: the entry as listed, normalized (``"fuck"`` for the generated plural ``"fucks"``).
        keys: per word, the lookup key (letters with repeats collapsed when ``repeats`` is on).
        runs: per word, the run lengths the prompt word must at least have.
        category: rule category (profanity, sexual, slur, insult, hate, custom, allow).
        rule_id: id of the policy rule that owns the term ("" for allow-lists).
        sound_alikes: words that sound like the term match it (off for initialisms: ``FUBU`` is not ``fubar``).
    """

    form: str
    base: str
    keys: tuple[str, ...]
    runs: tuple[tuple[int, ...], ...]
    category: str
    rule_id: str
    sound_alikes: bool = True


@dataclass(frozen=True)
class Match:
    """A lexicon hit in normalized-character coordinates (``start``/``end`` index ``NormalizedText.text``)."""

    term: Term
    start: int
    end: int
    mask: int
    wildcard: bool = False


@dataclass(frozen=True)
class TermSource:
    """Terms of one category handed to :func:`build_lexicon` (from a list file or inline)."""

    terms: tuple[str, ...]
    category: str
    rule_id: str
    origin: str = "inline"
    exclude: frozenset[str] = field(default_factory=frozenset)
    inside_words: bool = False
    sound_alikes: bool = True


@lru_cache(maxsize=64)
def _read_list_cached(path: str, mtime_ns: int) -> tuple[str, ...]:
    del mtime_ns  # part of the cache key only: an edited file is read again
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                entries.append(entry)
    return tuple(entries)


def read_word_list(path: str | Path) -> tuple[str, ...]:
    """Entries of a list file: one per line, blank lines and ``#`` comments skipped.

    Args:
        path: the list file (UTF-8).

    Raises:
        PolicyError: the file is missing or not UTF-8.
    """
    target = Path(path)
    try:
        return _read_list_cached(str(target.resolve()), target.stat().st_mtime_ns)
    except FileNotFoundError as exc:
        raise PolicyError(f"word list '{target}' does not exist; fix the path (relative to the policy file)") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"word list '{target}' is not UTF-8 text ({exc.reason}); re-save it as UTF-8") from exc


def by_length_and_first(by_length: Mapping[int, Sequence[Term]]) -> dict[tuple[int, str], tuple[Term, ...]]:
    """``by_length`` (terms per form length) regrouped by length and first letter, each group in its order:
    the candidates for a masked word that shows its first letter."""
    grouped: dict[tuple[int, str], list[Term]] = {}
    for length, group in by_length.items():
        for term in group:
            grouped.setdefault((length, term.form[0]), []).append(term)
    return {key: tuple(group) for key, group in grouped.items()}


def _word_keys(tokens: Sequence[Token], repeats: bool) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    keys, runs = [], []
    for token in tokens:
        if repeats:
            key, counts = run_lengths(token.text)
        else:
            key, counts = token.text, ()
        keys.append(key)
        runs.append(counts)
    return tuple(keys), tuple(runs)


def _plural_forms(word: str) -> tuple[str, ...]:
    if len(word) < 3 or not word.isalpha():
        return ()
    if word.endswith(_PLURAL_ES_ENDINGS):
        return (word + "es",)
    if word.endswith("y") and word[-2] not in _VOWELS:
        return (word + "s", word[:-1] + "ies")  # pussy -> pussies (and the common misspelling)
    return (word + "s",)


def inflected_forms(word: str) -> tuple[str, ...]:
    """-er, -ers, -ing, -in, -ed, -y and -z forms of a listed word (``shag`` -> ``shagger``, ``hoe`` -> ``hoez``).

    A final consonant after a single vowel is doubled (``cum`` -> ``cummed``); a final ``e`` is dropped
    before a vowel (``whore`` -> ``whoring``). Forms that are ordinary English words are removed by
    :func:`build_lexicon`, not here.
    """
    if len(word) < 3 or not word.isalpha():
        return ()
    if word.endswith("e"):
        stem = word[:-1]
        return (word + "r", word + "rs", stem + "ing", stem + "in", word + "d", stem + "y", word + "z")
    if word.endswith("y"):
        return ()
    double = word[-1] not in _VOWELS + "wxh" and word[-2] in _VOWELS and word[-3] not in _VOWELS
    stem = word + word[-1] if double else word
    plural_z = word + ("ez" if word.endswith(_PLURAL_ES_ENDINGS) else "z")
    return (stem + "er", stem + "ers", stem + "ing", stem + "in", stem + "ed", stem + "y", plural_z)


def _is_plural(term: Term) -> bool:
    return term.form.rsplit(" ", 1)[-1] in _plural_forms(term.base.rsplit(" ", 1)[-1])


def _inside_spelled_run(tokens: Sequence[Token], start: int, end: int, term: Term) -> bool:
    """A phrase that starts or ends with a one-letter word has another one-letter word beside it."""
    before = start > 0 and len(term.keys[0]) == 1 and len(tokens[start - 1].text) == 1
    after = end < len(tokens) and len(term.keys[-1]) == 1 and len(tokens[end].text) == 1
    return before or after


def _only_profane(base: str) -> bool:
    """A common entry (Zipf >= 3) with no dictionary sense (``fuck``, ``shit``, ``cunt``): no name is made
    of it, where ``arse``, ``ass`` or ``bitch`` have a clean sense names carry."""
    return base not in dictionary_words() and zipf(base) >= MIN_ONLY_PROFANE_ZIPF


def _is_z_plural(term: Term) -> bool:
    """A generated "z" plural (``twatz``, ``hoez``, ``bitchez``): no name is spelled that way."""
    return " " not in term.form and term.form in (term.base + "z", term.base + "ez")


def _doubled_last(term: Term, runs: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    """Only the last letter of an entry of four letters or more is doubled (``Slutt``, ``Shitt``, ``Whorr``):
    a stretched ending, where names double a letter inside (``Bonner``, ``Losser``)."""
    return len(term.base) >= 4 and runs[:-1] == wanted[:-1] and runs[-1] == wanted[-1] + 1


def _name_shaped(norm: NormalizedText, token: Token) -> bool:
    """The word the token comes from looks like a proper name as typed (:func:`~safetext.policy.vocabulary.name_shaped_at`)."""
    start, end = norm.span(token.start, token.end)
    return name_shaped_at(norm.original, start, end)


def _unambiguous_inflections(word: str) -> list[str]:
    """The :func:`inflected_forms` of ``word`` that no ordinary English word spells."""
    clean = english_words()
    common = word in dictionary_words()  # "jerk" -> "jerked", "creep" -> "creeped": the clean verb's forms
    return [
        f for f in inflected_forms(word)
        if f not in clean and not (f.endswith("s") and f[:-1] in clean) and not (common and zipf(f) >= MAX_DOUBLED_ZIPF)
    ]


class Lexicon:
    """Terms indexed for matching token sequences.

    Build with :func:`build_lexicon`; read-only afterwards (safe to share between threads).
    """

    def __init__(
        self,
        terms: Iterable[Term],
        symbols: Iterable[Term],
        repeats: bool,
        exact_runs: bool = False,
        stems: Iterable[Term] = (),
        names: bool = False,
    ) -> None:
        by_first: dict[str, list[Term]] = {}
        by_length: dict[int, list[Term]] = {}
        for term in terms:
            by_first.setdefault(term.keys[0], []).append(term)
            if len(term.keys) == 1:
                by_length.setdefault(len(term.form), []).append(term)
        self._by_first = {key: tuple(sorted(group, key=lambda t: -len(t.keys))) for key, group in by_first.items()}
        self._by_length = {length: tuple(group) for length, group in by_length.items()}
        self._by_length_first = by_length_and_first(self._by_length)  # wildcard words mostly show their first letter ("f*ck")
        self._symbols = tuple(symbols)
        self._stems = tuple(stems)
        self._repeats = repeats
        self._exact_runs = exact_runs
        self._names = names
        self.size = sum(len(group) for group in self._by_first.values()) + len(self._symbols) + len(self._stems)

    def single_word_terms(self) -> tuple[Term, ...]:
        """Every one-word entry (listed, plural or inflected), for the variant matcher."""
        return tuple(term for group in self._by_first.values() for term in group if len(term.keys) == 1)

    def token_keys(self, tokens: Sequence[Token]) -> list[tuple[str, tuple[int, ...]]]:
        """Lookup key and run lengths of each token (computed once per scan, shared by lexicons)."""
        if self._repeats:
            return [run_lengths(token.text) for token in tokens]
        return [(token.text, ()) for token in tokens]

    def find(
        self,
        norm: NormalizedText,
        tokens: Sequence[Token],
        keys: Sequence[tuple[str, tuple[int, ...]]] | None = None,
    ) -> list[Match]:
        """Leftmost-longest, non-overlapping matches of the lexicon in ``tokens``.

        Args:
            norm: the normalized prompt the tokens come from.
            tokens: output of :func:`~safetext.policy.normalize.tokenize`.
            keys: :meth:`token_keys` of ``tokens`` when already computed.

        Returns:
            Matches in text order.
        """
        keys = self.token_keys(tokens) if keys is None else keys
        matches: list[Match] = []
        count = len(tokens)
        i = 0
        while i < count:
            token = tokens[i]
            if token.wildcard:
                # allow-lists (exact runs) never guess: "p*ss" must not be allowed as "pass"
                hit = None if self._exact_runs else self._match_wildcard(token)
                found = None if hit is None else (hit, i + 1)
            else:
                found = self._match_at(tokens, keys, i, norm)
            if found is None:
                stem = self._match_stem(token) if self._stems else None
                if stem is not None and not (self._names and _name_shaped(norm, token)):  # the shape only of a hit
                    matches.append(stem)
                i += 1
                continue
            matches.append(found[0])
            i = found[1]
        for term in self._symbols:
            at = norm.text.find(term.form)
            while at >= 0:
                matches.append(Match(term, at, at + len(term.form), norm.mask(at, at + len(term.form))))
                at = norm.text.find(term.form, at + len(term.form))
        if self._symbols:
            matches.sort(key=lambda m: m.start)
        return matches

    def _match_at(
        self, tokens: Sequence[Token], keys: Sequence[tuple[str, tuple[int, ...]]], i: int, norm: NormalizedText
    ) -> tuple[Match, int] | None:
        candidates = self._by_first.get(keys[i][0])
        if not candidates:
            return None
        for term in candidates:
            size = len(term.keys)
            if i + size > len(tokens):
                continue
            mask = 0
            for k in range(size):
                token = tokens[i + k]
                key, runs = keys[i + k]
                if token.wildcard or key != term.keys[k]:
                    break
                if (
                    k and not self._exact_runs and (len(term.keys[k]) == 1 or len(term.keys[k - 1]) == 1)
                    and norm.text[tokens[i + k - 1].end : token.start].strip(_WORD_GAP)
                ):
                    break  # a one-letter word of a phrase stands apart ("f u", "bite d'amarrage"), not "f^u^c^k"
                if (
                    size == 1 and self._names and term.form != term.base and not _is_plural(term)
                    and not (_is_z_plural(term) and zipf(token.text) < MAX_Z_PLURAL_NAME_ZIPF)
                    and not _only_profane(term.base) and _name_shaped(norm, token)
                ):
                    break  # a generated inflection never matches a name: "Arsin", "Assin"; a rare "z" plural
                    # ("Twatz") and an inflection of a common entry with no clean sense ("Cunty") do
                if self._repeats:
                    wanted = term.runs[k]
                    if runs != wanted:
                        if self._exact_runs or any(have < need for have, need in zip(runs, wanted)):
                            break
                        if token.text in english_words():
                            break  # a doubled letter of a real word is spelling, not stretching: "rapping"
                        if all(have - need <= 1 for have, need in zip(runs, wanted)) and (
                            zipf(token.text) >= MAX_DOUBLED_ZIPF
                            or (self._names and not _doubled_last(term, runs, wanted) and _name_shaped(norm, token))
                        ):
                            break  # ... and of a name: "Bonner", "Losser"; "Fuuuck" and "Slutt" are still stretched
                        mask |= REPEATS
                mask |= token.mask
            else:
                if size > 1 and _inside_spelled_run(tokens, i, i + size, term):
                    continue  # "f u" of a word spelled out letter by letter ("f u c k" with separators off)
                return Match(term, tokens[i].start, tokens[i + size - 1].end, mask), i + size
        return None

    def _match_stem(self, token: Token) -> Match | None:
        word = token.text
        for term in self._stems:
            if term.form in word:
                found = Term(word, term.form, (word,), (), term.category, term.rule_id)
                return Match(found, token.start, token.end, token.mask)
        return None

    def _match_wildcard(self, token: Token) -> Match | None:
        word = token.text
        candidates = self._by_length.get(len(word), ()) if word[:1] == "*" else self._by_length_first.get((len(word), word[:1]), ())
        for term in candidates:
            form = term.form
            if all(w == f or (w == "*" and f.isalpha()) for w, f in zip(word, form)):
                return Match(term, token.start, token.end, token.mask, wildcard=True)
        return self._match_wildcard_stem(token)

    def _match_wildcard_stem(self, token: Token) -> Match | None:
        """A masked word that holds an inside-word stem with a mask over one of its letters (``sl*tty``,
        ``b*tching``): the stem's letters around the mask are shown and the rest of the word is letters."""
        word = token.text
        for term in self._stems:
            stem = term.form
            for at in range(len(word) - len(stem) + 1):
                piece = word[at : at + len(stem)]
                if "*" in piece and all(w == f or (w == "*" and f.isalpha()) for w, f in zip(piece, stem)) and (
                    (word[:at] + word[at + len(stem) :]).isalpha() or not (word[:at] + word[at + len(stem) :])
                ):
                    filled = word[:at] + stem + word[at + len(stem) :]
                    found = Term(filled, term.form, (word,), (), term.category, term.rule_id)
                    return Match(found, token.start, token.end, token.mask, wildcard=True)
        return None

    def __len__(self) -> int:
        return self.size


def build_lexicon(
    sources: Sequence[TermSource],
    config: NormalizationConfig,
    *,
    plurals: bool = True,
    exact_runs: bool = False,
    inflections: bool = False,
    names: bool = False,
) -> Lexicon:
    """Normalize and index terms.

    Args:
        sources: term groups in priority order: when a term is in several groups the LATER one decides
            its category and rule.
        config: the policy's normalization (terms go through the same steps as prompts).
        plurals: also match the plural of single words and of the last word of phrases
            (``bitch`` -> ``bitches``) unless the plural is listed itself.
        exact_runs: letter runs must match exactly (allow-lists: ``Niger`` must not allow ``nigger``).
        inflections: also match the :func:`inflected_forms` of single listed words, except forms that
            are ordinary English words (:func:`~safetext.policy.vocabulary.english_words`: ``cocky``,
            ``spicy``, ``hoeing`` stay clean), the plurals of such forms (``shatters``, ``creepers``),
            and the inflections of an entry with a dictionary sense that ``wordfreq`` sees often
            (``jerk``: ``jerked``, ``prick``: ``pricked``; ``twat``: ``twatting`` stays).
        names: a word written like a name (:func:`~safetext.policy.vocabulary.name_shaped_at`:
            ``Slutsk``, ``Losser``, ``Arsin``) matches only listed entries and their plurals: no
            inside-word stem, one-letter stretch or generated inflection. Off for languages that
            capitalize every noun.

    Returns:
        The compiled :class:`Lexicon`.
    """
    listed: dict[tuple[str, ...], Term] = {}
    generated: dict[tuple[str, ...], Term] = {}
    symbols: dict[str, Term] = {}
    stems: dict[str, Term] = {}
    for source in sources:
        for entry in source.terms:
            if source.inside_words:
                stem = "".join(t.text for t in tokenize(normalize_chars(entry, config), config))
                if stem and stem not in source.exclude:
                    stems[stem] = Term(stem, stem, (stem,), (), source.category, source.rule_id)
                continue
            norm = normalize_chars(entry, config)
            tokens = tokenize(norm, config)
            if not tokens:
                form = norm.text.strip()
                if form and form not in source.exclude:
                    symbols[form] = Term(form, form, (), (), source.category, source.rule_id)
                continue
            words = tuple(token.text for token in tokens)
            form = " ".join(words)
            if form in source.exclude or any(token.wildcard for token in tokens):
                continue
            keys, runs = _word_keys(tokens, config.repeats)
            listed[words] = Term(form, form, keys, runs, source.category, source.rule_id, source.sound_alikes)
            variants = [words[:-1] + (plural,) for plural in _plural_forms(words[-1])] if plurals else []
            if inflections and len(words) == 1:
                clean = english_words()
                variants += [(f,) for f in _unambiguous_inflections(words[0])]
            for variant in variants:
                p_keys, p_runs = _word_keys(tokenize(normalize_chars(" ".join(variant), config), config), config.repeats)
                generated[variant] = Term(" ".join(variant), form, p_keys, p_runs, source.category, source.rule_id, source.sound_alikes)
    merged = {**{k: v for k, v in generated.items() if k not in listed}, **listed}
    return Lexicon(merged.values(), symbols.values(), config.repeats, exact_runs, stems.values(), names)


def normalized_forms(entries: Iterable[str], config: NormalizationConfig) -> frozenset[str]:
    """Normalized forms of list entries (used for ``exclude`` lists)."""
    forms = set()
    for entry in entries:
        norm = normalize_chars(entry, config)
        tokens = tokenize(norm, config)
        forms.add(" ".join(t.text for t in tokens) if tokens else norm.text.strip())
    return frozenset(forms)
