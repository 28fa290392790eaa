"""``safetext scan`` and ``safetext policy lint|schema`` through ``register(subparsers)``."""

from __future__ import annotations

import argparse
import json

import pytest

from safetext.policy.cli import register
from safetext.policy.schema import policy_json_schema_text


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="safetext")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_prints_human_readable_verdict(capsys):
    code, out, _ = _run(["scan", 'A sign that says "sh1t"'], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "action: neutralize   (policy: default)"
    assert lines[1].startswith('sanitized: A sign that says "') and "sh1t" not in lines[1]
    assert lines[2] == "rendered text: 'sh1t'"
    assert lines[3].startswith("  [18:22] 'sh1t' (shit; leetspeak) profanity/profanity score=0.90 rendered neutralize -> ")


def test_scan_json_with_policy_and_slot(capsys):
    code, out, _ = _run(["scan", "A faggot on a bench", "--policy", "strict", "--slot", "prompt_2", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["action"] == "block" and data["policy"] == "strict"
    assert data["findings"][0]["slot"] == "prompt_2"


def test_scan_bad_policy_exits_2_with_message(capsys):
    code, out, err = _run(["scan", "hello", "--policy", "nope"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: policy 'nope' is neither a file nor a shipped policy")


def test_lint_ok_and_failing_files(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("name: good\nrules:\n  - {id: p, category: profanity, terms: [zonk]}\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrules:\n  - {id: p, category: profanity, terms: [zonk], colour: red}\n", encoding="utf-8")
    code, out, err = _run(["policy", "lint", str(good)], capsys)
    assert (code, out, err) == (0, f"{good}: ok\n", "")
    code, out, err = _run(["policy", "lint", str(good), str(bad)], capsys)
    assert code == 1 and out == f"{good}: ok\n"
    assert err.startswith(f"{bad}:3:49: rules.0.colour: unknown key 'colour'. Fix: remove it")


def test_schema_prints_the_committed_schema(capsys):
    code, out, _ = _run(["policy", "schema"], capsys)
    assert code == 0 and out == policy_json_schema_text()


def test_policy_needs_a_subcommand(capsys):
    with pytest.raises(SystemExit):
        _run(["policy"], capsys)


def test_committed_policy_reference_is_generated_from_the_schema():
    from pathlib import Path

    from safetext.policy.reference import policy_reference_markdown

    page = policy_reference_markdown()
    assert "| `verification` | `VerificationConfig` |" in page and "## `verification`" in page
    assert "| `escalation` |" in page  # nested models get their own section
    committed = Path(__file__).resolve().parents[1] / "docs" / "policy_reference.md"
    assert committed.read_text(encoding="utf-8") == page, "regenerate with: safetext policy reference > docs/policy_reference.md"
