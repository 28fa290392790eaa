"""The policy file format: frozen pydantic models with ``extra="forbid"``.

A policy says *what* may not be written into an image and what happens when it is asked for. It is a
YAML file reviewed and versioned by the product team (see ``safetext/policies/default.yaml``); this
module only describes its shape. Loading (``file:line:column`` errors, ``${ENV:default}``
interpolation) lives in :mod:`safetext.policy.loader`, scanning in :mod:`safetext.policy.engine`.

Editors can validate policy files against the JSON Schema returned by :func:`policy_json_schema`
(committed as ``safetext/policies/policy.schema.json``).
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from safetext.policy.verdict import Action

#: Rule categories a word list or a backend label can feed.
Category = Literal["profanity", "sexual", "slur", "insult", "hate", "custom"]
CATEGORIES: tuple[str, ...] = ("profanity", "sexual", "slur", "insult", "hate", "custom")

#: Normalization steps, in the order they run. Each one is switchable in ``normalization:``.
NORMALIZATION_STEPS: tuple[str, ...] = (
    "html",
    "nfkc",
    "invisible",
    "confusables",
    "leetspeak",
    "separators",
    "repeats",
    "wildcards",
)

SCHEMA_ID = "https://safetext.dev/schemas/policy-v1.json"

#: JSON Schema key marking a field whose string values may hold ``${VAR}`` / ``${VAR:default}``;
#: the loader expands environment variables there and nowhere else.
ENV_MARK = "x-env-expandable"
_ENV = {ENV_MARK: True}
_ENV_NOTE = " `${VAR}` and `${VAR:default}` are replaced with environment values here (and only in such fields)."

#: Languages with shipped word lists (Latin script); ``en`` is the policy's own ``lists:`` and ``backends:``.
Language = Literal["en", "de", "es", "fr", "pt", "it", "nl"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NormalizationConfig(_Strict):
    """Which evasion-undoing steps run before matching (all on by default)."""

    html: bool = Field(default=True, description="Drop HTML tags and comments, decode character entities ('f<b>u</b>ck', 'sh&#105;t').")
    nfkc: bool = Field(default=True, description="Unicode NFKC compatibility folding (full-width, ligatures, styled letters).")
    invisible: bool = Field(default=True, description="Drop zero-width, bidi and control characters.")
    confusables: bool = Field(
        default=True,
        description="Fold look-alikes of every script (Unicode TR39 confusables), full-width forms, accents and Latin-derived symbols to ASCII.",
    )
    leetspeak: bool = Field(default=True, description="Read 1 3 4 @ $ 0 5 7 ! + as letters inside words ('sh1t').")
    separators: bool = Field(default=True, description="Join runs of single letters split by spaces, dots, dashes ('f u c k').")
    repeats: bool = Field(default=True, description="Accept stretched letters ('fuuuck').")
    wildcards: bool = Field(default=True, description=(
        "Read '*' and '#' inside a word as any one letter ('f*ck', 'sh#t'); the wordlist backend also reads "
        "'_', '%', '?', '&', emoji and runs of '-' or '.' as hidden letters ('p__sy', 'f--k', 'sh💩t')."
    ))

    def enabled_steps(self) -> tuple[str, ...]:
        """Names of the enabled steps, in pipeline order."""
        return tuple(step for step in NORMALIZATION_STEPS if getattr(self, step))


class WordListSource(_Strict):
    """A word list file: one term per line, ``#`` comments; multi-word lines match as phrases."""

    path: str = Field(description="List file, relative to the policy file or to the shipped policies folder.")
    category: Category = Field(description="Category of every term in the list. When a term is in several lists the later list wins.")
    exclude: tuple[str, ...] = Field(
        default=(), description="List files whose terms are dropped from this list (context-dependent entries)."
    )
    inside_words: bool = Field(
        default=False,
        description="Entries also match inside longer words ('fuck' in 'fuckface'); only for stems that no "
        "benign word contains. The whole word is then the finding.",
    )
    sound_alikes: bool = Field(
        default=True,
        description="Entries also match words that sound like them ('fack', 'biatch'). Off for initialisms and "
        "acronyms, whose sound-alikes are other acronyms and brand names ('FUBU' is not 'fubar').",
    )


