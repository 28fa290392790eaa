"""Classifier backends: the registry, the optional word censors, and a local transformers classifier
(tiny random-weight RoBERTa + in-memory tokenizer saved to tmp_path)."""

from __future__ import annotations

import importlib.util
from typing import Any, Mapping, Sequence

import pytest

from safetext.errors import BackendError
from safetext.policy import (
    ClassifierBackend,
    Policy,
    PolicyConfig,
    SegmentClassifier,
    load_policy,
    register_backend,
    registered_backends,
)
from safetext.policy.backends import BackendContext
from safetext.policy.verdict import Action

HAS_BETTER_PROFANITY = importlib.util.find_spec("better_profanity") is not None
HAS_ALT_PROFANITY_CHECK = importlib.util.find_spec("profanity_check") is not None


def _policy(backends: list[dict[str, Any]], rules: list[dict[str, Any]] | None = None, **extra: Any) -> Policy:
    data = {
        "name": "backend-test",
        "rules": rules or [{"id": "profanity", "category": "profanity", "action": "neutralize"}],
        "backends": backends,
        **extra,
    }
    return load_policy(data)


def test_builtin_backends_are_registered():
    assert {"wordlist", "better_profanity", "alt_profanity_check", "transformers"} <= set(registered_backends())


def test_unknown_backend_error_lists_registered_backends():
    with pytest.raises(BackendError) as info:
        _policy([{"name": "nope"}])
    message = str(info.value)
    assert "unknown backend 'nope'; registered backends: " in message
    for name in ("alt_profanity_check", "better_profanity", "transformers", "wordlist"):
        assert name in message


def test_register_backend_validates_name_factory_and_duplicates():
    with pytest.raises(BackendError, match="backend name 'Bad Name' is invalid"):
        register_backend("Bad Name", lambda params, context: None)
    with pytest.raises(BackendError, match="is str, not callable"):
        register_backend("ok_name", "not a function")
    with pytest.raises(BackendError, match="backend 'wordlist' is already registered"):
        register_backend("wordlist", lambda params, context: None)


class _FixedScore(SegmentClassifier):
    """Scores every word with a fixed value (for registry and score-range tests)."""

    name = "fixed_score"

    def __init__(self, score: float, word: str) -> None:
        super().__init__({"bad": "profanity"})
        self.score, self.word = score, word

    def score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [{"bad": self.score if text.lower() == self.word else 0.0} for text in texts]


def _fixed_factory(params: Mapping[str, Any], context: BackendContext) -> ClassifierBackend:
    return _FixedScore(float(params["score"]), str(params["word"]))


register_backend("test_fixed_score", _fixed_factory, overwrite=True)


def test_custom_backend_runs_after_wordlist_and_first_match_wins():
    policy = _policy(
        [{"name": "wordlist"}, {"name": "test_fixed_score", "params": {"score": 0.7, "word": "zonk"}}],
        rules=[{"id": "profanity", "category": "profanity", "terms": ["zonk", "blarg"], "threshold": 0.5}],
    )
    # the word list already flags "zonk": the custom backend's hit on the same span is dropped
    (finding,) = policy.scan('A sign that says "zonk"').findings
    assert (finding.backend, finding.score) == ("wordlist", 1.0)
    other = _policy(
        [{"name": "wordlist"}, {"name": "test_fixed_score", "params": {"score": 0.7, "word": "zonk"}}],
        rules=[{"id": "profanity", "category": "profanity", "terms": ["blarg"], "threshold": 0.5}],
    )
    (finding,) = other.scan('A sign that says "zonk"').findings
    assert (finding.backend, finding.score, finding.text) == ("fixed_score", 0.7, "zonk")


def test_threshold_is_applied_per_category():
    backends = [{"name": "test_fixed_score", "params": {"score": 0.7, "word": "zonk"}}]
    low = _policy(backends, rules=[{"id": "p", "category": "profanity", "threshold": 0.69}])
    high = _policy(backends, rules=[{"id": "p", "category": "profanity", "threshold": 0.71}])
    assert low.scan("zonk").action is Action.NEUTRALIZE
    assert high.scan("zonk").findings == ()


