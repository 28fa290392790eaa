"""Telemetry: metrics on a caller-supplied registry, bounded labels, one log event per request, no prompt text."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from safetext.policy.verdict import Action, Finding, Verdict
from safetext.telemetry import (
    DECISIONS,
    OTHER,
    BoundedLabel,
    SafetextMetrics,
    escalation_steps,
    log_request_event,
    prompt_hash,
)

SECRET_PROMPT = 'A red sign that says "zebraxylophone".'


def _finding(category="sexual", backend="wordlist", text="zebraxylophone", start=22) -> Finding:
    return Finding(
        rule_id=f"rule-{category}", category=category, text=text, start=start, end=start + len(text),
        normalized=text, score=1.0, backend=backend, action=Action.NEUTRALIZE, replacement="peace",
    )


def _neutralized(**details) -> Verdict:
    return Verdict(
        action=Action.NEUTRALIZE, prompt=SECRET_PROMPT, sanitized_prompt='A red sign that says "peace".',
        findings=(_finding(),), policy="default", notes=(f"neutralized {SECRET_PROMPT}",), details=details,
    )


@pytest.fixture
def plain_logging():
    """structlog unconfigured (the stdlib path), restored afterwards."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def value(metrics: SafetextMetrics, name: str, labels: dict | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_two_instances_do_not_collide_and_one_registry_refuses_a_second():
    a, b = SafetextMetrics(), SafetextMetrics()
    assert a.registry is not b.registry
    a.observe_request(Verdict())
    assert value(a, "safetext_requests_total", {"decision": "allow"}) == 1.0
    assert value(b, "safetext_requests_total", {"decision": "allow"}) == 0.0
    with pytest.raises(ValueError, match="this registry already holds them.*pass a fresh CollectorRegistry"):
        SafetextMetrics(a.registry)


def test_metric_values_after_calls():
    m = SafetextMetrics(CollectorRegistry())
    for decision in DECISIONS:  # fixed label sets are exported from the start
        assert value(m, "safetext_requests_total", {"decision": decision}) == 0.0
    m.observe_request(Verdict(prompt="a cat"), 0.25, scan_seconds=0.002)
    m.observe_request(_neutralized(escalations=[{"step": "earlier_start"}, "block"]), 0.75, scan_seconds=0.004, patch_overhead_seconds=0.01)
    m.observe_request(Verdict(action=Action.BLOCK, findings=(_finding("slur", "better_profanity"),)), scan_seconds=0.001)
    m.observe_error()
    assert [value(m, "safetext_requests_total", {"decision": d}) for d in DECISIONS] == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert value(m, "safetext_findings_total", {"category": "sexual", "backend": "wordlist"}) == 1.0
    assert value(m, "safetext_findings_total", {"category": "slur", "backend": "better_profanity"}) == 1.0
    assert value(m, "safetext_escalations_total", {"step": "earlier_start"}) == 1.0
    assert value(m, "safetext_escalations_total", {"step": "block"}) == 1.0
    assert value(m, "safetext_scan_seconds_count") == 3.0
    assert value(m, "safetext_scan_seconds_sum") == pytest.approx(0.007)
    # guarded defaults to "the verdict neutralized"; the blocked request generated nothing
    assert value(m, "safetext_generation_seconds_count", {"guarded": "false"}) == 1.0
    assert value(m, "safetext_generation_seconds_sum", {"guarded": "false"}) == pytest.approx(0.25)
    assert value(m, "safetext_generation_seconds_count", {"guarded": "true"}) == 1.0
    assert value(m, "safetext_generation_seconds_sum", {"guarded": "true"}) == pytest.approx(0.75)
    assert value(m, "safetext_generation_seconds_bucket", {"guarded": "true", "le": "0.5"}) == 0.0
    assert value(m, "safetext_generation_seconds_bucket", {"guarded": "true", "le": "1.0"}) == 1.0
    assert value(m, "safetext_patch_overhead_seconds_count") == 1.0
    m.observe_request(Verdict(), 1.0, guarded=True)
    assert value(m, "safetext_generation_seconds_count", {"guarded": "true"}) == 2.0
    with pytest.raises(ValueError, match="generation_seconds must be a non-negative number of seconds, got -1"):
        m.observe_request(Verdict(), -1)


def test_labels_are_bounded_and_never_carry_prompt_text():
    m = SafetextMetrics(CollectorRegistry(), max_backends=2)
    findings = (
        _finding("custom", "wordlist"),
        _finding("sexual", "transformers"),
        _finding("sexual", "third_backend"),  # beyond the cap
        _finding(SECRET_PROMPT, SECRET_PROMPT),  # free text never becomes a label
    )
    m.observe_request(Verdict(action=Action.NEUTRALIZE, prompt=SECRET_PROMPT, findings=findings, details={"escalations": [SECRET_PROMPT]}))
    assert value(m, "safetext_findings_total", {"category": "custom", "backend": "wordlist"}) == 1.0
    assert value(m, "safetext_findings_total", {"category": "sexual", "backend": "transformers"}) == 1.0
    assert value(m, "safetext_findings_total", {"category": "sexual", "backend": OTHER}) == 1.0
    assert value(m, "safetext_findings_total", {"category": OTHER, "backend": OTHER}) == 1.0
    assert value(m, "safetext_escalations_total", {"step": OTHER}) == 1.0
    exposition = generate_latest(m.registry).decode()
    assert "zebraxylophone" not in exposition and "red sign" not in exposition
    label = BoundedLabel("category", ("slur",))
    assert [label("slur"), label("SLUR"), label("hate"), label(None)] == ["slur", "slur", OTHER, OTHER]


