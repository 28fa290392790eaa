"""Telemetry: Prometheus metrics on a caller-supplied registry and one structured log event per request.

Nothing here runs at import time: the application builds a :class:`SafetextMetrics` (on its own
``CollectorRegistry`` or on ``prometheus_client.REGISTRY`` if it wants the default exposition) and
calls :func:`log_request_event` once per request. Label values are bounded (fixed sets, or a capped
number of validated identifiers with ``"other"`` beyond the cap) and never contain prompt text; log
events carry a short hash of the prompt unless the caller opts into logging prompts.

Example:
    >>> from prometheus_client import CollectorRegistry
    >>> from safetext.policy.verdict import Verdict
    >>> from safetext.telemetry import SafetextMetrics
    >>> metrics = SafetextMetrics(CollectorRegistry())
    >>> metrics.observe_request(Verdict(), generation_seconds=0.5)
    >>> metrics.registry.get_sample_value("safetext_requests_total", {"decision": "allow"})
    1.0
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from safetext.policy.languages import LATIN_LANGUAGES
from safetext.policy.schema import CATEGORIES
from safetext.policy.verdict import Action, Verdict

#: Values of the ``decision`` label: the verdict actions plus ``error`` (the request failed).
DECISIONS: tuple[str, ...] = tuple(action.value for action in Action) + ("error",)
#: Values of the ``guarded`` label (was the K/V patch active during the generation).
GUARDED: tuple[str, ...] = ("true", "false")
#: Values of the ``decision`` label of ``safetext_fallback_map_requests_total``: patched with the
#: all-layer fallback map, or blocked because the generator was made with ``on_unknown_model="block"``.
FALLBACK_DECISIONS: tuple[str, ...] = (Action.NEUTRALIZE.value, Action.BLOCK.value)
#: Label value that stands for every value outside the allowed set or beyond the cardinality cap.
OTHER = "other"
#: Name of the single log event emitted per request.
REQUEST_EVENT = "safetext.request"

SCAN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GENERATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PATCH_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_USER_TEXT_FIELDS = ("prompt", "sanitized_prompt", "notes")


class BoundedLabel:
    """Maps raw values of one label to a bounded set of label values.

    A value is kept when it is a short lower-case identifier (``[a-z0-9][a-z0-9_.-]*``, at most 64
    characters) and either belongs to ``allowed`` or, when ``allowed`` is None, is one of the first
    ``max_values`` distinct identifiers seen. Everything else becomes :data:`OTHER`, so a label can
    never carry free text (a prompt) nor grow without bound.

    Args:
        name: label name (used in messages).
        allowed: the fixed set of values; None accepts any identifier up to ``max_values``.
        max_values: cap on distinct values admitted when ``allowed`` is None.
    """

    def __init__(self, name: str, allowed: Iterable[str] | None = None, max_values: int = 16) -> None:
        if max_values < 1:
            raise ValueError(f"max_values for label '{name}' must be >= 1, got {max_values}")
        self.name = name
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.max_values = max_values
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        text = str(value).strip().lower() if value is not None else ""
        if not _IDENTIFIER.match(text):
            return OTHER
        if self.allowed is not None:
            return text if text in self.allowed else OTHER
        with self._lock:
            if text in self._seen:
                return text
            if len(self._seen) < self.max_values:
                self._seen.add(text)
                return text
        return OTHER


class SafetextMetrics:
    """The Prometheus metrics of safetext, registered on one registry.

    Metrics:
        ``safetext_requests_total{decision}``: requests by outcome (allow, log, neutralize, block, error).
        ``safetext_findings_total{category,backend}``: findings by policy category and backend.
        ``safetext_rule_hits_total{rule_id,backend,match,language}``: findings by the rule and backend that
        fired, how the span matched (``exact``, ``normalized``, ``readings``, ``split``, ``fuzzy``, ``compound``,
        ``classifier``) and the language of the word list that matched (``en``, ``de`` ...; at most the
        policy languages safetext ships, others count as ``other``): the first place to look when a false
        positive is reported.
        ``safetext_escalations_total{step}``: escalation steps taken after a failed image re-check.
        ``safetext_fallback_map_requests_total{decision}``: flagged requests on a model without a
            localized layer map: patched with every text-attention layer (neutralize) or blocked
            (``on_unknown_model="block"``). Read from ``verdict.details["layer_map_source"]``.
        ``safetext_scan_seconds``: time to scan a prompt.
        ``safetext_generation_seconds{guarded}``: pipeline time, with (true) or without (false) the patch.
        ``safetext_patch_overhead_seconds``: time the patch adds to a guarded generation (setup + extra encoding).

    Args:
        registry: where to register; a fresh ``CollectorRegistry`` when None. Two instances need two
            registries (registering twice on one raises ``ValueError``).
        categories: allowed ``category`` values (default: the policy schema's categories).
        max_backends: cap on distinct ``backend`` values (further backends count as ``other``).
        max_escalation_steps: cap on distinct ``step`` values.
        max_rules: cap on distinct ``rule_id`` values (further rules count as ``other``).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        categories: Iterable[str] = CATEGORIES,
        max_backends: int = 16,
        max_escalation_steps: int = 16,
        max_rules: int = 32,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._category = BoundedLabel("category", categories)
        self._backend = BoundedLabel("backend", None, max_backends)
        self._step = BoundedLabel("step", None, max_escalation_steps)
        self._rule = BoundedLabel("rule_id", None, max_rules)
        self._match = BoundedLabel("match", MATCH_KINDS)
        self._language = BoundedLabel("language", LATIN_LANGUAGES)
        try:
            self.requests = Counter(
                "safetext_requests_total", "Requests by decision.", ["decision"], registry=self.registry
            )
            self.findings = Counter(
                "safetext_findings_total", "Findings by category and backend.", ["category", "backend"],
                registry=self.registry,
            )
            self.rule_hits = Counter(
                "safetext_rule_hits_total", "Findings by rule, backend, kind of match and list language.",
                ["rule_id", "backend", "match", "language"],
                registry=self.registry,
            )
            self.escalations = Counter(
                "safetext_escalations_total", "Escalation steps after a failed image re-check.", ["step"],
                registry=self.registry,
            )
            self.fallback_map_requests = Counter(
                "safetext_fallback_map_requests_total",
                "Flagged requests on a model without a localized layer map (all-layer patch or block).",
                ["decision"], registry=self.registry,
            )
            self.scan_seconds = Histogram(
                "safetext_scan_seconds", "Prompt scan time.", buckets=SCAN_BUCKETS, registry=self.registry
            )
            self.generation_seconds = Histogram(
                "safetext_generation_seconds", "Generation time, with (guarded=true) or without the patch.",
                ["guarded"], buckets=GENERATION_BUCKETS, registry=self.registry,
            )
            self.patch_overhead_seconds = Histogram(
                "safetext_patch_overhead_seconds", "Time the K/V patch adds to a guarded generation.",
                buckets=PATCH_OVERHEAD_BUCKETS, registry=self.registry,
            )
        except ValueError as exc:
            raise ValueError(
                f"cannot register safetext metrics: {exc}; this registry already holds them. Build one "
                "SafetextMetrics per registry and share it, or pass a fresh CollectorRegistry()"
            ) from exc
        # Export zeros for the fixed label sets so dashboards see every series from the start.
        for decision in DECISIONS:
            self.requests.labels(decision=decision)
        for guarded in GUARDED:
            self.generation_seconds.labels(guarded=guarded)
        for decision in FALLBACK_DECISIONS:
            self.fallback_map_requests.labels(decision=decision)

    def observe_request(
        self,
        verdict: Verdict,
        generation_seconds: float | None = None,
        *,
        guarded: bool | None = None,
        scan_seconds: float | None = None,
        patch_overhead_seconds: float | None = None,
    ) -> None:
        """Record one finished request (call once per request, also for scan-only and blocked ones).

        Counts the decision, every finding and every escalation step listed in the verdict
        (``verdict.details["escalations"]``, see :func:`escalation_steps`), a request served by a
        fallback layer map (``verdict.details["layer_map_source"] == "fallback"``), and observes each
        time that is given.

        Args:
            verdict: the request's final verdict.
            generation_seconds: pipeline time; None when nothing was generated (scan, block).
            guarded: whether the patch was active; default: ``verdict.action`` is ``neutralize``.
            scan_seconds: prompt scan time, when measured.
            patch_overhead_seconds: time the patch added, when measured.
        """
        self.requests.labels(decision=verdict.action.value).inc()
        for finding in verdict.findings:
            backend = self._backend(finding.backend)
            self.findings.labels(category=self._category(finding.category), backend=backend).inc()
            self.rule_hits.labels(
                rule_id=self._rule(finding.rule_id), backend=backend, match=self._match(match_kind(finding)),
                language=self._language(finding.language),
            ).inc()
        for step in escalation_steps(verdict):
            self.observe_escalation(step)
        if isinstance(verdict.details, Mapping) and verdict.details.get("layer_map_source") == "fallback":
            decision = verdict.action.value if verdict.action.value in FALLBACK_DECISIONS else OTHER
            self.fallback_map_requests.labels(decision=decision).inc()
        if scan_seconds is not None:
            self.scan_seconds.observe(_seconds(scan_seconds, "scan_seconds"))
        if generation_seconds is not None:
            if guarded is None:
                guarded = verdict.action is Action.NEUTRALIZE
            label = "true" if guarded else "false"
            self.generation_seconds.labels(guarded=label).observe(_seconds(generation_seconds, "generation_seconds"))
        if patch_overhead_seconds is not None:
            self.patch_overhead_seconds.observe(_seconds(patch_overhead_seconds, "patch_overhead_seconds"))

    def observe_error(self) -> None:
        """Record a request that failed before it produced a verdict (``decision="error"``)."""
        self.requests.labels(decision="error").inc()

    def observe_escalation(self, step: str) -> None:
        """Record one escalation step (e.g. ``earlier_start``, ``all_layers``, ``block``)."""
        self.escalations.labels(step=self._step(step)).inc()


#: Values of the ``match`` label of ``safetext_rule_hits_total``.
MATCH_KINDS = ("exact", "normalized", "readings", "split", "masked", "fuzzy", "compound", "classifier")


def match_kind(finding: Any) -> str:
    """How a finding matched, as a bounded label: the variant step, ``classifier``, ``normalized`` or ``exact``."""
    if finding.backend != "wordlist":
        return "classifier"
    for kind in ("readings", "split", "masked", "fuzzy", "compound"):
        if kind in finding.normalizations:
            return kind
    return "normalized" if finding.normalizations else "exact"


def escalation_steps(verdict: Verdict) -> tuple[str, ...]:
    """Names of the escalation steps a verdict records.

    Read from ``verdict.details["escalations"]``: a sequence of step names, or of mappings with a
    ``"step"`` key. Anything else yields no steps.
    """
    raw = verdict.details.get("escalations") if isinstance(verdict.details, Mapping) else None
    if not isinstance(raw, (list, tuple)):
        return ()
    steps = []
    for item in raw:
        if isinstance(item, str):
            steps.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("step"), str):
            steps.append(item["step"])
    return tuple(steps)


