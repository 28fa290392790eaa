"""Word lists of languages beyond English: one :class:`LanguagePack` per language a policy lists in ``languages:``.

A pack holds, for one language, the LDNOOBW list (shipped verbatim as ``lists/ldnoobw_<code>.json``
from the npm package ``naughty-words`` 1.2.0, CC-BY-4.0) minus the entries whose everyday meaning
dominates in image prompts (``ldnoobw_context_<code>.txt``: Italian *pesce*, Portuguese *cerveja*),
reviewed additions by category (``extra_<code>.txt``, sections read by :func:`read_sections`),
stems matched inside words (``stems_<code>.txt``), the language's allow-list (``allow_<code>.txt``),
its scene-sense words (``scene_<code>.txt``: findings only as text to render) and its benign
replacement words (``replacements_<code>.txt``).

Matching uses the policy's normalization unchanged (accents, ``ß``, ``ĳ``, ``ø``, ``ı``, ``ł`` are
folded to ASCII by the confusables step, from ``anyascii``, for the list and the prompt alike, so
``Scheiße``/``scheisse`` and ``coño``/``cono`` meet) and the lexicon's exact, obfuscation-aware
look-up (leetspeak, separators, repeats, wildcards, homoglyphs). English-only rules stay English:
no English plurals, inflections, sound-alikes or compounds for these lists; a pack generates its own
language's forms instead (:mod:`safetext.policy.morphology`), minus those that are other words, and
finds glued words of its language (:mod:`safetext.policy.compounds`).

Cross-language false positives are settled by the prompt's language (:func:`guess_language`): a list
word of one language that is an ordinary word of the prompt's language (English: the English
dictionary; others: ``wordfreq`` Zipf >= :data:`MIN_ZIPF`) is not a finding, a finding inside a phrase of
the prompt language's allow-list is dropped whatever list it came from, and the English-only rules
(sound-alikes, glued compounds, the English-trained classifier) do not judge words of a non-English
prompt's language. A word of text to render is judged in the language of the sign's own words where they
tell it, else of the prompt's other words (``Policy._reading_language``).
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
from safetext.policy.confusables import fold_char
from safetext.policy.lexicon import Lexicon, Term, TermSource, build_lexicon, normalized_forms, read_word_list
from safetext.policy.morphology import chat_spelled, inflected
from safetext.policy.normalize import Token, normalize_chars, tokenize
from safetext.policy.replacement import Replacer
from safetext.policy.schema import NormalizationConfig, ReplacementConfig

if TYPE_CHECKING:
    from safetext.policy.compounds import CompoundFinder
    from safetext.policy.variants import VariantMatcher

#: Languages a policy can list; ``en`` is the policy's own ``lists:`` and ``backends:``.
LATIN_LANGUAGES: tuple[str, ...] = ("en", "de", "es", "fr", "pt", "it", "nl")
#: Languages that come as a shipped pack (every Latin-script language of the lists but English).
PACK_LANGUAGES: tuple[str, ...] = ("de", "es", "fr", "pt", "it", "nl")

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


@lru_cache(maxsize=16)
def language_words(code: str, config: NormalizationConfig) -> frozenset[str]:
    """The words of :func:`language_zipf` (the guard for English-only rules in that language's prompts)."""
    return frozenset(language_zipf(code, config))


def guess_language(tokens: Sequence[Token], languages: Sequence[str], config: NormalizationConfig) -> str:
    """The language of a prompt: each token votes for the enabled language where ``wordfreq`` finds it most frequent.

    A tie of votes goes to the language whose Zipf values of the prompt's words sum highest (a sum of
    log-frequencies: the language under which the words are likeliest; "uma camiseta escrito porra" is
    Portuguese, though "camiseta" and "escrito" are slightly more frequent in Spanish), then to the
    earlier one in ``languages``.

    Args:
        tokens: the prompt's normalized tokens.
        languages: the policy's ``languages``.
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
    top = max(votes)
    tied = [i for i, count in enumerate(votes) if count == top]
    if len(tied) == 1:
        return languages[tied[0]]
    texts = [token.text for token in tokens]
    winner = max(tied, key=lambda i: (sum(tables[i].get(text, 0.0) for text in texts), -i))
    return languages[winner]


@lru_cache(maxsize=8)
def established_words(config: NormalizationConfig) -> frozenset[str]:
    """Words of Zipf >= :data:`MIN_ZIPF` in any of :data:`LATIN_LANGUAGES`: established words, never split as glued
    words ("artículo" is no "arti" + "culo"); one set for every pack."""
    return frozenset(word for code in LATIN_LANGUAGES for word, value in language_zipf(code, config).items() if value >= MIN_ZIPF)


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
        compounds: glued words of a list word and a word of the language (:class:`CompoundFinder`).
        scene_sense: folded words whose everyday sense dominates in a scene description (French
            *chatte* "she-cat", *queue* "tail"; anatomy in a medical illustration): findings only when
            they are text to render.
        spellings: the listed entries as written (lowercase), for :func:`written_known`.
    """

    code: str
    lexicon: Lexicon
    allow: Lexicon
    replacer: Replacer
    variants: "VariantMatcher"
    compounds: "CompoundFinder | None" = None
    scene_sense: frozenset[str] = frozenset()
    spellings: frozenset[str] = frozenset()


def pack_path(shipped: Path, name: str) -> Path:
    return shipped / "lists" / name


#: Categories a section of ``extra_<code>.txt`` can name (``[insult]``); entries before any section are profanity.
PACK_CATEGORIES: tuple[str, ...] = ("profanity", "sexual", "insult", "slur")


def read_sections(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Entries of a reviewed-additions list by category: a ``[category]`` line starts a section.

    Raises:
        PolicyError: the file is missing, or a section names an unknown category.
    """
    sections: dict[str, list[str]] = {}
    current = PACK_CATEGORY
    for entry in read_word_list(path):
        if entry.startswith("[") and entry.endswith("]"):
            current = entry[1:-1].strip()
            if current not in PACK_CATEGORIES:
                raise PolicyError(f"word list '{path}': unknown section '{entry}'; use one of {list(PACK_CATEGORIES)}")
            continue
        sections.setdefault(current, []).append(entry)
    return {category: tuple(entries) for category, entries in sections.items()}


@lru_cache(maxsize=32)
def load_pack(
    code: str,
    config: NormalizationConfig,
    rule_id: str,
    shipped: Path,
    fixed_word: str | None = None,
    preserve_case: bool = True,
    category_rules: tuple[tuple[str, str], ...] = (),
) -> LanguagePack:
    """Build the :class:`LanguagePack` of ``code`` from the shipped lists.

    Args:
        code: one of :data:`PACK_LANGUAGES`.
        config: the policy's normalization.
        rule_id: the policy rule that owns the pack's profanity findings (and those of any category
            without a rule of its own).
        shipped: the shipped policies folder.
        fixed_word: the policy's ``replacement.word`` when its mode is ``fixed`` (else automatic
            replacement by a word of the language of similar length).
        preserve_case: the policy's ``replacement.preserve_case``.
        category_rules: ``(category, rule id)`` of the policy's rules for the categories of
            :data:`PACK_CATEGORIES` (sections of ``extra_<code>.txt``).

    Raises:
        PolicyError: ``code`` has no pack, or a shipped list is missing.
    """
    if code not in PACK_LANGUAGES:
        raise PolicyError(f"no word lists for language '{code}'; available: {', '.join(LATIN_LANGUAGES)}")
    rules = dict(category_rules)
    listed = read_json_list(pack_path(shipped, f"ldnoobw_{code}.json"))
    sections = read_sections(pack_path(shipped, f"extra_{code}.txt"))
    excluded = normalized_forms(read_word_list(pack_path(shipped, f"ldnoobw_context_{code}.txt")), config)
    stems = read_word_list(pack_path(shipped, f"stems_{code}.txt"))
    own = language_zipf(code, config)
    others = [language_zipf(other, config) for other in LATIN_LANGUAGES if other != code]
    by_category: dict[str, list[str]] = {PACK_CATEGORY: [e for e in listed if _fold(e, config) not in excluded]}
    for category, entries in sections.items():
        by_category.setdefault(category, []).extend(e for e in entries if _fold(e, config) not in excluded)
    known = {_fold(e, config) for entries in by_category.values() for e in entries}
    generated: dict[str, list[str]] = {}
    for category, entries in by_category.items():
        for entry in entries:
            word = _fold(entry, config)
            forms = inflected(word, code)
            forms += [  # chat spellings of the word and its plurals ("pvta", "pvtas"), not of every derived form
                (spelled, number) for form, number in [(word, False)] + [f for f in forms if f[1]] for spelled in chat_spelled(form, code)
            ]
            if " " in word and len(word) >= 9:
                forms.append((word.replace(" ", ""), False))  # a phrase written as one word or hashtag: "hijodeputa"
            for form, number in forms:
                folded = _fold(form, config) if not form.isascii() else form
                if folded in known or folded in excluded or any(
                    table.get(folded, 0.0) >= max(MIN_ZIPF, own.get(folded, 0.0)) for table in others
                ):
                    continue  # an ordinary word of another covered language more than of this one (German "Neger" ->
                    # Dutch "negeren"); French "cons" stays, and a prompt in English reads it as English (engine)
                if own.get(folded, 0.0) >= MIN_ZIPF and own.get(folded, 0.0) > own.get(word, 0.0) - (0.0 if number else 0.5):
                    continue  # a form the language uses (about) as much as the listed word is another word ("zoccoli", "pollo")
                known.add(folded)
                generated.setdefault(category, []).append(folded)
    sources = [
        TermSource(
            tuple(entries) + tuple(generated.get(category, ())), category, rules.get(category, rule_id),
            f"ldnoobw_{code}.json" if category == PACK_CATEGORY else f"extra_{code}.txt", excluded,
        )
        for category, entries in by_category.items()
    ]
    sources.append(TermSource(stems, PACK_CATEGORY, rule_id, f"stems_{code}.txt", frozenset(), True))
    lexicon = build_lexicon(tuple(sources), config, plurals=False, inflections=False)
    allow_terms = read_word_list(pack_path(shipped, f"allow_{code}.txt"))
    allow = build_lexicon((TermSource(allow_terms, "allow", ""),), config, plurals=False, exact_runs=True)
    words = read_word_list(pack_path(shipped, f"replacements_{code}.txt"))
    settings = ReplacementConfig(
        mode="fixed" if fixed_word else "auto", word=fixed_word, path=f"lists/replacements_{code}.txt", preserve_case=preserve_case
    )
    replacer = Replacer(settings, words)
    toxic: dict[str, Term] = {}
    allowed = {_fold(term, config) for term in allow_terms}
    reviewed = {_fold(e, config) for entries in sections.values() for e in entries}
    for source, (category, entries) in zip(sources[:-1], by_category.items()):
        term_rule = source.rule_id
        for entry in entries:  # listed entries only: a generated form is no compound part ("cula" in "culatello")
            folded = _fold(entry, config)
            if " " in folded or len(folded) < 3 or folded in allowed:
                continue
            if folded in reviewed or own.get(folded, 0.0) < MIN_ZIPF:
                # an LDNOOBW entry that is a frequent word is a part only when reviewed: Dutch "poep" in "poepsimpel"
                toxic[folded] = Term(folded, folded, (folded,), (), source.category, term_rule)
    from safetext.policy.compounds import (
        COMPOUND_HEADS, COMPOUND_TAILS, COMPOUND_WEAK_HEADS, DISEASE_HEADS, PLACE_TAILS, CompoundFinder, affix_parts,
    )

    suffixes, prefixes = affix_parts(tuple(toxic), own)
    compounds = CompoundFinder(
        toxic, COMPOUND_HEADS.get(code, frozenset()), COMPOUND_WEAK_HEADS.get(code, frozenset()),
        COMPOUND_TAILS.get(code, frozenset()), own, established_words(config), suffixes, prefixes, PLACE_TAILS.get(code, ()),
        DISEASE_HEADS.get(code, frozenset()),
    )
    scene_words = [_fold(w, config) for w in read_word_list(pack_path(shipped, f"scene_{code}.txt"))]
    scene = frozenset(scene_words + [form for word in scene_words for form, _ in inflected(word, code)])  # "perrita" too
    from safetext.policy.variants import VariantMatcher  # imported here: variants imports this module's neighbours

    return LanguagePack(
        code, lexicon, allow, replacer, VariantMatcher(lexicon, config, fuzzy=False, compounds=False, elisions=True), compounds, scene,
        frozenset(e.lower() for entries in by_category.values() for e in entries),
    )


_HYPHEN_BEFORE = re.compile(r"([^\W\d_]+)-$")
_HYPHEN_AFTER = re.compile(r"-([^\W\d_]+)")


def hyphen_joined(text: str, start: int, end: int, config: NormalizationConfig) -> str | None:
    """The folded word that ``text[start:end]`` forms with letters hyphen-glued to it ("con-fort" -> "confort").

    Returns:
        ``None`` when no letters are glued to the span by a hyphen.
    """
    before = _HYPHEN_BEFORE.search(text, max(0, start - 40), start)
    after = _HYPHEN_AFTER.match(text, end)
    if before is None and after is None:
        return None
    joined = (before.group(1) if before else "") + text[start:end] + (after.group(1) if after else "")
    return _fold(joined, config)


#: Particles that join the parts of a hyphenated place name ("Cons-la-Grandville", "Châlons-en-Champagne",
#: "Castelnuovo-di-Porto", "Frankfurt-am-Main", "Bergen-op-Zoom").
NAME_PARTICLES = frozenset("la le les les sur sous en de du des aux et lez di del della am an im op aan bij".split())
_NAME_AFTER = re.compile(r"-([^\W\d_]+)-([^\W\d_])")
_NAME_BEFORE = re.compile(r"([^\W\d_])[^\W\d_]*-([^\W\d_]+)-$")


def hyphenated_name(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is part of a hyphenated name: capitalized (not all capitals) and joined by a
    lowercase particle of :data:`NAME_PARTICLES` to a capitalized part ("Cons-la-Grandville")."""
    word = text[start:end]
    if not word[:1].isupper() or word.isupper():
        return False
    after = _NAME_AFTER.match(text, end)
    if after is not None and after.group(1) in NAME_PARTICLES and after.group(2).isupper():
        return True
    before = _NAME_BEFORE.search(text, max(0, start - 40), start)
    return before is not None and before.group(2) in NAME_PARTICLES and before.group(1).isupper()


