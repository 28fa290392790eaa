"""The scan API: verdicts, actions of the shipped policies, replacement, bad inputs, multi-slot merging,
thread safety."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from safetext.errors import PolicyError
from safetext.policy import Policy, Verdict, load_policy, scan_prompt
from safetext.policy.replacement import Replacer, match_case
from safetext.policy.schema import ReplacementConfig
from safetext.policy.verdict import Action


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def test_neutralize_swaps_only_the_offending_span(default):
    prompt = 'A protest sign that says "FUCK THE RULES" in a crowded street'
    verdict = default.scan(prompt)
    (finding,) = verdict.findings
    assert verdict.action is Action.NEUTRALIZE and verdict.flagged
    assert (finding.text, finding.start, finding.end, finding.rule_id) == ("FUCK", 26, 30, "profanity")
    assert finding.replacement.isupper() and len(finding.replacement) == 4
    assert verdict.sanitized_prompt == prompt[:26] + finding.replacement + prompt[30:]
    assert verdict.policy == "default" and finding.backend == "wordlist" and finding.slot == "prompt"


def test_clean_prompt_is_allowed_unchanged(default):
    prompt = "A watercolor of a lighthouse with a sign that says WELCOME"
    verdict = default.scan(prompt)
    assert (verdict.action, verdict.findings, verdict.sanitized_prompt) == (Action.ALLOW, (), prompt)
    assert not verdict.flagged


def test_verdict_json_is_stable_and_round_trips(default):
    verdict = default.scan('A sign that says "sh1t"', slot="prompt_2")
    text = verdict.to_json()
    assert text == default.scan('A sign that says "sh1t"', slot="prompt_2").to_json()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["findings"][0]["normalizations"] == ["leetspeak"] and data["findings"][0]["slot"] == "prompt_2"
    assert Verdict.model_validate(data) == verdict


def test_replacement_is_deterministic_across_processes(default):
    prompts = ['A sign that says "fuck"', "A sign that says bitch", "A sign that says WHORE", "A sign that says c*nt"]
    here = [default.scan(p).sanitized_prompt for p in prompts]
    code = (
        "import json,sys;from safetext.policy import load_policy;p=load_policy('default');"
        f"print(json.dumps([p.scan(t).sanitized_prompt for t in {prompts!r}]))"
    )
    for seed in ("1", "2"):  # Python's hash() changes with PYTHONHASHSEED; the choice must not
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1", "PATH": ""},
        )
        assert json.loads(out.stdout) == here


def test_auto_replacement_closest_length_and_case():
    words = ["sun", "love", "happy", "garden", "rainbow"]
    replacer = Replacer(ReplacementConfig(), words)
    assert replacer.auto("fuck", 4) == "love"
    assert replacer.auto("x", 1) == "sun" and replacer.auto("x", 30) == "rainbow"
    assert replacer.choose("fuck", "fuck", "FUCK") == "LOVE"
    assert replacer.choose("fuck", "fuck", "Fuck") == "Love"
    assert match_case("joy", "f*ck") == "joy"
    same_length = Replacer(ReplacementConfig(), ["aaaa", "bbbb", "cccc", "dddd"])
    picks = {same_length.auto(term, 4) for term in ("fuck", "shit", "cunt", "dick", "piss", "twat", "wank")}
    assert len(picks) > 1  # the key spreads terms over words of equal length
    assert same_length.auto("fuck", 4) == same_length.auto("fuck", 4)


def test_fixed_and_mapping_replacement_modes(default):
    config = default.config
    fixed = Policy(config.model_copy(update={"replacement": ReplacementConfig(mode="fixed", word="peace"), "name": "f"}))
    assert fixed.scan("A sign that says SHIT and cunt").sanitized_prompt == "A sign that says PEACE and peace"
    mapping = Policy(config.model_copy(update={
        "replacement": ReplacementConfig(mode="mapping", mapping={"fuck": "duck"}), "name": "m",
    }))
    verdict = mapping.scan("A sign that says Fucks and shit")
    assert verdict.findings[0].replacement == "Duck"  # plural "fucks" falls back to its listed base
    assert verdict.findings[1].replacement in mapping._replacer.words


def test_strict_blocks_hateful_prompts_but_neutralizes_quoted_slurs():
    strict = load_policy("strict")
    assert strict.scan('A sign that says "faggot"').action is Action.NEUTRALIZE
    blocked = strict.scan("A faggot holding a sign that says hello")
    assert blocked.action is Action.BLOCK and blocked.findings[0].rendered is False
    slogan = strict.scan("A banner with heil hitler written on it")
    assert slogan.action is Action.BLOCK and slogan.findings[0].rule_id == "hateful-prompt"
    assert strict.scan('A sign that says "shit"').action is Action.NEUTRALIZE


def test_permissive_only_logs():
    verdict = load_policy("permissive").scan('A faggot holding a sign that says "shit"')
    assert verdict.action is Action.LOG and not verdict.flagged
    assert verdict.sanitized_prompt == verdict.prompt
    assert [f.action for f in verdict.findings] == [Action.LOG, Action.LOG]
    assert all(f.replacement is None for f in verdict.findings)


@pytest.mark.parametrize(
    "bad, message",
    [
        (None, "scan\\(\\) expects str for slot 'prompt', got NoneType; pass the prompt text"),
        (b"shit", "got bytes; decode it first: text.decode\\('utf-8'\\)"),
        (42, "got int"),
        ("x" * 10_001, "has 10001 characters, over the policy limit max_prompt_chars=10000; shorten the prompt or raise max_prompt_chars"),
        ("bad \ud800 text", "not valid Unicode: lone surrogate '\\\\ud800' at offset 4"),
    ],
    ids=["none", "bytes", "int", "too-long", "surrogate"],
)
def test_bad_input_raises_policy_error(default, bad, message):
    with pytest.raises(PolicyError, match=message):
        default.scan(bad)


def test_100kb_prompt_is_refused_not_scanned(default):
    with pytest.raises(PolicyError, match="102400 characters"):
        default.scan("a" * 102_400)


def test_empty_and_blank_prompts_are_allowed(default):
    for text in ("", "   \n"):
        verdict = default.scan(text)
        assert (verdict.action, verdict.findings, verdict.sanitized_prompt) == (Action.ALLOW, (), text)


def test_bad_slot_is_refused(default):
    with pytest.raises(PolicyError, match="slot must be a non-empty string"):
        default.scan("hello", slot="")


def test_scan_prompt_uses_default_policy():
    verdict = scan_prompt("A sign that says f.u.c.k")
    assert verdict.policy == "default" and verdict.findings[0].normalizations == ("separators",)
    assert scan_prompt("A sign that says f.u.c.k", policy="permissive").action is Action.LOG


def test_merge_verdicts_takes_most_severe_and_keeps_slots():
    strict = load_policy("strict")
    verdicts = {
        "prompt": strict.scan('A sign that says "shit"', slot="prompt"),
        "prompt_2": strict.scan("A faggot on a bench", slot="prompt_2"),
    }
    merged = Policy.merge_verdicts(verdicts)
    assert merged.action is Action.BLOCK
    assert [f.slot for f in merged.findings] == ["prompt", "prompt_2"]
    assert merged.details["sanitized_prompts"]["prompt"] == verdicts["prompt"].sanitized_prompt
    assert merged.prompt == verdicts["prompt"].prompt
    as_list = Policy.merge_verdicts(list(verdicts.values()))
    assert set(as_list.details["sanitized_prompts"]) == {"prompt", "prompt_2"}
    with pytest.raises(PolicyError, match="at least one verdict"):
        Policy.merge_verdicts([])
    with pytest.raises(PolicyError, match="slot 'prompt' holds str"):
        Policy.merge_verdicts({"prompt": "nope"})


def test_one_policy_serves_many_threads(default):
    prompts = [f'A sign that says "{w}" number {i}' for i, w in enumerate(["shit", "hello", "f u c k", "cunt"] * 50)]
    expected = [default.scan(p).to_json() for p in prompts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda p: default.scan(p).to_json(), prompts))
    assert got == expected
