"""The scan engine: a compiled, immutable :class:`Policy` that turns a prompt into a :class:`Verdict`.

One scan = normalize (with an index map) -> find rendered-text spans -> run the backends in order ->
drop allow-listed hits -> apply per-category thresholds and actions -> replace neutralized spans.
A ``Policy`` holds only read-only data after construction, so one instance serves many threads.
"""

from __future__ import annotations

import bisect
import logging
import re
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from safetext.errors import BackendError, PolicyError
from safetext.policy.backends import (
    EXACT_SCORE,
    OBFUSCATED_SCORE,
    WILDCARD_SCORE,
    BackendContext,
    Detection,
    ScanDocument,
    create_backend,
)
from safetext.policy.confusables import REPEATS, SEPARATORS, step_names
from safetext.policy.languages import (
    ENGLISH_ONLY_RULES, KNOWN_ZIPF, MIN_ZIPF, LanguagePack, guess_language, hyphen_joined, hyphenated_name, known_word, language_words, language_zipf, load_pack,
    written_known, written_zipf,
)
from safetext.policy.lexicon import Lexicon, Match, TermSource, build_lexicon, normalized_forms, read_word_list
from safetext.policy.normalize import normalize_chars, tokenize
from safetext.policy.places import load_place_names
from safetext.policy.rendered import SpanSet, find_rendered_spans, overlaps
from safetext.policy.replacement import Replacer
from safetext.policy.schema import NormalizationConfig, PolicyConfig, Rule
from safetext.policy.verdict import Action, Finding, Verdict
from safetext.policy.vocabulary import english_words

logger = logging.getLogger("safetext.policy")

#: Folder of the shipped policies and word lists (``safetext/policies``).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "policies"


class LocatedPolicyError(PolicyError):
    """A :class:`PolicyError` about one field of the policy; ``loc`` is its path (``("lists", 0, "path")``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.detail = message


def resolve_policy_path(path: str, base_dir: Path) -> Path:
    """A path from a policy file: relative to the policy's folder first, then to the shipped folder."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    local = base_dir / candidate
    if local.exists():
        return local
    shipped = SHIPPED_DIR / candidate
    return shipped if shipped.exists() else local


@lru_cache(maxsize=32)
def _cached_lexicon(sources: tuple[TermSource, ...], config: NormalizationConfig, allow_list: bool) -> Lexicon:
    return build_lexicon(
        sources, config, plurals=not allow_list, exact_runs=allow_list, inflections=not allow_list, names=not allow_list
    )


def _located(loc: tuple[str | int, ...], func: Any, *args: Any) -> Any:
    """Call ``func``; a PolicyError it raises is re-raised with the policy field ``loc`` it concerns."""
    try:
        return func(*args)
    except LocatedPolicyError:
        raise
    except PolicyError as exc:
        raise LocatedPolicyError(loc, str(exc)) from exc


#: Normalization steps that only a disguise needs: a word written ``p3n1s`` or ``h*e`` is text meant to be
#: written past a filter, never a scene description, so it takes the rendered-text action everywhere.
_DISGUISES = frozenset({"leetspeak", "invisible", "wildcards"})

#: How far below its English ``wordfreq`` Zipf a capitalized word may sit in the prompt's language and still
#: be that language's name or noun outside rendered text (:meth:`Policy._local_name`).
LOCAL_NAME_MARGIN = 0.6

#: Known words (two letters or more) besides a finding that a rendered span needs for its own language
#: to judge the finding (:meth:`Policy._reading_language`); one word that several languages know is too
#: weak a sign ("Verse muntthee": Dutch "fresh", English "verse").
SIGN_EVIDENCE = 2

_STRETCHED = re.compile(r"(.)\1\1")
#: Endings after a doubled final consonant: Dutch and German plurals and inflections (``drol`` ->
#: ``drollen``, ``smeerlap`` -> ``smeerlappen``), which are the list word, not another word.
_DOUBLING_ENDINGS = ("en", "e", "er", "es", "s", "ers", "tje", "etje")


def _doubled_spelling(written: str, folded: str, form: str, code: str) -> bool:
    """A repeats reading that is only a doubled letter of a word ``wordfreq`` knows in ``code``
    (:data:`KNOWN_ZIPF`), and not the list word ``form`` with a consonant doubled before an ending."""
    if _STRETCHED.search(folded) or written_zipf(written, code) < KNOWN_ZIPF:
        return False
    for i in range(len(folded) - 1):
        if folded[i] == folded[i + 1] and folded[:i] + folded[i + 1 :] == form:
            inflection = folded[i] not in "aeiouy" and any(form.endswith(end) for end in _DOUBLING_ENDINGS)
            return not (inflection and folded[i + 2 :] in _DOUBLING_ENDINGS)
    return True


