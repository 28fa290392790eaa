"""Toxicity of OCR text through the policy engine."""

from __future__ import annotations

import pytest

from safetext.policy.verdict import Action, Finding, Verdict
from safetext.scoring import ToxicityScorer, is_toxic, scan_text, toxicity_of_text
from safetext.scoring.toxicity import rendered_text_policy

policy_module = pytest.importorskip("safetext.policy")
if not hasattr(policy_module, "load_policy"):  # the engine is built in parallel
    pytest.skip("safetext.policy.load_policy is not available", allow_module_level=True)


def finding(score: float, action: Action) -> Finding:
    return Finding(
        rule_id="r", category="profanity", text="x", start=0, end=1, normalized="x", score=score,
        backend="fake", action=action,
    )


class FakePolicy:
    """Any object with scan(text) -> Verdict is accepted as is."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.seen: list[str] = []

    def scan(self, text: str) -> Verdict:
        self.seen.append(text)
        return self.verdict


def test_score_is_the_highest_finding_score_and_toxic_follows_the_action():
    verdict = Verdict(action=Action.NEUTRALIZE, findings=(finding(0.3, Action.LOG), finding(0.8, Action.NEUTRALIZE)))
    fake = FakePolicy(verdict)
    assert toxicity_of_text("x y", fake) == 0.8
    assert is_toxic("x y", fake) is True
    assert fake.seen == ["x y", "x y"]
    logged = FakePolicy(Verdict(action=Action.LOG, findings=(finding(0.9, Action.LOG),)))
    assert toxicity_of_text("x", logged) == 0.9 and is_toxic("x", logged) is False
    blocked = FakePolicy(Verdict(action=Action.BLOCK, findings=(finding(1.0, Action.BLOCK),)))
    assert is_toxic("x", blocked) is True
    clean = FakePolicy(Verdict())
    assert toxicity_of_text("x", clean) == 0.0 and is_toxic("x", clean) is False


# Word list from the shipped LDNOOBW list; bare words outside quotes would only be logged.
TEST_POLICY = {
    "name": "ocr-test",
    "lists": [{"path": "lists/ldnoobw_en.txt", "category": "sexual"}],
    "rules": [
        {"id": "sexual", "category": "sexual", "action": "neutralize", "outside_rendered": "log"},
        {"id": "brand", "category": "custom", "terms": ["acme"], "action": "block", "outside_rendered": "log"},
    ],
}


@pytest.fixture(scope="module")
def scorer() -> ToxicityScorer:
    return ToxicityScorer(TEST_POLICY)


def test_clean_text_scores_zero(scorer):
    for text in ["", "   ", "a quiet lake", "OPEN", "Scunthorpe cockpit"]:
        assert scorer.score(text) == 0.0, text
        assert scorer.is_toxic(text) is False, text
        assert scorer.scan(text).findings == ()


def test_unquoted_ocr_text_counts_as_rendered(scorer):
    verdict = scorer.scan("blowjob")
    assert [(f.text, f.rendered, f.slot, f.action) for f in verdict.findings] == [
        ("blowjob", True, "ocr", Action.NEUTRALIZE)
    ]
    assert scorer.score("blowjob") == verdict.findings[0].score == 1.0  # the wordlist backend scores 1.0
    assert scorer.is_toxic("blowjob") is True
    assert scorer.is_toxic("ACME") is True and scan_text("ACME", scorer).action is Action.BLOCK
    # The same policy used directly reads bare words as scene text: logged, not neutralized.
    plain = policy_module.load_policy(TEST_POLICY).scan("blowjob")
    assert plain.action is Action.LOG and not plain.findings[0].rendered
    # Evasions the policy normalizes are caught in OCR text too.
    assert scorer.is_toxic("B L O W J O B") is True


def test_functions_accept_scorers_policies_and_mappings(scorer):
    policy = policy_module.load_policy(TEST_POLICY)
    for how in (scorer, policy, TEST_POLICY, policy_module.PolicyConfig.model_validate(TEST_POLICY)):
        assert is_toxic("blowjob", how) is True
        assert toxicity_of_text("blowjob", how) == 1.0
        assert toxicity_of_text("a quiet lake", how) == 0.0


def test_rendered_text_policy_is_idempotent(scorer):
    converted = scorer.policy
    assert converted.config.rendered_text.enabled is False
    assert converted.config.rules == policy_module.load_policy(TEST_POLICY).config.rules
    assert rendered_text_policy(converted) is converted
    assert ToxicityScorer(scorer).policy is converted


@pytest.mark.skipif(
    "default" not in policy_module.shipped_policies(), reason="the shipped default policy is not present"
)
def test_default_policy_flags_profanity_in_ocr_text():
    default = ToxicityScorer()
    assert default.is_toxic("SH1T") is True
    assert toxicity_of_text("shit") > 0.0
    assert default.is_toxic("a quiet lake") is False


def test_bad_arguments_are_refused(scorer):
    with pytest.raises(TypeError, match="policy has type int; pass a Policy"):
        toxicity_of_text("x", 3)
    with pytest.raises(TypeError, match="text has type bytes; pass the OCR text as a string"):
        scorer.score(b"shit")  # type: ignore[arg-type]