def test_scores_outside_unit_interval_are_an_error():
    policy = _policy([{"name": "test_fixed_score", "params": {"score": 1.5, "word": "zonk"}}])
    with pytest.raises(BackendError, match=r"backend 'fixed_score' returned score 1.5 outside \[0, 1\] for 'zonk'"):
        policy.scan("zonk")


def test_factory_failures_are_raised_not_swallowed():
    with pytest.raises(BackendError, match="backend 'test_fixed_score' failed to load: KeyError"):
        _policy([{"name": "test_fixed_score", "params": {}}])
    with pytest.raises(BackendError, match=r"backend 'wordlist' got unknown params \['x'\]"):
        _policy([{"name": "wordlist", "params": {"x": 1}}])


@pytest.mark.skipif(not HAS_BETTER_PROFANITY, reason="better-profanity not installed (pip install 'safetext[profanity]')")
def test_better_profanity_backend_flags_words_it_knows():
    policy = _policy([{"name": "better_profanity"}])
    verdict = policy.scan('A sign that says "you bastard" in a park')
    assert [(f.text, f.backend, f.score, f.category) for f in verdict.findings] == [
        ("bastard", "better_profanity", 1.0, "profanity")
    ]
    assert policy.scan("A sign that says hello in a park").findings == ()
    extra = _policy([{"name": "better_profanity", "params": {"extra_words": ["zonk"]}}])
    assert extra.scan("zonk").findings[0].backend == "better_profanity"
    with pytest.raises(BackendError, match="unknown params \\['colour'\\]"):
        _policy([{"name": "better_profanity", "params": {"colour": 1}}])


@pytest.mark.skipif(HAS_ALT_PROFANITY_CHECK, reason="alt-profanity-check is installed")
def test_alt_profanity_check_missing_names_the_pip_extra():
    with pytest.raises(BackendError) as info:
        _policy([{"name": "alt_profanity_check"}])
    assert "backend 'alt_profanity_check' needs the alt-profanity-check package: pip install 'safetext[profanity-check]'" in str(info.value)


@pytest.mark.skipif(not HAS_ALT_PROFANITY_CHECK, reason="alt-profanity-check not installed")
def test_alt_profanity_check_scores_words():  # pragma: no cover - runs only where the extra is installed
    policy = _policy([{"name": "alt_profanity_check"}], rules=[{"id": "p", "category": "profanity", "threshold": 0.5}])
    verdict = policy.scan("A sign that says fuck")
    assert any(f.text == "fuck" and 0.5 <= f.score <= 1.0 for f in verdict.findings)


# --------------------------------------------------------------------------- transformers
@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["a", "sign", "that", "says", "hello", "you", "idiot", "in", "park", "the", "dog"]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    config = transformers.RobertaConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=40, pad_token_id=1, initializer_range=0.8,
        num_labels=2, id2label={0: "non-toxic", 1: "toxic"}, label2id={"non-toxic": 0, "toxic": 1},
    )
    model = transformers.RobertaForSequenceClassification(config).eval()
    directory = tmp_path_factory.mktemp("tiny-roberta")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)

    def reference(texts: list[str]) -> list[float]:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            return torch.softmax(model(**batch).logits.float(), dim=-1)[:, 1].tolist()

    return directory, reference


def _transformers_policy(model_dir, threshold: float, **params: Any) -> Policy:
    return _policy(
        [{"name": "transformers", "params": {"model_dir": str(model_dir), "labels": {"toxic": "insult"}, **params}}],
        rules=[
            {"id": "insult", "category": "insult", "action": "neutralize", "threshold": threshold},
            {"id": "toxic-prompt", "category": "insult", "scope": "prompt", "action": "block", "threshold": 1.0},
        ],
    )