class _LanguageVotes:
    """The :func:`~safetext.policy.languages.guess_language` votes of one prompt's tokens, counted once per
    scan, so that the language of a part of the prompt (a sign's words, the prompt but one word) costs the
    size of that part, not of the prompt (a long prompt with many findings stays linear)."""

    def __init__(self, document: ScanDocument, languages: Sequence[str], normalization: NormalizationConfig) -> None:
        norm = document.norm
        tables = [language_zipf(code, normalization) for code in languages]
        self.languages = tuple(languages)
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.lengths: list[int] = []
        self.values: list[list[int]] = []  # Zipf in hundredths (wordfreq's buckets are 0.01 apart): exact sums
        self.best: list[int] = []
        self.votes = [0] * len(tables)
        self.sums = [0] * len(tables)
        for token in document.tokens:
            start, end = norm.span(token.start, token.end)
            values = [round(table.get(token.text, 0.0) * 100) for table in tables]
            best, best_value = -1, 0
            for index, value in enumerate(values):
                if value > best_value:
                    best, best_value = index, value
            self.starts.append(start)
            self.ends.append(end)
            self.lengths.append(len(token.text))
            self.values.append(values)
            self.best.append(best)
            if best >= 0:
                self.votes[best] += 1
            for index, value in enumerate(values):
                self.sums[index] += value

    def overlapping(self, start: int, end: int) -> range:
        """Indices of the tokens that overlap ``text[start:end]``."""
        return range(bisect.bisect_right(self.ends, start), bisect.bisect_left(self.starts, end))

    def within(self, start: int, end: int) -> range:
        """Indices of the tokens inside ``text[start:end]``."""
        return range(bisect.bisect_left(self.starts, start), bisect.bisect_right(self.ends, end))

    def known_by(self, index: int) -> int:
        """How many of the languages know token ``index``."""
        return sum(value > 0 for value in self.values[index])

    def guess(self, indices: Sequence[int], without: bool = False) -> str | None:
        """The language of the tokens ``indices`` (or of every token but them, ``without``), as
        :func:`~safetext.policy.languages.guess_language` decides it; ``None`` when no token is known."""
        votes, sums = ([*self.votes], [*self.sums]) if without else ([0] * len(self.votes), [0] * len(self.sums))
        sign = -1 if without else 1
        for index in indices:
            if self.best[index] >= 0:
                votes[self.best[index]] += sign
            for language, value in enumerate(self.values[index]):
                sums[language] += sign * value
        if not any(votes):
            return None
        top = max(votes)
        tied = [i for i, count in enumerate(votes) if count == top]
        return self.languages[tied[0] if len(tied) == 1 else max(tied, key=lambda i: (sums[i], -i))]


