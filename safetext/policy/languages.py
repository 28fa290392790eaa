"""Word lists of languages beyond English: one :class:`LanguagePack` per language a policy lists in ``languages:``.

A pack holds, for one language, the LDNOOBW list (shipped verbatim as ``lists/ldnoobw_<code>.json``
from the npm package ``naughty-words`` 1.2.0, CC-BY-4.0) minus the entries whose everyday meaning
dominates in image prompts (``ldnoobw_context_<code>.txt``: Italian *pesce*, Portuguese *cerveja*),
reviewed additions (``extra_<code>.txt``), stems matched inside glued words (``stems_<code>.txt``),
the language's allow-list (``allow_<code>.txt``) and its benign replacement words
(``replacements_<code>.txt``).

Matching uses the policy's normalization unchanged (accents, ``ß``, ``ĳ``, ``ø``, ``ı``, ``ł`` are
folded to ASCII by the confusables step, from ``anyascii``, for the list and the prompt alike, so
``Scheiße``/``scheisse`` and ``coño``/``cono`` meet) and the lexicon's exact, obfuscation-aware
look-up (leetspeak, separators, repeats, wildcards, homoglyphs). English-only rules stay English:
no English plurals or inflections, no English sound-alike or compound matching for these lists;
a pack generates its own language's inflections instead (:data:`INFLECTIONS`), and drops a
generated form that ``wordfreq`` knows as an ordinary word of any covered language.

Cross-language false positives are settled by the prompt's language (:func:`guess_language`: each
word votes for the enabled language in which ``wordfreq`` finds it most frequent, ties to the earlier
one in ``languages``): a list
word of one language that is an ordinary word of the prompt's language (English: the English
dictionary; others: ``wordfreq`` Zipf >= :data:`MIN_ZIPF`) is not a finding, a finding inside a phrase of
the prompt language's allow-list is dropped whatever list it came from, and the English-only rules
(sound-alikes, glued compounds, the English-trained classifier) do not judge words of a non-English
prompt's language.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from safetext.errors import PolicyError
from safetext.policy.lexicon import Lexicon, TermSource, build_lexicon, normalized_forms, read_word_list
from safetext.policy.confusables import fold_char
from safetext.policy.normalize import Token, normalize_chars, tokenize
from safetext.policy.replacement import Replacer
from safetext.policy.schema import NormalizationConfig, ReplacementConfig

if TYPE_CHECKING:
    from safetext.policy.variants import VariantMatcher

#: Languages a policy can list; ``en`` is the policy's own ``lists:`` and ``backends:``.
LATIN_LANGUAGES: tuple[str, ...] = ("en", "de", "es", "fr", "pt", "it", "nl")
#: Languages that come as a shipped pack (every Latin-script language of the lists but English).
PACK_LANGUAGES: tuple[str, ...] = ("de", "es", "fr", "pt", "it", "nl")

#: Suffix rules per language: ``(ending to remove, ending to add)`` applied to single listed words
#: (plurals, gender and verb forms: ``Fotze`` -> ``Fotzen``, ``cabrón`` -> ``cabrones``, ``stronzo`` -> ``stronzi``).
INFLECTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "de": (("", "n"), ("", "en"), ("", "e"), ("", "er"), ("", "s"), ("", "t"), ("en", "t"), ("en", "e"), ("e", "en")),
    "es": (("", "s"), ("", "es"), ("o", "a"), ("o", "as"), ("a", "o"), ("a", "os")),
    "fr": (("", "s"), ("", "e"), ("", "es"), ("", "x"), ("er", "é"), ("er", "ée")),
    "pt": (("", "s"), ("", "es"), ("o", "a"), ("o", "as"), ("a", "o"), ("a", "os"), ("ão", "ões")),
    "it": (("o", "i"), ("a", "e"), ("e", "i"), ("o", "a"), ("a", "i"), ("one", "oni")),
    "nl": (("", "en"), ("", "s"), ("", "e"), ("", "je"), ("", "jes")),
}
#: Zipf frequency from which a word counts as an ordinary word of a language: generated forms that are
#: one are not matched, nor list words of another language in a prompt of that language.
MIN_ZIPF = 3.0
#: Category and rule of the packs' findings: the LDNOOBW lists mix profanity, sexual terms and insults.
PACK_CATEGORY = "profanity"


def read_json_list(path: str | Path) -> tuple[str, ...]:
    """Entries of a shipped LDNOOBW ``.json`` list (a JSON array of strings, as published).

    Raises:
        PolicyError: the file is missing or not a JSON array of strings.
    """
    target = Path(path)
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PolicyError(f"word list '{target}' does not exist; reinstall safetext") from exc
    except ValueError as exc:
        raise PolicyError(f"word list '{target}' is not a JSON array of strings: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise PolicyError(f"word list '{target}' is not a JSON array of strings")
    return tuple(item.strip() for item in data if item.strip())


def _fold(word: str, config: NormalizationConfig) -> str:
    norm = normalize_chars(word, config)
    return " ".join(token.text for token in tokenize(norm, config))


#: Zipf frequency from which a word counts as a word of its language for :func:`language_words`.
MIN_ZIPF_WORD = 3.0
#: How a finding was made by rules that know only English: sound-alikes, glued compounds, the
#: English-trained classifier. Not applied to words of another language's prompt.
ENGLISH_ONLY_RULES = frozenset({"fuzzy", "compound"})


@lru_cache(maxsize=16)
def language_zipf(code: str, config: NormalizationConfig) -> dict[str, float]:
    """Words of a language (``wordfreq`` Zipf >= :data:`MIN_ZIPF_WORD`), normalized like prompts, with their Zipf.

    Read from ``wordfreq``'s ``small`` list (the words of Zipf >= 3, with the frequencies of its large
    list; it loads in a few milliseconds where the large one takes a fifth of a second per language),
    whose buckets run from the most frequent word down in steps of 0.01 Zipf. ASCII words are taken as
    they are; the others are folded through a translation table built from
    :func:`~safetext.policy.confusables.fold_char` (a word that does not fold to plain letters takes
    the full normalization). All seven tables of the ``strict`` policy build in well under a second.
    """
    import wordfreq

    table: dict[int, str] = {}
    buckets: list[tuple[list[str], float]] = []
    for index, bucket in enumerate(wordfreq.get_frequency_list(code, wordlist="small")):
        value = 9.0 - index / 100.0  # bucket i holds the words of frequency 10^(-i/100): Zipf 9 - i/100
        if value < MIN_ZIPF_WORD:
            break
        letters = [word for word in bucket if word.isalpha()]
        joined = "\n".join(letters).lower()
        folded = joined.split("\n") if letters else []
        for i in [] if joined.isascii() else [i for i, word in enumerate(folded) if not word.isascii()]:
            word = folded[i]
            for char in set(word) - _SEEN_ASCII:
                if ord(char) not in table:
                    table[ord(char)] = fold_char(char, config.nfkc, config.invisible, config.confusables)[0]
            word = word.translate(table)
            if not (word.isascii() and word.isalpha()):
                word = _fold(letters[i], config)  # a fold that is not plain letters: the full pipeline
                if " " in word:
                    word = ""
            folded[i] = word
        buckets.append((folded, value))
    # built from the rarest bucket up, so a folded form keeps the Zipf of its most frequent spelling
    keys = itertools.chain.from_iterable(folded for folded, _ in reversed(buckets))
    values = itertools.chain.from_iterable(itertools.repeat(value, len(folded)) for folded, value in reversed(buckets))
    words = dict(zip(keys, values))
    words.pop("", None)
    return words


_SEEN_ASCII = frozenset(chr(i) for i in range(128))


def language_words(code: str, config: NormalizationConfig) -> frozenset[str]:
    """The words of :func:`language_zipf` (the guard for English-only rules in that language's prompts)."""
    return _language_words(code, config)


@lru_cache(maxsize=16)
def _language_words(code: str, config: NormalizationConfig) -> frozenset[str]:
    return frozenset(language_zipf(code, config))


def guess_language(tokens: Sequence[Token], languages: Sequence[str], config: NormalizationConfig) -> str:
    """The language of a prompt: each token votes for the enabled language where ``wordfreq`` finds it most frequent.

    Args:
        tokens: the prompt's normalized tokens.
        languages: the policy's ``languages`` (ties go to the earlier one).
        config: the policy's normalization.

    Returns:
        A language code of ``languages`` (the first one when no token is a known word).
    """
    tables = [language_zipf(code, config) for code in languages]
    votes = [0] * len(languages)
    for token in tokens:
        best, best_zipf = -1, 0.0
        for index, table in enumerate(tables):
            value = table.get(token.text, 0.0)
            if value > best_zipf:
                best, best_zipf = index, value
        if best >= 0:
            votes[best] += 1
    winner = max(range(len(languages)), key=lambda i: (votes[i], -i))
    return languages[winner]


def _inflected(word: str, code: str) -> list[str]:
    forms = []
    if len(word) < 4 or not word.isalpha():
        return forms
    for remove, add in INFLECTIONS.get(code, ()):
        if remove and not word.endswith(remove):
            continue
        stem = word[: len(word) - len(remove)] if remove else word
        forms.append(stem + add)
    return forms


#: Languages where chat spelling writes the hard ``c`` and ``qu`` as ``k`` (``kabrón``, ``kulero``, ``koño``, ``ke``).
K_SPELLING = frozenset({"es", "pt"})
_HARD_C = re.compile(r"c(?=[aouñlr])|qu(?=[ei])")


def _k_spelled(word: str, code: str) -> list[str]:
    """The chat spelling of a listed word with every hard ``c``/``qu`` as ``k`` (Spanish, Portuguese)."""
    if code not in K_SPELLING or len(word) < 4:
        return []
    spelled = _HARD_C.sub("k", word)
    return [spelled] if spelled != word else []


@dataclass(frozen=True)
class LanguagePack:
    """The compiled word lists of one language (read-only, shared between threads).

    Attributes:
        code: ISO 639-1 code (``de``).
        lexicon: list entries, additions, inflections and inside-word stems.
        allow: the language's allow-list.
        replacer: picks a benign word of this language of similar length.
        variants: readings of ambiguous characters and words split by separators (``put@``,
            ``Hu.ren.sohn``, ``pu-tain``) against the pack's lexicon; no English sound-alikes or compounds.
    """

    code: str
    lexicon: Lexicon
    allow: Lexicon
    replacer: Replacer
    variants: "VariantMatcher"


def pack_path(shipped: Path, name: str) -> Path:
    return shipped / "lists" / name


@lru_cache(maxsize=32)
def load_pack(
    code: str, config: NormalizationConfig, rule_id: str, shipped: Path, fixed_word: str | None = None, preserve_case: bool = True
) -> LanguagePack:
    """Build the :class:`LanguagePack` of ``code`` from the shipped lists.

    Args:
        code: one of :data:`PACK_LANGUAGES`.
        config: the policy's normalization.
        rule_id: the policy rule that owns the pack's findings.
        shipped: the shipped policies folder.
        fixed_word: the policy's ``replacement.word`` when its mode is ``fixed`` (else automatic
            replacement by a word of the language of similar length).
        preserve_case: the policy's ``replacement.preserve_case``.

    Raises:
        PolicyError: ``code`` has no pack, or a shipped list is missing.
    """
    if code not in PACK_LANGUAGES:
        raise PolicyError(f"no word lists for language '{code}'; available: {', '.join(LATIN_LANGUAGES)}")
    listed = read_json_list(pack_path(shipped, f"ldnoobw_{code}.json"))
    extra = read_word_list(pack_path(shipped, f"extra_{code}.txt"))
    excluded = normalized_forms(read_word_list(pack_path(shipped, f"ldnoobw_context_{code}.txt")), config)
    stems = read_word_list(pack_path(shipped, f"stems_{code}.txt"))
    frequencies = [language_zipf(other, config) for other in LATIN_LANGUAGES]
    entries = [e for e in listed + extra if _fold(e, config) not in excluded]
    known = {_fold(e, config) for e in entries}
    generated = []
    for entry in entries:
        word = entry.lower()
        for form in _inflected(word, code) + _k_spelled(word, code):
            folded = _fold(form, config)
            if folded in known or folded in excluded or any(table.get(folded, 0.0) >= MIN_ZIPF for table in frequencies):
                continue  # an ordinary word of any covered language (German "Neger" -> Dutch "negeren", "to ignore")
            known.add(folded)
            generated.append(form)
    sources = (
        TermSource(tuple(entries) + tuple(generated), PACK_CATEGORY, rule_id, f"ldnoobw_{code}.json", excluded),
        TermSource(stems, PACK_CATEGORY, rule_id, f"stems_{code}.txt", frozenset(), True),
    )
    lexicon = build_lexicon(sources, config, plurals=False, inflections=False)
    allow_terms = read_word_list(pack_path(shipped, f"allow_{code}.txt"))
    allow = build_lexicon((TermSource(allow_terms, "allow", ""),), config, plurals=False, exact_runs=True)
    words = read_word_list(pack_path(shipped, f"replacements_{code}.txt"))
    settings = ReplacementConfig(
        mode="fixed" if fixed_word else "auto", word=fixed_word, path=f"lists/replacements_{code}.txt", preserve_case=preserve_case
    )
    replacer = Replacer(settings, words)
    from safetext.policy.variants import VariantMatcher  # imported here: variants imports this module's neighbours

    return LanguagePack(code, lexicon, allow, replacer, VariantMatcher(lexicon, config, fuzzy=False, compounds=False))