#: ``wordfreq`` Zipf (full list) from which a word as written is a known word of a language for the
#: rarer-word checks of :func:`written_zipf`: about once in 30 million words, above the noise of names and typos.
KNOWN_ZIPF = 1.5


def written_zipf(text: str, code: str) -> float:
    """``wordfreq`` Zipf of ``text`` as written (lowercase, accents kept) in the full list of language ``code``.

    The tables of :func:`language_zipf` hold the words of Zipf >= 3; rarer words (``vertering``,
    ``incassable``, ``pianifica``) are looked up here, only for a token that a rule has already found
    (the full list of a language loads once, on its first look-up, in about a fifth of a second).
    """
    import wordfreq

    word = text.lower()
    if not word.isalpha():
        return 0.0
    return wordfreq.zipf_frequency(word, code)


def known_word(text: str, tables: Sequence[dict[str, float]], config: NormalizationConfig) -> bool:
    """Whether ``text`` (as written) is an ordinary word (Zipf >= :data:`MIN_ZIPF`) in one of ``tables``."""
    word = _fold(text, config)
    return any(table.get(word, 0.0) >= MIN_ZIPF for table in tables)


#: Languages whose accents stay on a word's inflections, so that a listed spelling with an ending added
#: is that word inflected (French ``bâtard`` -> ``bâtards``). German is left out: its umlauts make other
#: words with endings (``Schwänze`` "tails", ``schwänzen`` "to skip school").
ACCENTS_KEPT_IN_INFLECTIONS = frozenset({"fr", "es", "pt", "it"})


def written_known(text: str, spellings: frozenset[str], languages: Sequence[str], code: str = "") -> bool:
    """Whether ``text``, written with letters beyond ASCII, is an ordinary word of one of ``languages`` as written.

    Accent folding makes ``caça`` meet the list word ``caca``; when the word as written (not one of the
    pack's listed ``spellings``, nor, in a language of :data:`ACCENTS_KEPT_IN_INFLECTIONS` (the pack's
    ``code``), one of them with an ending added: ``bâtards``, ``enculées``) is itself a frequent word (``wordfreq`` Zipf >= :data:`MIN_ZIPF`), the accents decide and it is not a finding.
    """
    word = text.lower()
    if word.isascii() or not word.isalpha() or word in spellings:
        return False
    if code in ACCENTS_KEPT_IN_INFLECTIONS and any(
        word.startswith(s) and len(word) - len(s) <= 3 for s in spellings if len(s) >= 4 and not s.isascii()
    ):
        return False  # an inflection of a listed spelling, accents and all
    return any(written_zipf(word, language) >= MIN_ZIPF for language in languages)