class AllowConfig(_Strict):
    """Terms that are never flagged: a finding inside an allow-listed phrase is dropped ('Dick Van Dyke')."""

    lists: tuple[str, ...] = Field(default=(), description="Allow-list files (same format as word lists).")
    terms: tuple[str, ...] = Field(default=(), description="Inline allow-listed words or phrases.")
    places: tuple[str, ...] = Field(
        default=(),
        description="Gazetteer files (name, regions, source; tab-separated): a finding inside a place name written "
        "as a name is dropped when the prompt names the place ('Intercourse, PA', 'the village of Fucking', "
        "'Cumming City Hall'); the place alone on a sign stays a finding. See safetext.policy.places.",
    )


class Rule(_Strict):
    """What to do with findings of one category.

    ``scope: spans`` rules act on the offending spans (neutralize replaces only them);
    ``scope: prompt`` rules judge the prompt as a whole (their action must be ``log`` or ``block``).
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64, description="Stable rule id reported in findings.")
    category: Category
    action: Action = Field(default=Action.NEUTRALIZE, description="Action for findings inside rendered text.")
    outside_rendered: Action | None = Field(
        default=None,
        description="Action for findings outside rendered text (scene description); null = the policy-wide setting.",
    )
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Minimum backend score that counts as a finding.")
    scope: Literal["spans", "prompt"] = "spans"
    terms: tuple[str, ...] = Field(default=(), description="Inline terms added to this rule (e.g. custom brand names).")

    @model_validator(mode="after")
    def _prompt_scope_cannot_neutralize(self) -> "Rule":
        if self.scope == "prompt" and Action.NEUTRALIZE in (self.action, self.outside_rendered):
            raise ValueError(
                f"rule '{self.id}' has scope 'prompt' and action 'neutralize'; a whole prompt cannot be "
                "replaced by a benign word: use action 'block' or 'log', or scope 'spans'"
            )
        if self.category == "custom" and not self.terms:
            raise ValueError(f"rule '{self.id}' has category 'custom' but no terms; add 'terms: [...]'")
        return self


class BackendSpec(_Strict):
    """One classifier backend; backends run in order and the first one that flags a span wins."""

    name: str = Field(description="Registered backend name: wordlist, better_profanity, alt_profanity_check, transformers, ...")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Backend-specific parameters." + _ENV_NOTE, json_schema_extra=_ENV
    )


class ReplacementConfig(_Strict):
    """How a neutralized span is replaced."""

    mode: Literal["auto", "fixed", "mapping"] = Field(
        default="auto",
        description="auto: a benign word of the closest length (deterministic per term); fixed: always 'word'; "
        "mapping: 'mapping' per matched term, 'auto' for the others.",
    )
    word: str | None = Field(default=None, min_length=1, description="Replacement for mode 'fixed'.")
    mapping: dict[str, str] = Field(default_factory=dict, description="Matched term -> replacement, for mode 'mapping'.")
    path: str = Field(default="lists/replacements.txt", description="File of benign words for automatic replacement.")
    preserve_case: bool = Field(default=True, description="Upper-case span -> upper-case replacement, Title -> Title.")

    @model_validator(mode="after")
    def _mode_needs_its_field(self) -> "ReplacementConfig":
        if self.mode == "fixed" and not self.word:
            raise ValueError("replacement mode 'fixed' needs 'word: <benign word>'")
        if self.mode == "mapping" and not self.mapping:
            raise ValueError("replacement mode 'mapping' needs 'mapping: {term: replacement}'")
        return self


class RenderedTextConfig(_Strict):
    """Extraction of the text a prompt asks to be written (quoted text, 'says X', 'X written on')."""

    enabled: bool = Field(default=True, description="Find rendered-text spans; when off every finding counts as rendered.")
    max_words: int = Field(default=8, ge=1, le=64, description="Longest unquoted span taken after a trigger word.")


EscalationStep = Literal["earlier_start", "next_layers", "all_layers", "next_word", "legible_word", "block"]


class VerificationConfig(_Strict):
    """Closed-loop check: OCR every generated image and scan the text read with this same policy.

    When toxic text is still visible (whole, or with ``fragment_min_chars`` as a lexicon word inside a
    longer non-word token) or, with ``expect: replacement``, a patched image does not read as its
    sanitized text, the steps of ``escalation`` run in order until the image passes: ``earlier_start``
    (patch from step 0), ``next_layers`` (add the layer map's next ranked layers), ``all_layers`` (every
    text-attention layer from step 0), ``next_word`` (the next benign word of each span's length, in the
    model's legibility order when the layer map carries one, patched like the last run; later steps keep
    it), ``legible_word`` (the best word of the nearest length the model writes better than the span's,
    by the layer map's ``replacement_legibility``; skipped without one), ``block`` (raise PolicyViolation). Each step is recorded in ``verdict.details["escalations"]``,
    and every re-run starts from the request's saved generator state (the same noise).
    """

    enabled: bool = Field(default=False, description="OCR generated images and escalate when toxic text is visible.")
    ocr: str = Field(default="rapidocr", description="Registered OCR backend (safetext.scoring.get_ocr).")
    ocr_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the OCR backend (e.g. {mode: full})." + _ENV_NOTE,
        json_schema_extra=_ENV,
    )
    check_allowed: bool = Field(default=True, description="Also check images of prompts the scan allowed.")
    escalation: tuple[EscalationStep, ...] = Field(
        default=("earlier_start", "all_layers", "block"),
        description="Steps tried in order while the check fails; an allowed prompt has no sanitized target, so only 'block' applies to it.",
    )
    expect: Literal["not_toxic", "replacement"] = Field(
        default="not_toxic",
        description="not_toxic: an image passes when no flagged text is read; replacement: a patched image must "
        "also read as its sanitized text (the rendered text of the sanitized prompt).",
    )
    min_similarity: float = Field(
        default=0.9, ge=0.0, le=1.0,
        description="expect=replacement: least 1 - normalized edit distance between the text read and the "
        "sanitized text (0.9: exact up to 9 letters, one error from 10).",
    )
    fragment_min_chars: int = Field(
        default=4, ge=0,
        description="Shortest lexicon word flagged inside a longer token read that is neither an English word nor "
        "allow-listed, nor covered by one (0: off).",
    )


class PolicyConfig(_Strict):
    """A whole policy file.

    Example:

    ```yaml
    version: 1
    name: my-policy
    lists:
      - {path: lists/ldnoobw_en.txt, category: sexual}
    rules:
      - {id: sexual, category: sexual, action: neutralize}
    ```
    """

    version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    max_prompt_chars: int = Field(
        default=10_000, gt=0, le=1_000_000, description="Longer prompts are refused with PolicyError." + _ENV_NOTE,
        json_schema_extra=_ENV,
    )
    outside_rendered: Action | None = Field(
        default=None,
        description="Action for findings outside rendered text for rules that set none; null = the rule's action.",
    )
    languages: tuple[Language, ...] = Field(
        default=("en",),
        description="Languages whose word lists apply, in priority order. 'en' is the policy's own lists and "
        "backends; every other code adds that language's shipped lists, allow-list and replacement words "
        "(findings go to the rule of their category, else 'profanity'). When a word is a list word of one language and an ordinary "
        "word of the prompt's language, the prompt's language decides.",
    )
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    rendered_text: RenderedTextConfig = Field(default_factory=RenderedTextConfig)
    lists: tuple[WordListSource, ...] = ()
    allow: AllowConfig = Field(default_factory=AllowConfig)
    rules: tuple[Rule, ...] = Field(description="At least one rule; each category's findings follow its rule.")
    backends: tuple[BackendSpec, ...] = Field(
        default=(BackendSpec(name="wordlist"),), description="Backends in the order they run (at least one)."
    )
    replacement: ReplacementConfig = Field(default_factory=ReplacementConfig)
    verification: VerificationConfig = Field(default_factory=VerificationConfig)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        if not rules:
            raise ValueError("a policy needs at least one rule; add 'rules: [{id: ..., category: ..., action: ...}]'")
        seen_ids: set[str] = set()
        seen_scopes: set[tuple[str, str]] = set()
        for rule in rules:
            if rule.id in seen_ids:
                raise ValueError(f"rule id '{rule.id}' is used twice; give every rule its own id")
            seen_ids.add(rule.id)
            key = (rule.category, rule.scope)
            if rule.category != "custom" and key in seen_scopes:
                raise ValueError(
                    f"two rules with category '{rule.category}' and scope '{rule.scope}'; merge them into one rule"
                )
            seen_scopes.add(key)
        return rules

    @model_validator(mode="after")
    def _every_list_has_a_rule(self) -> "PolicyConfig":
        categories = {rule.category for rule in self.rules}
        for source in self.lists:
            if source.category not in categories:
                raise ValueError(
                    f"list '{source.path}' has category '{source.category}' but no rule handles it; add a rule "
                    f"with 'category: {source.category}' or remove the list"
                )
        if len(set(self.languages)) != len(self.languages) or "en" not in self.languages:
            raise ValueError(
                f"languages {list(self.languages)} must list each code once and include 'en' (the policy's own "
                "lists and backends), e.g. 'languages: [en, de, fr]'"
            )
        if len(self.languages) > 1 and self.rule_for("profanity") is None:
            raise ValueError(
                "languages beyond 'en' report their findings under category 'profanity'; add a rule "
                "'{id: profanity, category: profanity, action: neutralize}'"
            )
        names = [spec.name for spec in self.backends]
        if not names:
            raise ValueError("'backends' is empty; list at least one, e.g. 'backends: [{name: wordlist}]'")
        if len(set(names)) != len(names):
            raise ValueError(f"backend listed twice in {names}; list each backend once")
        return self

    def rule_for(self, category: str, scope: str = "spans") -> Rule | None:
        """The first rule of ``category`` and ``scope`` (custom rules are matched by id instead)."""
        for rule in self.rules:
            if rule.category == category and rule.scope == scope:
                return rule
        return None


def env_expandable_fields() -> tuple[str, ...]:
    """Dotted paths of the fields whose values may use ``${VAR}`` (``backends[].params`` and the like).

    Example:
        >>> from safetext.policy.schema import env_expandable_fields
        >>> env_expandable_fields()
        ('max_prompt_chars', 'backends[].params', 'verification.ocr_options')
    """
    found: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get(ENV_MARK):
                found.append(path)
                continue
            for arg in (field.annotation, *typing.get_args(field.annotation)):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg, path + ("[]." if typing.get_origin(field.annotation) is tuple else "."))

    walk(PolicyConfig, "")
    return tuple(found)


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a policy file, for editor validation and completion.

    Example:
        >>> from safetext.policy.schema import policy_json_schema
        >>> policy_json_schema()["title"]
        'safetext policy'
    """
    schema = PolicyConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "safetext policy"
    return schema


def policy_json_schema_text() -> str:
    """:func:`policy_json_schema` as the exact text of the committed ``policy.schema.json``."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n"


def write_policy_json_schema(path: str | Path) -> Path:
    """Write the JSON Schema to ``path`` (used to refresh ``safetext/policies/policy.schema.json``).

    Args:
        path: destination file.

    Returns:
        The path written.
    """
    target = Path(path)
    target.write_text(policy_json_schema_text(), encoding="utf-8")
    return target
