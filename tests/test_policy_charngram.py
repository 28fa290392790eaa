"""The shipped character n-gram classifier: offline loading, its place in the shipped policies, what it
scores, reproducible training, and the rule/backend labels a finding leaves in metrics and logs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from safetext.errors import BackendError
from safetext.policy import Policy, load_policy
from safetext.policy.charngram import (
    CLEAN,
    MODEL_DIR,
    default_training_sets,
    load_model,
    train,
    training_data,
)
from safetext.policy.cli import explain
from safetext.telemetry import SafetextMetrics, match_kind


def test_shipped_weights_load_offline_and_are_small(monkeypatch):
    # no network: any attempt to open a socket fails the test
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the classifier tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    load_model.cache_clear()
    model = load_model()
    assert model.config.classes[0] == CLEAN
    assert set(model.config.classes[1:]) == {"profanity", "sexual", "slur", "insult", "hate"}
    size = sum(p.stat().st_size for p in MODEL_DIR.iterdir())
    assert size < 3_000_000, size
    training = json.loads((MODEL_DIR / "training.json").read_text())
    assert training["excluded_words"] > 0  # the evaluation prompts' words were kept out of training
    assert training["held_out"]["false_positive_rate"] <= 0.01 and training["held_out"]["min_score"] == 0.95


@pytest.mark.parametrize("name", ["default", "strict", "permissive"])
def test_shipped_policies_run_the_classifier_after_the_word_lists(name):
    assert load_policy(name).backends == ("wordlist", "charngram")


def test_classifier_scores_unknown_toxic_words_and_leaves_clean_ones_alone():
    model = load_model()
    for word in ("fuckbucket", "twatmuffin", "wankstain"):
        score, category = model.score(word)
        assert score >= 0.9, (word, score)
        assert category in ("profanity", "sexual", "insult", "slur")
    for word in ("artstation", "bokeh", "cyberpunk", "rutkowski", "beksinski", "giger"):
        assert model.score(word)[0] < 0.5, word


def test_classifier_findings_carry_backend_score_and_category():
    config = load_policy("default").config
    spec = type(config.backends[0])
    alone = Policy(config.model_copy(update={"backends": (spec(name="charngram"),), "name": "classifier-only"}))
    prompt = "a neon sign that says twatmuffin, bokeh, trending on artstation"
    verdict = alone.scan(prompt)
    assert [(f.text, f.backend) for f in verdict.findings] == [("twatmuffin", "charngram")]
    finding = verdict.findings[0]
    assert 0.9 <= finding.score <= 1.0
    assert finding.category in ("profanity", "sexual", "insult", "slur")
    assert finding.rule_id == finding.category
    assert verdict.sanitized_prompt == prompt.replace("twatmuffin", finding.replacement)
    # English words and frequent names are never scored, whatever the model says about them
    assert alone.scan("a sign that says Phuket, a cocky rooster").findings == ()


def test_bad_params_and_missing_model_dir_are_clear_errors(tmp_path):
    config = load_policy("default").config
    spec = type(config.backends[0])
    with pytest.raises(BackendError, match="min_score must be a number in \\[0, 1\\]"):
        Policy(config.model_copy(update={"backends": (spec(name="charngram", params={"min_score": 2}),), "name": "a"}))
    with pytest.raises(BackendError, match="lacks model.safetensors"):
        Policy(config.model_copy(update={"backends": (spec(name="charngram", params={"model_dir": str(tmp_path)}),), "name": "b"}))


POSITIVES = {"fuck": "profanity", "shit": "profanity", "cunt": "sexual", "bitch": "insult", "slut": "sexual", "whore": "sexual"}
NEGATIVES = ["duck", "sheet", "count", "beach", "slot", "horse", "house", "garden", "window", "coffee", "sunset", "river",
             "mountain", "forest", "banana", "orange", "pencil", "guitar", "castle", "dragon", "rocket", "planet"] * 3


def test_training_on_a_small_sample_is_reproducible_and_learns(tmp_path):
    rows = training_data(POSITIVES, NEGATIVES, mutations=10, seed=3)
    assert rows == training_data(POSITIVES, NEGATIVES, mutations=10, seed=3)
    assert {label for _, label in rows} == {CLEAN, "profanity", "sexual", "insult"}
    first = train(rows, buckets=1 << 12, epochs=6, seed=3, batch_size=32)
    second = train(rows, buckets=1 << 12, epochs=6, seed=3, batch_size=32)
    assert np.array_equal(first.weights, second.weights) and np.array_equal(first.bias, second.bias)
    # several batches per epoch, so the seed's shuffling changes the weights
    other = train(rows, buckets=1 << 12, epochs=6, seed=4, batch_size=32)
    assert not np.array_equal(first.weights, other.weights)
    assert first.score("fuck")[0] > 0.5 > first.score("garden")[0]
    first.save(tmp_path)
    load_model.cache_clear()
    loaded = load_model(tmp_path)
    assert np.array_equal(loaded.weights, first.weights)
    assert loaded.score("fuck") == first.score("fuck")


def test_excluded_words_never_reach_the_training_data():
    rows = training_data(POSITIVES, NEGATIVES, mutations=10, seed=3, exclude={"fuck", "garden"})
    words = {word for word, _ in rows}
    assert "fuck" not in words and "garden" not in words


def test_explain_shows_the_normalization_chain_and_evidence():
    text = explain(load_policy("default"), 'a sign that says "fuxk" and <b>sh&#105;t</b>')
    assert "normalized: 'a sign that says \"fuxk\" and shit'" in text
    assert "'fuxk' -> 'fuck' profanity score=0.75 (fuzzy) skeleton fak = fak" in text
    assert "(html)" in text
    assert "verdict:" in text and "action: neutralize" in text


def test_scan_explain_command_prints_the_evidence():
    from safetext.cli import main

    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        code = main(["scan", "a sign that says beotch", "--explain"])
    assert code == 0
    assert "skeleton batkh = batkh" in out.getvalue()


def test_metrics_label_the_rule_backend_and_kind_of_match():
    policy = load_policy("default")
    metrics = SafetextMetrics(CollectorRegistry())
    verdict = policy.scan("a sign that says cvnt and bigass and shit")
    assert [match_kind(f) for f in verdict.findings] == ["fuzzy", "compound", "exact"]
    metrics.observe_request(verdict)
    get = metrics.registry.get_sample_value
    for match in ("fuzzy", "compound", "exact"):
        labels = {"rule_id": "profanity", "backend": "wordlist", "match": match, "language": "en"}
        assert get("safetext_rule_hits_total", labels) == 1.0
    labels = {"rule_id": "profanity", "backend": "wordlist", "match": "readings", "language": "en"}
    assert get("safetext_rule_hits_total", labels) is None
    # prompt text never becomes a label
    labels = {v for metric in metrics.registry.collect() for s in metric.samples for v in s.labels.values()}
    assert not labels & {"cvnt", "kunt", "bigass", "shit", "cunt"}


@pytest.mark.slow
def test_train_classifier_command_is_reproducible(tmp_path):
    from safetext.cli import main

    outputs = []
    for name in ("a", "b"):
        with io.StringIO() as out:
            import contextlib

            with contextlib.redirect_stdout(out):
                assert main(["train-classifier", "--out", str(tmp_path / name), "--sample", "40", "--epochs", "2"]) == 0
            outputs.append(json.loads(out.getvalue()))
    assert outputs[0] == outputs[1]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_training_sets_leave_out_context_words_and_take_the_registry_vocabulary():
    positives, negatives = default_training_sets()
    # "custom" rule words (scene-sense, clinical) are clean in a scene: neither toxic nor clean data
    for word in ("penis", "vagina", "hoe", "dyke", "nipple"):
        assert word not in positives and word not in negatives
    assert positives["pillowbiter"] == "slur" and positives["masterbate"] == "sexual"
    assert "garden" in negatives and "fuck" not in negatives