class Policy:
    """A compiled policy: immutable, thread-safe, ready to :meth:`scan`.

    Args:
        config: the validated policy.
        base_dir: folder that relative list paths start from (the policy file's folder); paths not
            found there are looked up in the shipped ``safetext/policies`` folder.
        source: where the policy came from (file path or ``"<dict>"``), for messages.

    Attributes:
        allow_terms: the allow-list entries as written (``allow.terms`` and the ``allow.lists`` files).

    Raises:
        PolicyError: a list file is missing or a replacement word is itself flagged.
        BackendError: a backend is unknown or cannot be loaded.

    Example:
        >>> from safetext.policy import load_policy
        >>> verdict = load_policy("default").scan('A sign that says "shit".')
        >>> verdict.action.value, verdict.findings[0].text
        ('neutralize', 'shit')
    """

    __slots__ = ("config", "base_dir", "source", "lexicon", "allow_terms", "_allow", "_places", "_backends", "_replacer", "_rules", "_prompt_scope", "_packs")

    def __init__(self, config: PolicyConfig, *, base_dir: str | Path | None = None, source: str = "<config>") -> None:
        if not isinstance(config, PolicyConfig):
            raise PolicyError(f"Policy() expects a PolicyConfig, got {type(config).__name__}; use load_policy() for files")
        base = Path(base_dir) if base_dir is not None else SHIPPED_DIR
        norm_config = config.normalization
        sources = []
        for index, entry in enumerate(config.lists):
            loc = ("lists", index)
            terms = _located(loc + ("path",), read_word_list, resolve_policy_path(entry.path, base))
            excluded: frozenset[str] = frozenset()
            for ex_index, ex_path in enumerate(entry.exclude):
                ex_terms = _located(loc + ("exclude", ex_index), read_word_list, resolve_policy_path(ex_path, base))
                excluded |= normalized_forms(ex_terms, norm_config)
            rule = config.rule_for(entry.category, "spans") or config.rule_for(entry.category, "prompt")
            if rule is None:  # only reachable with an unvalidated PolicyConfig (model_construct)
                raise LocatedPolicyError(loc + ("category",), f"no rule handles category '{entry.category}'; add one")
            sources.append(TermSource(terms, entry.category, rule.id, entry.path, excluded, entry.inside_words, entry.sound_alikes))
        for rule in config.rules:
            if rule.terms:
                sources.append(TermSource(rule.terms, rule.category, rule.id))
        lexicon = _cached_lexicon(tuple(sources), norm_config, False)
        allow_terms = list(config.allow.terms)
        for index, path in enumerate(config.allow.lists):
            allow_terms.extend(_located(("allow", "lists", index), read_word_list, resolve_policy_path(path, base)))
        allow = _cached_lexicon((TermSource(tuple(allow_terms), "allow", ""),), norm_config, True)
        place_files = [
            _located(("allow", "places", index), resolve_policy_path, path, base) for index, path in enumerate(config.allow.places)
        ]
        places = _located(("allow", "places"), load_place_names, tuple(place_files)) if place_files else None
        words = _located(("replacement", "path"), read_word_list, resolve_policy_path(config.replacement.path, base))
        replacer = _located(("replacement",), Replacer, config.replacement, words)
        context = BackendContext(lexicon, norm_config, base, config.name)
        backends = []
        for index, spec in enumerate(config.backends):
            try:
                backends.append(create_backend(spec.name, spec.params, context))
            except BackendError as exc:
                exc.loc = ("backends", index, "name")  # type: ignore[attr-defined]
                raise
        packs = []
        pack_rule = config.rule_for("profanity")
        fixed_word = config.replacement.word if config.replacement.mode == "fixed" else None
        for index, code in enumerate(config.languages):
            if code != "en" and pack_rule is not None:
                category_rules = tuple((c, r.id) for c in ("sexual", "insult", "slur") if (r := config.rule_for(c)) is not None)
                pack = _located(
                    ("languages", index), load_pack, code, norm_config, pack_rule.id, SHIPPED_DIR, fixed_word,
                    config.replacement.preserve_case, category_rules,
                )
                packs.append(pack)
        for code in config.languages if packs else ():
            language_words(code, norm_config)  # built once here, not on the first scan
        object.__setattr__(self, "_packs", MappingProxyType({pack.code: pack for pack in packs}))
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "base_dir", base)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "lexicon", lexicon)
        object.__setattr__(self, "allow_terms", tuple(allow_terms))
        object.__setattr__(self, "_allow", allow)
        object.__setattr__(self, "_places", places)
        object.__setattr__(self, "_backends", tuple(backends))
        object.__setattr__(self, "_replacer", replacer)
        object.__setattr__(self, "_rules", MappingProxyType({rule.id: rule for rule in config.rules}))
        object.__setattr__(self, "_prompt_scope", any(rule.scope == "prompt" for rule in config.rules))
        self._check_replacements_are_clean()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Policy is immutable; build a new one from a changed PolicyConfig instead of setting '{name}'")

    def __repr__(self) -> str:
        return f"Policy(name={self.name!r}, source={self.source!r}, terms={len(self.lexicon)})"

    @property
    def name(self) -> str:
        """The policy's ``name``."""
        return self.config.name

    @property
    def replacer(self) -> Replacer:
        """The replacer of the policy's ``replacement:`` section (its benign words, :meth:`Replacer.ranked`)."""
        return self._replacer

    @property
    def backends(self) -> tuple[str, ...]:
        """Names of the backends, in the order they run."""
        return tuple(backend.name for backend in self._backends)

    def _check_replacements_are_clean(self) -> None:
        config = self.config.normalization
        for word in self._replacer.every_configured_word():
            norm = normalize_chars(word, config)
            if self.lexicon.find(norm, tokenize(norm, config)):
                raise LocatedPolicyError(
                    ("replacement",),
                    f"replacement word '{word}' is itself flagged by the policy; choose a benign word",
                )

    # ------------------------------------------------------------------ scanning
    def scan(self, text: str, slot: str = "prompt") -> Verdict:
        """Scan one prompt.

        Args:
            text: the prompt (``str``; empty or blank prompts are allowed with no findings).
            slot: the pipeline argument it belongs to (``prompt``, ``prompt_2``, ``negative_prompt`` ...),
                recorded in every finding.

        Returns:
            The frozen :class:`Verdict`: ``action`` is the most severe finding action (``allow`` when
            nothing is found), ``sanitized_prompt`` has every neutralized span replaced.

        Raises:
            PolicyError: ``text`` is not a ``str``, is longer than ``max_prompt_chars``, or holds lone
                UTF-16 surrogates (invalid Unicode).
        """
        self._check_input(text, slot)
        config = self.config
        if not text.strip():
            return Verdict(action=Action.ALLOW, prompt=text, sanitized_prompt=text, policy=config.name)
        norm_config = config.normalization
        norm = normalize_chars(text, norm_config)
        tokens = tokenize(norm, norm_config)
        rendered_config = config.rendered_text
        rendered = find_rendered_spans(text, rendered_config.max_words, bool(self._packs)) if rendered_config.enabled else ()
        document = ScanDocument(text, norm, tokens, rendered, self._prompt_scope)
        keys = self._allow.token_keys(tokens)
        allowed = [norm.span(m.start, m.end) for m in self._allow.find(norm, tokens, keys)]
        findings = self._decide(document, allowed, slot)
        place_notes: list[str] = []
        if findings and self._places is not None:
            findings, place_notes = self._places.clear(text, findings)
        if self._packs:
            findings = self._other_languages(document, allowed, slot, findings)
        sanitized = apply_replacements(text, findings)
        action = max((f.action for f in findings), key=lambda a: a.severity, default=Action.ALLOW)
        verdict = Verdict(
            action=action,
            prompt=text,
            sanitized_prompt=sanitized,
            findings=tuple(findings),
            rendered_spans=rendered,
            policy=config.name,
            notes=tuple(place_notes),
        )
        if findings and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "policy.scan policy=%s slot=%s action=%s rules=%s languages=%s",
                config.name, slot, action.value, ",".join(sorted({f.rule_id for f in findings})),
                ",".join(sorted({f.language for f in findings})),
            )
        return verdict

    def _check_input(self, text: Any, slot: Any) -> None:
        if not isinstance(slot, str) or not slot:
            raise PolicyError(f"scan() slot must be a non-empty string such as 'prompt', got {slot!r}")
        if not isinstance(text, str):
            hint = " decode it first: text.decode('utf-8')" if isinstance(text, (bytes, bytearray)) else " pass the prompt text"
            raise PolicyError(f"scan() expects str for slot '{slot}', got {type(text).__name__};{hint}")
        limit = self.config.max_prompt_chars
        if len(text) > limit:
            raise PolicyError(
                f"prompt for slot '{slot}' has {len(text)} characters, over the policy limit max_prompt_chars={limit}; "
                "shorten the prompt or raise max_prompt_chars in the policy"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PolicyError(
                f"prompt for slot '{slot}' is not valid Unicode: lone surrogate {text[exc.start]!r} at offset "
                f"{exc.start}; decode the input with errors='replace' or fix its encoding"
            ) from exc

    def _candidate_rules(self, detection: Detection) -> list[Rule]:
        config = self.config
        rules: list[Rule] = []
        if detection.rule_id is not None:
            owner = self._rules.get(detection.rule_id)
            if owner is not None:
                rules.append(owner)
            if self._prompt_scope:
                prompt_rule = config.rule_for(detection.category, "prompt")
                if prompt_rule is not None and prompt_rule is not owner:
                    rules.append(prompt_rule)
            return rules
        rule = config.rule_for(detection.category, detection.scope)
        return [rule] if rule is not None else []

    def _action_for(self, rule: Rule, rendered: bool) -> Action:
        if rendered:
            return rule.action
        return rule.outside_rendered or self.config.outside_rendered or rule.action

    def _decide(self, document: ScanDocument, allowed: list[tuple[int, int]], slot: str) -> list[Finding]:
        text = document.text
        rendered_spans = document.rendered_spans
        check_rendered = self.config.rendered_text.enabled
        taken = SpanSet()  # logarithmic look-ups: n findings cost n log n, not n^2
        allowed_spans = SpanSet(allowed)
        prompt_rules_seen: set[str] = set()
        findings: list[Finding] = []
        for backend in self._backends:
            for detection in backend.detect(document):
                score = detection.score
                if not 0.0 <= score <= 1.0 or score != score:
                    raise BackendError(
                        f"backend '{backend.name}' returned score {score!r} outside [0, 1] for "
                        f"{text[detection.start:detection.end]!r}; fix the backend"
                    )
                start, end = detection.start, detection.end
                if allowed_spans.contains(start, end):
                    continue
                whole_prompt = detection.scope == "prompt"
                if not whole_prompt and taken.overlaps(start, end):
                    continue  # first backend (and leftmost-longest match) wins
                rendered = (not whole_prompt) and (
                    not check_rendered or overlaps(start, end, rendered_spans) or not _DISGUISES.isdisjoint(detection.normalizations)
                )
                best: tuple[Rule, Action] | None = None
                for rule in self._candidate_rules(detection):
                    if score < rule.threshold:
                        continue
                    action = self._action_for(rule, rendered)
                    if best is None or action.severity > best[1].severity:
                        best = (rule, action)
                if best is None or best[1] is Action.ALLOW:
                    continue
                rule, action = best
                if whole_prompt:
                    if rule.id in prompt_rules_seen:
                        continue
                    prompt_rules_seen.add(rule.id)
                else:
                    taken.add(start, end)
                original = text[start:end]
                replacement = None
                if action is Action.NEUTRALIZE:
                    replacement = self._replacer.choose(detection.normalized, detection.base or detection.normalized, original)
                findings.append(
                    Finding(
                        rule_id=rule.id, category=detection.category, text=original, start=start, end=end,
                        normalized=detection.normalized, normalizations=detection.normalizations, score=score,
                        backend=detection.backend, action=action, rendered=rendered, replacement=replacement, slot=slot,
                    )
                )
        findings.sort(key=lambda f: (f.start, f.end))
        return findings

    def _other_languages(
        self, document: ScanDocument, allowed: list[tuple[int, int]], slot: str, findings: list[Finding]
    ) -> list[Finding]:
        """Findings of the language packs added to the English ones, with the prompt's language deciding conflicts."""
        config = self.config
        norm, tokens = document.norm, document.tokens
        language = guess_language(tokens, config.languages, config.normalization)
        votes = _LanguageVotes(document, config.languages, config.normalization)
        allow_of: dict[str, list[tuple[int, int]]] = {"en": list(allowed)}

        def allowed_in(code: str) -> list[tuple[int, int]]:  # the spans of the prompt that ``code``'s allow-list holds
            if code not in allow_of:
                allow_of[code] = allow_of["en"] + [norm.span(m.start, m.end) for m in self._packs[code].allow.find(norm, tokens)]
            return allow_of[code]

        prompt_allowed = allowed_in(language)
        if findings and (language != "en" or document.rendered_spans):
            kept = []
            for f in findings:
                reading = self._reading_language(f.start, f.end, f.rendered, document, language, votes)
                if reading == "en":
                    kept.append(f)
                    continue
                if any(a <= f.start and f.end <= b for a, b in allowed_in(reading)):
                    continue
                if self._local_reading(f, document, reading, votes) is not None:
                    continue
                if f.replacement is not None and config.replacement.mode == "auto":  # a benign word of that language
                    f = f.model_copy(update={"replacement": self._packs[reading].replacer.choose(f.normalized, f.normalized, f.text)})
                kept.append(f)
            findings = kept
        # in another language's prompt a pack's reading of a word wins over that of the English-only rules
        # and backends ("kankerhoer" is Dutch kanker + hoer, not a guess of the English classifier)
        def yields(f: Finding) -> bool:
            return language != "en" and (f.backend != "wordlist" or bool(ENGLISH_ONLY_RULES.intersection(f.normalizations)))

        taken = [
            (f.start, f.end) for f in findings
            if f.rule_id in self._rules and self._rules[f.rule_id].scope == "spans" and not yields(f)
        ]
        rendered_spans = document.rendered_spans
        check_rendered = config.rendered_text.enabled
        local_zipf = language_zipf(language, config.normalization) if language != "en" else {}
        added: list[Finding] = []
        keys = None  # every pack shares the policy's normalization, hence the same token keys
        glued = None  # tokens that may be glued words, the same for every pack
        places = None  # where the variant matchers read the prompt, the same for every pack
        tables = [language_zipf(code, config.normalization) for code in config.languages if code != "en"]
        for code in config.languages:
            pack = self._packs.get(code)
            if pack is None:
                continue
            keys = pack.lexicon.token_keys(tokens) if keys is None else keys
            own_allowed = prompt_allowed + [norm.span(m.start, m.end) for m in pack.allow.find(norm, tokens, keys)]
            matches: list[tuple[Match, tuple[str, ...]]] = [(m, ()) for m in pack.lexicon.find(norm, tokens, keys)]
            exact_spans = [(m.start, m.end) for m, _ in matches]
            places = pack.variants.places(norm, tokens) if places is None else places
            for hit in pack.variants.find(norm, tokens, exact_spans, places):  # readings and split words
                mask = hit.mask | (SEPARATORS if hit.how == "split" else 0)
                matches.append((Match(hit.term, hit.start, hit.end, mask), (hit.how,)))
            if pack.compounds is not None:  # glued words: "Drecksfotze", "kutwijf", "comemierda"
                glued = pack.compounds.candidates(tokens) if glued is None else glued
                if glued:
                    for hit in pack.compounds.find(glued, [(m.start, m.end) for m, _ in matches]):
                        start, end = norm.span(hit.match.start, hit.match.end)
                        if self._known_elsewhere(document.text[start:end], code, language, hit.limit):
                            continue
                        if pack.compounds.place_name(hit.match.term.form, document.text[start:end]):
                            continue  # a place or family name: "Klootwijk", "Mösenberg"
                        matches.append((hit.match, ("glued",)))
            for match, how in matches:
                start, end = norm.span(match.start, match.end)
                if any(s < end and start < e for s, e in taken):
                    continue
                if any(a <= start and end <= b for a, b in own_allowed) and not self._listed_as_written(document.text[start:end], pack):
                    continue
                rendered = not check_rendered or overlaps(start, end, rendered_spans)
                if code != language and not match.mask and self._ordinary_word(
                    match.term.form, document.text[start:end], self._reading_language(start, end, rendered, document, language, votes), code
                ):
                    continue  # a list word of another language that is a word here ("con", "bite", "del"; Italian "mongolo")
                rule = self._rules.get(match.term.rule_id)
                score = WILDCARD_SCORE if match.wildcard else (OBFUSCATED_SCORE if match.mask else EXACT_SCORE)
                if rule is None or score < rule.threshold:
                    continue
                if not rendered and match.term.base in pack.scene_sense:
                    continue  # "une chatte noire sur le canapé": the animal, not text to write
                if match.mask and self._spelling_of_other_word(match, document, code, language, tables):
                    continue
                if hyphenated_name(document.text, start, end):
                    continue  # a place name: "Cons-la-Grandville"
                joined = hyphen_joined(document.text, start, end, config.normalization) if not match.mask else None
                if (
                    joined and local_zipf.get(joined, 0.0) >= MIN_ZIPF and pack.variants.lookup(joined) is None
                    and (pack.compounds is None or joined not in pack.compounds.toxic)
                ):
                    continue  # half of a hyphenated ordinary word: "con-fort" (not of a list word: "Arsch-loch")
                action = self._action_for(rule, rendered)
                if action is Action.ALLOW:
                    continue
                original = document.text[start:end]
                replacement = None
                if action is Action.NEUTRALIZE:
                    replacement = pack.replacer.choose(match.term.form, match.term.base, original)
                taken.append((start, end))
                added.append(
                    Finding(
                        rule_id=rule.id, category=match.term.category, text=original, start=start, end=end,
                        normalized=match.term.form, normalizations=step_names(match.mask) + how, score=score,
                        backend="wordlist", action=action, rendered=rendered, replacement=replacement, slot=slot,
                        language=code,
                    )
                )
        if not added:
            return findings
        findings = [f for f in findings if not (yields(f) and any(a.start < f.end and f.start < a.end for a in added))]
        return sorted(findings + added, key=lambda f: (f.start, f.end))

    def _reading_language(self, start: int, end: int, rendered: bool, document: ScanDocument, language: str, votes: "_LanguageVotes") -> str:
        """The language whose words judge the word at ``text[start:end]``: the prompt's ``language``, but for text to
        render the language of the sign's own words when it holds at least :data:`SIGN_EVIDENCE` other words
        a table knows ("Hier kunt u betalen" is Dutch in an English prompt) or one word that only one
        language knows ("BÄCKEREI FICKEL" is German), else of the prompt's words but
        the finding's: the disputed word does not vote on its own reading ("A blue placard reading douche"
        writes the English list word, though "douche", more frequent in French, tips the whole prompt to French)."""
        spans = document.rendered_spans
        if not rendered or not spans:
            return language
        span = next((s for s in spans if s[0] <= start and end <= s[1]), None)
        if span is None:
            return language
        own = votes.overlapping(start, end)
        inside = [i for i in votes.within(*span) if i not in own and votes.lengths[i] >= 2 and votes.known_by(i)]
        if len(inside) >= SIGN_EVIDENCE or any(votes.known_by(i) == 1 for i in inside):
            return votes.guess(inside) or language
        return votes.guess(own, without=True) or language

    def _ordinary_word(self, form: str, written: str, here: str, code: str) -> bool:
        """Whether list word ``form`` of pack ``code``, written ``written``, is a word of language ``here`` instead.

        English: a word of the English dictionary that English writers use (``wordfreq`` Zipf >=
        :data:`KNOWN_ZIPF`: "con", "bite"; not Webster's archaic "hoer"); other languages: an ordinary word
        (Zipf >= :data:`MIN_ZIPF`: "del"), or a rarer one that the language writes more than ``code`` does
        (Italian "mongolo", Mongolian, is the Spanish insult only in Spanish).
        """
        if here == code:
            return False
        if here == "en":
            return form in english_words() and written_zipf(form, "en") >= KNOWN_ZIPF
        if language_zipf(here, self.config.normalization).get(form, 0.0) >= MIN_ZIPF:
            return True
        local = written_zipf(written, here)
        return local >= KNOWN_ZIPF and local > written_zipf(written, code)

    def _local_reading(self, f: Finding, document: ScanDocument, language: str, votes: "_LanguageVotes") -> str | None:
        """Why English finding ``f`` reads as a word of the prompt's ``language`` (not English) rather than
        an English list word, or ``None`` when it stays a finding.

        Reasons (the returned string names the first that holds):

        - ``sound-alike``: English sound-alikes do not judge a prompt in another language ("Couillet" is not "clit");
        - ``accented local word``: accents tell the words apart, French "râpé" (grated) is no English list word;
        - ``scene sense``: the language's scene sense outside rendered text ("schéma médical du pénis");
        - ``local name``: outside rendered text, a capitalized word that the prompt's language uses nearly as
          much as English, a name or noun of its own there (the Dutch first name in "Dick Bruna", the
          mountain in "auf dem Wank");
        - ``known elsewhere``: a finding of the English-only rules on a word of an enabled language;
        - ``rarer local word``: ... or on a rarer word of the prompt's language ("incassable" is no "ass" compound);
        - ``ordinary local word``: a list word that is an ordinary word of the prompt's language more than of
          English ("assez", "douches", "kikker"), or a stretched one of its words.
        """
        config = self.config
        pack = self._packs[language]
        if f.backend == "wordlist" and "fuzzy" in f.normalizations:
            return "sound-alike"
        if "confusables" in f.normalizations and self._accented_local_word(f, language):
            return "accented local word"
        if f.normalized in pack.scene_sense and not f.rendered:
            return "scene sense"
        if not f.rendered and self._local_name(f.text, language):
            return "local name"
        words = votes.overlapping(f.start, f.end)  # the finding's tokens, found by bisection (the scan stays linear)
        if len(words) != 1:
            return None
        word = document.tokens[words[0]].text
        if f.backend != "wordlist" or ENGLISH_ONLY_RULES.intersection(f.normalizations):
            if any(word in language_words(code, config.normalization) for code in self._packs):
                return "known elsewhere"
            if self._rarer_local_word(f.text, language):
                return "rarer local word"
            return None
        if "repeats" in f.normalizations and (
            word in language_words(language, config.normalization) or self._rarer_local_word(f.text, language)
        ):
            return "ordinary local word"
        local = language_zipf(language, config.normalization).get(word, 0.0)
        if local > max(MIN_ZIPF, language_zipf("en", config.normalization).get(word, 0.0)):
            return "ordinary local word"
        return None

    def _spelling_of_other_word(
        self, match: Match, document: ScanDocument, code: str, language: str, tables: list[dict[str, float]]
    ) -> bool:
        """Whether an obfuscated match of pack ``code`` is the ordinary spelling of another word.

        Accents tell the words apart (Portuguese "caça", hunt, is not "caca"; Italian "Mosè" not "Möse"),
        or a doubled letter is spelling, not stretching: of a real word of an enabled language
        ("piccione", "huur"), of a rarer word of the prompt's language (Italian "connota", "boccetta"),
        or of a word of the list's own language (Italian "toppa", "ficca"; not "drollen", plural of "drol").
        """
        config = self.config
        pack = self._packs[code]
        start, end = document.norm.span(match.start, match.end)
        written = document.text[start:end]
        if written_known(written, pack.spellings, config.languages, code):
            return True
        if not match.mask & REPEATS:
            return False
        if known_word(written, tables, config.normalization):
            return True
        if code != language != "en" and written_zipf(written, language) >= KNOWN_ZIPF:
            return True
        return code == language and _doubled_spelling(written, document.norm.text[match.start : match.end], match.term.form, code)

    @staticmethod
    def _listed_as_written(text: str, pack: LanguagePack) -> bool:
        """``text`` carries accents and is, as written, an entry of ``pack``: French "négro" is not the
        Spanish allow-listed "negro" (black) that it folds to."""
        word = text.lower()
        return not word.isascii() and word in pack.spellings

    def _accented_local_word(self, f: Finding, language: str) -> bool:
        """``f`` (an English finding in a prompt of ``language``) is a word written with accents that the
        prompt's language knows (``wordfreq``, :data:`KNOWN_ZIPF`) and whose folded form is neither a scene
        word nor a listed spelling of that language's pack ("pénis" stays the anatomy word it folds to)."""
        word = f.text.lower()
        if word.isascii() or not word.isalpha():
            return False
        pack = self._packs[language]
        if word in pack.spellings or f.normalized in pack.scene_sense:
            return False
        return written_zipf(word, language) >= KNOWN_ZIPF

    @staticmethod
    def _local_name(text: str, language: str) -> bool:
        """``text`` is capitalized (not all capitals) and ``wordfreq`` finds it in ``language`` (Zipf >=
        :data:`KNOWN_ZIPF`) within :data:`LOCAL_NAME_MARGIN` of its English frequency: the language has
        its own use of it ("Dick" 4.4 in Dutch, 4.7 in English), unlike the English swear words that
        it borrows ("Shit" 4.0 in German, 5.5 in English)."""
        if not text[:1].isupper() or not text[1:].islower():
            return False
        local = written_zipf(text, language)
        return local >= KNOWN_ZIPF and local >= written_zipf(text, "en") - LOCAL_NAME_MARGIN

    @staticmethod
    def _rarer_local_word(text: str, language: str, than: str = "en") -> bool:
        """A word of ``language`` rarer than its table (``wordfreq`` full list, :data:`KNOWN_ZIPF`), at least as
        frequent there as in language ``than``."""
        local = written_zipf(text, language)
        return local >= KNOWN_ZIPF and local >= written_zipf(text, than)

    @staticmethod
    def _known_elsewhere(text: str, code: str, language: str, limit: float | None) -> bool:
        """Whether a glued word of pack ``code`` is a word of its own that ``wordfreq`` knows as written.

        ``limit`` (:attr:`~safetext.policy.compounds.Glued.limit`): the Zipf in the pack's language from
        which the token is a word ("vertering", "pianifica", "computa"); a glued word of another language
        than the prompt's stands only where the prompt's language does not know the token better
        ("belemmerde" in a Dutch prompt is no French "merde").
        """
        if limit is not None and written_zipf(text, code) >= limit:
            return True
        return code != language != "en" and Policy._rarer_local_word(text, language, than=code)

    # ------------------------------------------------------------------ requests with several prompts
    @staticmethod
    def merge_verdicts(verdicts: Mapping[str, Verdict] | Sequence[Verdict]) -> Verdict:
        """Combine the verdicts of one request's prompt slots into one.

        Args:
            verdicts: ``{slot: verdict}``, or a sequence read as slots ``prompt``, ``prompt_2``, ...

        Returns:
            A verdict whose action is the most severe one, with every finding (each carries its
            slot), the first slot's prompt/sanitized prompt/rendered spans, and
            ``details["sanitized_prompts"] = {slot: sanitized prompt}``.

        Raises:
            PolicyError: no verdicts, or an item is not a Verdict.
        """
        if isinstance(verdicts, Mapping):
            items = list(verdicts.items())
        else:
            items = [("prompt" if i == 0 else f"prompt_{i + 1}", v) for i, v in enumerate(verdicts)]
        if not items:
            raise PolicyError("merge_verdicts() needs at least one verdict; scan each prompt slot first")
        for slot, verdict in items:
            if not isinstance(verdict, Verdict):
                raise PolicyError(f"merge_verdicts(): slot '{slot}' holds {type(verdict).__name__}, not a Verdict")
        first = items[0][1]
        findings = tuple(f for _, v in items for f in v.findings)
        notes = tuple(dict.fromkeys(n for _, v in items for n in v.notes))
        action = max((v.action for _, v in items), key=lambda a: a.severity)
        return Verdict(
            action=action,
            prompt=first.prompt,
            sanitized_prompt=first.sanitized_prompt,
            findings=findings,
            rendered_spans=first.rendered_spans,
            policy=first.policy,
            notes=notes,
            details={"sanitized_prompts": {slot: v.sanitized_prompt for slot, v in items}},
        )


def apply_replacements(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with every finding that has a replacement replaced (findings sorted by offset)."""
    pieces: list[str] = []
    cursor = 0
    for finding in findings:
        if finding.replacement is None or finding.start < cursor:
            continue
        pieces.append(text[cursor : finding.start])
        pieces.append(finding.replacement)
        cursor = finding.end
    if not pieces:
        return text
    pieces.append(text[cursor:])
    return "".join(pieces)