def test_escalation_steps_reads_names_and_mappings_only():
    assert escalation_steps(Verdict(details={"escalations": ["a", {"step": "b"}, {"x": 1}, 3]})) == ("a", "b")
    assert escalation_steps(Verdict(details={"escalations": "block"})) == ()
    assert escalation_steps(Verdict()) == ()


def test_importing_safetext_registers_no_default_metric():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, prometheus_client
        before = set(prometheus_client.REGISTRY._names_to_collectors)
        import safetext
        skipped = []
        for info in pkgutil.walk_packages(safetext.__path__, "safetext."):
            if info.name.endswith("__main__"):  # entry points run on import
                continue
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                skipped.append(info.name)
        from safetext.telemetry import SafetextMetrics
        from prometheus_client import CollectorRegistry
        custom = CollectorRegistry()
        m = SafetextMetrics(custom)
        m.observe_error()
        after = set(prometheus_client.REGISTRY._names_to_collectors)
        print(sorted(after - before))
        print(sorted(n for n in custom._names_to_collectors if n.startswith("safetext_requests")))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    added, custom = out.stdout.strip().splitlines()[-2:]
    assert added == "[]"
    assert "safetext_requests_total" in custom


def test_stdlib_log_event_hashes_the_prompt(plain_logging, caplog):
    log = logging.getLogger("safetext.test")
    with caplog.at_level(logging.INFO, logger="safetext.test"):
        event = log_request_event(log, _neutralized(escalations=["all_layers"]), seconds=0.5, route="/v1/generate", status=200)
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.name == "safetext.test" and record.levelno == logging.INFO
    assert record.safetext == event
    assert event["decision"] == "neutralize" and event["prompt_sha256"] == prompt_hash(SECRET_PROMPT)
    assert len(event["prompt_sha256"]) == 16 and int(event["prompt_sha256"], 16) >= 0
    assert event["findings"][0]["rule_id"] == "rule-sexual" and event["escalations"] == ["all_layers"]
    assert event["route"] == "/v1/generate" and event["status"] == 200 and event["seconds"] == 0.5
    text = record.getMessage() + json.dumps(record.safetext)
    assert record.getMessage().startswith("safetext.request decision=neutralize")
    for secret in ("zebraxylophone", "red sign", "peace"):
        assert secret not in text


def test_stdlib_log_event_includes_prompts_on_opt_in_and_warns_on_block(plain_logging, caplog):
    with caplog.at_level(logging.INFO, logger="safetext"):
        log_request_event(None, _neutralized(), seconds=0.1, log_prompts=True)
        log_request_event(None, Verdict(action=Action.BLOCK, prompt="x"), seconds=0.1)
        log_request_event(None, None, seconds=0.2, error="RuntimeError")
    opted, blocked, failed = caplog.records
    assert opted.safetext["prompt"] == SECRET_PROMPT and opted.safetext["findings"][0]["text"] == "zebraxylophone"
    assert blocked.levelno == logging.WARNING and failed.levelno == logging.WARNING
    assert failed.safetext == {"decision": "error", "seconds": 0.2, "error": "RuntimeError"}
    with pytest.raises(ValueError, match=r"log field\(s\) \['prompt'\] are set by safetext itself"):
        log_request_event(None, Verdict(), seconds=0.1, prompt="smuggled")


def test_structlog_path_when_the_application_configured_it(caplog):
    structlog.reset_defaults()
    try:
        with capture_logs() as events, caplog.at_level(logging.DEBUG):
            assert structlog.is_configured()
            log_request_event(logging.getLogger("safetext.service"), _neutralized(), seconds=0.3, request_id="r1")
        assert caplog.records == []  # not also sent through stdlib
        (event,) = events
        assert event["event"] == "safetext.request" and event["log_level"] == "info"
        assert event["decision"] == "neutralize" and event["request_id"] == "r1"
        assert event["prompt_sha256"] == prompt_hash(SECRET_PROMPT)
        assert "zebraxylophone" not in json.dumps(event) and "red sign" not in json.dumps(event)
        with capture_logs() as events:  # a structlog logger passed directly is used as is
            log_request_event(structlog.get_logger("app"), Verdict(action=Action.BLOCK), seconds=0.1)
        assert events[0]["log_level"] == "warning" and events[0]["decision"] == "block"
    finally:
        structlog.reset_defaults()
