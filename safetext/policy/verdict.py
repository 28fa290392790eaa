"""The result of scanning a prompt: what was found, where, by which rule, and what to do.

A :class:`Verdict` is frozen, JSON-serializable (:meth:`Verdict.to_json`) and is both logged and
returned to the caller (``output.verdict``).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Action(str, Enum):
    """What happens to a request. Ordered by severity: allow < log < neutralize < block."""

    ALLOW = "allow"
    LOG = "log"  # shadow mode: findings are reported, the request runs unchanged
    NEUTRALIZE = "neutralize"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.ALLOW: 0, Action.LOG: 1, Action.NEUTRALIZE: 2, Action.BLOCK: 3}


class Finding(BaseModel):
    """One offending span of one prompt slot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str = Field(description="Id of the policy rule that matched (as configured).")
    category: str = Field(description="profanity | sexual | slur | insult | hate | custom ...")
    text: str = Field(description="The original span as written in the prompt.")
    start: int = Field(ge=0, description="Character offset of the span in the prompt (inclusive).")
    end: int = Field(ge=0, description="Character offset of the span in the prompt (exclusive).")
    normalized: str = Field(description="The span after normalization, as matched.")
    normalizations: tuple[str, ...] = Field(default=(), description="Normalization steps that changed the span.")
    score: float = Field(ge=0.0, le=1.0, description="Backend score in [0, 1].")
    backend: str = Field(description="Backend that produced the score (e.g. 'wordlist').")
    action: Action
    rendered: bool = Field(default=True, description="True when the span is text the prompt asks to be written.")
    replacement: str | None = Field(default=None, description="Benign text that replaces the span, if neutralized.")
    slot: str = Field(default="prompt", description="Pipeline argument the span came from (prompt, prompt_2, ...).")
    language: str = Field(default="en", description="Language of the word list that matched (the policy's own lists and backends: 'en').")


class Verdict(BaseModel):
    """The decision for one prompt (or, merged, for one request).

    Attributes:
        action: the overall action (the most severe of the findings, or ``allow``).
        prompt: the scanned text.
        sanitized_prompt: the prompt with every neutralized span replaced (equal to ``prompt`` when
            nothing is neutralized).
        findings: every offending span.
        rendered_spans: ``(start, end)`` of the text the prompt asks to be written into the image.
        notes: free-form remarks added along the way (fallback layer maps, escalations ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action = Action.ALLOW
    prompt: str = ""
    sanitized_prompt: str = ""
    findings: tuple[Finding, ...] = ()
    rendered_spans: tuple[tuple[int, int], ...] = ()
    policy: str = Field(default="", description="Name of the policy that produced the verdict.")
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict, description="Patch/escalation details added by the generator.")

    @property
    def flagged(self) -> bool:
        """True when the request must be changed (neutralize) or refused (block)."""
        return self.action in (Action.NEUTRALIZE, Action.BLOCK)

    def with_details(self, **details: Any) -> "Verdict":
        """Return a copy with ``details`` merged in (the verdict itself stays frozen)."""
        merged = dict(self.details)
        merged.update(details)
        return self.model_copy(update={"details": merged})

    def with_note(self, note: str) -> "Verdict":
        return self.model_copy(update={"notes": self.notes + (note,)})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self, **kwargs: Any) -> str:
        """Stable JSON form (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)
