"""Optional classifier backends: ``better_profanity``, ``alt_profanity_check``, ``transformers``.

Each one imports its package only when a policy asks for it; a missing package is a
:class:`~safetext.errors.BackendError` naming the ``pip install`` that fixes it, never a silent
fall-back. All of them score segments (rendered spans, words outside them, the whole prompt for
``scope: prompt`` rules) and return scores in ``[0, 1]``.

``transformers`` loads a text-classification model from a LOCAL directory only (no download), for
example a RoBERTa toxicity classifier saved with ``save_pretrained``::

    backends:
      - name: wordlist
      - name: transformers
        params:
          model_dir: ${SAFETEXT_TOXICITY_MODEL:/models/roberta-toxicity}
          labels: {toxic: insult}     # model label (config.id2label) -> policy category
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from safetext.errors import BackendError
from safetext.policy.backends import BackendContext, ClassifierBackend, SegmentClassifier, register_backend
from safetext.policy.schema import CATEGORIES


def _check_labels(backend: str, labels: Any, default: Mapping[str, str]) -> dict[str, str]:
    labels = dict(default) if labels is None else labels
    if not isinstance(labels, Mapping) or not labels:
        raise BackendError(f"backend '{backend}': 'labels' must map label -> category, e.g. {{toxic: insult}}; got {labels!r}")
    for label, category in labels.items():
        if category not in CATEGORIES:
            raise BackendError(
                f"backend '{backend}': label '{label}' maps to unknown category '{category}'; use one of {', '.join(CATEGORIES)}"
            )
    return {str(k): str(v) for k, v in labels.items()}


def _reject_unknown(backend: str, params: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise BackendError(f"backend '{backend}' got unknown params {unknown}; known params: {sorted(known)}")


class BetterProfanityBackend(SegmentClassifier):
    """``better-profanity`` word censor: score 1.0 when it finds profanity in the segment, else 0.0."""

    name = "better_profanity"

    def __init__(self, category: str = "profanity", extra_words: Sequence[str] = ()) -> None:
        super().__init__({"profanity": category})
        try:
            module = importlib.import_module("better_profanity")
        except ImportError as exc:
            raise BackendError(
                "backend 'better_profanity' needs the better-profanity package: "
                "pip install 'safetext[profanity]' (or pip install better-profanity==0.7.0)"
            ) from exc
        self._censor = module.Profanity()
        if extra_words:
            self._censor.add_censor_words(list(extra_words))

    def score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [{"profanity": 1.0 if self._censor.contains_profanity(text) else 0.0} for text in texts]


def _better_profanity_factory(params: Mapping[str, Any], context: BackendContext) -> ClassifierBackend:
    _reject_unknown("better_profanity", params, {"category", "extra_words"})
    category = params.get("category", "profanity")
    _check_labels("better_profanity", {"profanity": category}, {})
    return BetterProfanityBackend(category=category, extra_words=tuple(params.get("extra_words", ())))


class AltProfanityCheckBackend(SegmentClassifier):
    """``alt-profanity-check`` linear SVM: its ``predict_prob`` probability is the score."""

    name = "alt_profanity_check"

    def __init__(self, category: str = "profanity") -> None:
        super().__init__({"profanity": category})
        try:
            module = importlib.import_module("profanity_check")
        except ImportError as exc:
            raise BackendError(
                "backend 'alt_profanity_check' needs the alt-profanity-check package: "
                "pip install 'safetext[profanity-check]' (or pip install alt-profanity-check)"
            ) from exc
        self._predict_prob = module.predict_prob

    def score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        probabilities = self._predict_prob(list(texts))
        return [{"profanity": float(p)} for p in probabilities]


def _alt_profanity_check_factory(params: Mapping[str, Any], context: BackendContext) -> ClassifierBackend:
    _reject_unknown("alt_profanity_check", params, {"category"})
    category = params.get("category", "profanity")
    _check_labels("alt_profanity_check", {"profanity": category}, {})
    return AltProfanityCheckBackend(category=category)


class TransformersBackend(SegmentClassifier):
    """A local ``AutoModelForSequenceClassification`` (e.g. a RoBERTa toxicity classifier).

    Args:
        model_dir: directory written by ``save_pretrained`` (model and tokenizer); never downloaded.
        labels: model label name (from ``config.id2label``) -> policy category.
        multi_label: sigmoid per label instead of softmax over labels; default: from
            ``config.problem_type == "multi_label_classification"``.
        max_length: tokenizer truncation length.
        device: torch device string.
    """

    name = "transformers"
    granularity = "spans"

    def __init__(
        self,
        model_dir: str | Path,
        labels: Mapping[str, str],
        multi_label: bool | None = None,
        max_length: int = 128,
        device: str = "cpu",
    ) -> None:
        super().__init__(labels)
        path = Path(model_dir)
        if not path.is_dir():
            raise BackendError(
                f"backend 'transformers': model_dir '{path}' is not a directory; point it at a local model "
                "saved with save_pretrained (models are never downloaded)"
            )
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise BackendError("backend 'transformers' needs torch and transformers: pip install transformers") from exc
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BackendError(f"backend 'transformers' cannot load '{path}': {exc}") from exc
        self._model = model.to(device).eval()
        self._torch = torch
        self._device = device
        self._max_length = int(max_length)
        id2label = {int(i): str(name) for i, name in model.config.id2label.items()}
        by_name = {name: i for i, name in id2label.items()}
        missing = [label for label in self.labels if label not in by_name]
        if missing:
            raise BackendError(
                f"backend 'transformers': labels {missing} are not in the model's id2label "
                f"{sorted(by_name)}; fix 'labels:' in the policy"
            )
        self._label_index = {label: by_name[label] for label in self.labels}
        if multi_label is None:
            multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"
        self._multi_label = bool(multi_label)
        self._lock = threading.Lock()  # tokenizers are not safe to call from several threads at once

    def score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            batch = self._tokenizer(
                list(texts), padding=True, truncation=True, max_length=self._max_length, return_tensors="pt"
            ).to(self._device)
            logits = self._model(**batch).logits.float()
            probs = torch.sigmoid(logits) if self._multi_label else torch.softmax(logits, dim=-1)
        rows = probs.cpu().tolist()
        return [{label: row[index] for label, index in self._label_index.items()} for row in rows]


def _transformers_factory(params: Mapping[str, Any], context: BackendContext) -> ClassifierBackend:
    _reject_unknown("transformers", params, {"model_dir", "labels", "multi_label", "max_length", "device"})
    if "model_dir" not in params:
        raise BackendError("backend 'transformers' needs params.model_dir: a local directory saved with save_pretrained")
    model_dir = Path(str(params["model_dir"])).expanduser()
    if not model_dir.is_absolute():
        model_dir = context.base_dir / model_dir
    labels = _check_labels("transformers", params.get("labels"), {"toxic": "insult"})
    return TransformersBackend(
        model_dir,
        labels,
        multi_label=params.get("multi_label"),
        max_length=int(params.get("max_length", 128)),
        device=str(params.get("device", "cpu")),
    )


register_backend("better_profanity", _better_profanity_factory)
register_backend("alt_profanity_check", _alt_profanity_check_factory)
register_backend("transformers", _transformers_factory)