def test_transformers_scores_segments_with_id2label_mapping_and_threshold(tiny_classifier):
    model_dir, reference = tiny_classifier
    prompt = "a sign that says hello"
    segments = ["hello", "a", "sign", "that", "says"]  # rendered span first, then words outside it
    scores = reference(segments)
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1
    threshold = sorted(scores)[len(scores) // 2]  # the median: some segments pass, some do not
    policy = _transformers_policy(model_dir, threshold)
    verdict = policy.scan(prompt)
    expected = {text: score for text, score in zip(segments, scores) if score >= threshold}
    got = {f.text: f.score for f in verdict.findings}
    assert set(got) == set(expected)
    for text, score in got.items():
        assert score == pytest.approx(expected[text], abs=1e-6)
    assert all(f.backend == "transformers" and f.category == "insult" for f in verdict.findings)
    assert all(f.rendered == (f.text == "hello") for f in verdict.findings)


def test_transformers_whole_prompt_rule_blocks_above_threshold(tiny_classifier):
    model_dir, reference = tiny_classifier
    prompt = "you idiot in the park"
    (whole,) = reference([prompt])
    rules = [
        {"id": "insult", "category": "insult", "action": "neutralize", "threshold": 1.0},
        {"id": "toxic-prompt", "category": "insult", "scope": "prompt", "action": "block", "threshold": whole - 1e-4},
    ]
    backends = [{"name": "transformers", "params": {"model_dir": str(model_dir), "labels": {"toxic": "insult"}}}]
    verdict = _policy(backends, rules=rules).scan(prompt)
    (finding,) = verdict.findings
    assert verdict.action is Action.BLOCK
    assert (finding.rule_id, finding.start, finding.end, finding.rendered) == ("toxic-prompt", 0, len(prompt), False)
    rules[1]["threshold"] = min(1.0, whole + 1e-4)
    assert _policy(backends, rules=rules).scan(prompt).findings == ()


def test_transformers_unknown_label_and_missing_dir_are_clear(tiny_classifier, tmp_path):
    model_dir, _ = tiny_classifier
    with pytest.raises(BackendError, match=r"labels \['hate'\] are not in the model's id2label \['non-toxic', 'toxic'\]"):
        _transformers_policy(model_dir, 0.5, labels={"hate": "hate"})
    with pytest.raises(BackendError, match="is not a directory; point it at a local model"):
        _transformers_policy(tmp_path / "missing", 0.5)
    with pytest.raises(BackendError, match="label 'toxic' maps to unknown category 'rude'"):
        _transformers_policy(model_dir, 0.5, labels={"toxic": "rude"})
    with pytest.raises(BackendError, match="needs params.model_dir"):
        _policy([{"name": "transformers"}])


def test_transformers_policy_from_yaml_with_env_model_dir(tiny_classifier, tmp_path, monkeypatch):
    model_dir, reference = tiny_classifier
    monkeypatch.setenv("SAFETEXT_TEST_TOXICITY_MODEL", str(model_dir))
    path = tmp_path / "classifier.yaml"
    path.write_text(
        "name: classifier\n"
        "rules:\n  - {id: insult, category: insult, threshold: 0.0}\n"
        "backends:\n  - name: transformers\n    params:\n"
        "      model_dir: ${SAFETEXT_TEST_TOXICITY_MODEL:/nonexistent}\n      labels: {toxic: insult}\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.backends == ("transformers",)
    verdict = policy.scan("the dog")
    assert [f.text for f in verdict.findings] == ["the", "dog"]  # threshold 0: every word is a finding
    assert [f.score for f in verdict.findings] == pytest.approx(reference(["the", "dog"]), abs=1e-6)


def test_config_round_trip_keeps_backends():
    config = PolicyConfig.model_validate(
        {"name": "x", "rules": [{"id": "p", "category": "profanity", "terms": ["zonk"]}],
         "backends": [{"name": "wordlist"}, {"name": "test_fixed_score", "params": {"score": 0.1, "word": "q"}}]}
    )
    assert Policy(config).backends == ("wordlist", "fixed_score")