def prompt_hash(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text`` (UTF-8): correlates requests without storing them.

    A hash of a short prompt can be guessed by trying candidates; it keeps prompts out of log storage,
    it does not make them secret from someone who can read the logs and guess.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def request_event(verdict: Verdict | None, *, seconds: float | None, log_prompts: bool = False, **fields: Any) -> dict[str, Any]:
    """The fields of the per-request log event (what :func:`log_request_event` emits).

    Text that comes from the user (prompt, sanitized prompt, matched spans, replacements, notes) is
    included only when ``log_prompts`` is True; otherwise the prompt appears as ``prompt_sha256``.

    Args:
        verdict: the request's verdict; None for a request that failed before a verdict existed.
        seconds: total request time.
        log_prompts: include user text (only when the policy or the operator opts in).
        **fields: extra fields (request id, route, status ...); they may not reuse the event's own names.
    """
    event: dict[str, Any] = {"decision": verdict.action.value if verdict is not None else "error"}
    if seconds is not None:
        event["seconds"] = round(float(seconds), 6)
    if verdict is not None:
        event["policy"] = verdict.policy
        event["prompt_sha256"] = prompt_hash(verdict.prompt)
        event["prompt_chars"] = len(verdict.prompt)
        event["findings"] = [_finding_fields(f, log_prompts) for f in verdict.findings]
        event["escalations"] = list(escalation_steps(verdict))
        if log_prompts:
            event["prompt"] = verdict.prompt
            event["sanitized_prompt"] = verdict.sanitized_prompt
            event["notes"] = list(verdict.notes)
    clash = sorted(set(fields) & (set(event) | set(_USER_TEXT_FIELDS) | {"event", "prompt_sha256"}))
    if clash:
        raise ValueError(f"log field(s) {clash} are set by safetext itself; rename them (e.g. 'app_{clash[0]}')")
    event.update(fields)
    return event


def log_request_event(
    logger: Any,
    verdict: Verdict | None,
    *,
    seconds: float | None,
    log_prompts: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """Emit the single structured log event of one request and return its fields.

    When the application has configured structlog (``structlog.is_configured()``) the event goes
    through ``structlog.get_logger(<logger name>)``; otherwise through the stdlib ``logger`` as one
    record whose message is ``safetext.request`` followed by ``key=value`` pairs and whose
    ``record.safetext`` attribute holds the fields. safetext never configures logging itself.

    Args:
        logger: a stdlib ``logging.Logger``, a structlog logger, or None for ``logging.getLogger("safetext")``.
        verdict: the request's verdict; None when the request failed before a verdict existed.
        seconds: total request time.
        log_prompts: include the prompt and other user text (default: only a hash).
        **fields: extra fields such as ``route``, ``status``, ``request_id``.

    Example:
        >>> import logging
        >>> from safetext.policy.verdict import Verdict
        >>> from safetext.telemetry import log_request_event
        >>> log_request_event(logging.getLogger("app"), Verdict(prompt="hi"), seconds=0.1)["prompt_sha256"]
        '8f434346648f6b96'
    """
    event = request_event(verdict, seconds=seconds, log_prompts=log_prompts, **fields)
    level = logging.WARNING if event["decision"] in ("block", "error") else logging.INFO
    if logger is None:
        logger = logging.getLogger("safetext")
    if not isinstance(logger, logging.Logger):  # a structlog (or structlog-like) logger
        logger.log(level, REQUEST_EVENT, **event)
    elif structlog.is_configured():
        structlog.get_logger(logger.name).log(level, REQUEST_EVENT, **event)
    elif logger.isEnabledFor(level):
        summary = " ".join(f"{key}={_compact(value)}" for key, value in event.items())
        logger.log(level, "%s %s", REQUEST_EVENT, summary, extra={"safetext": event})
    return event


def _finding_fields(finding: Any, log_prompts: bool) -> dict[str, Any]:
    fields = {
        "rule_id": finding.rule_id,
        "category": finding.category,
        "backend": finding.backend,
        "action": finding.action.value,
        "slot": finding.slot,
        "start": finding.start,
        "end": finding.end,
        "score": finding.score,
        "rendered": finding.rendered,
        "match": match_kind(finding),
        "language": finding.language,
    }
    if log_prompts:
        fields.update(text=finding.text, normalized=finding.normalized, replacement=finding.replacement)
    return fields


def _compact(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return ",".join(str(item.get("rule_id", item)) for item in value)
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _seconds(value: float, name: str) -> float:
    seconds = float(value)
    if not seconds >= 0.0:
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    return seconds
