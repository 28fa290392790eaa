"""``charngram``: a character n-gram classifier shipped with safetext, offline, on by default.

A multinomial logistic regression over hashed character n-grams of a word (2- to 4-grams of the
letters and 3-grams of its phonetic :func:`~safetext.policy.variants.skeleton`), with one class per
policy category plus ``clean``. It scores the words the word lists cannot place: words that are not
English (:func:`~safetext.policy.vocabulary.is_english`), not frequent in ``wordfreq`` (Zipf < 2.5:
names and places such as "Phuket" are somebody's words), and that no list entry, reading, split,
sound-alike or compound matched. A word's score is ``1 - p(clean)``; its category is the most likely
non-clean class. English words are never scored: they are what the model was trained to call clean,
and a miss there costs a user a legitimate image.

The weights (``safetext/models/charngram/``, float16 safetensors, about 1.3 MB) are trained by
:func:`train` from the shipped policy's lexicon with generated misspellings, compounds and
inflections, against English words and names from ``wordfreq``/``english-words``; see
``docs/models/charngram.md`` for the card and ``safetext train-classifier`` to rebuild them.

Policy entry::

    backends:
      - name: wordlist
      - name: charngram          # params: model_dir, min_score (default 0.95)
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from safetext.errors import BackendError
from safetext.policy.backends import BackendContext, ClassifierBackend, Detection, ScanDocument, register_backend
from safetext.policy.confusables import step_names
from safetext.policy.schema import CATEGORIES
from safetext.policy.variants import MAX_FUZZY_ZIPF, skeleton
from safetext.policy.vocabulary import is_english, name_shaped_at, zipf

#: Folder of the shipped weights.
MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "charngram"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CLEAN = "clean"


@dataclass(frozen=True)
class CharNgramConfig:
    """Shape of the model (stored in ``config.json`` beside the weights).

    Attributes:
        classes: class names, ``clean`` first, then policy categories.
        buckets: number of hash buckets (rows of the weight matrix).
        ngrams: n-gram lengths taken over ``<word>``.
        skeleton_ngrams: n-gram lengths taken over the phonetic skeleton.
    """

    classes: tuple[str, ...]
    buckets: int = 1 << 17
    ngrams: tuple[int, ...] = (2, 3, 4)
    skeleton_ngrams: tuple[int, ...] = (3,)

    def to_json(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "buckets": self.buckets, "ngrams": list(self.ngrams),
                "skeleton_ngrams": list(self.skeleton_ngrams)}


def features(word: str, config: CharNgramConfig) -> list[int]:
    """Hash buckets of the n-grams of ``word`` (CRC-32: stable across processes and platforms)."""
    padded = f"<{word}>"
    grams = [padded[i : i + n] for n in config.ngrams for i in range(len(padded) - n + 1)]
    sound = f"<{skeleton(word)}>"
    grams += ["~" + sound[i : i + n] for n in config.skeleton_ngrams for i in range(len(sound) - n + 1)]
    buckets = config.buckets
    return [zlib.crc32(g.encode("utf-8")) % buckets for g in grams]


class CharNgramModel:
    """Loaded weights: ``weights[bucket, class]`` and ``bias[class]`` (read-only, thread-safe).

    Args:
        config: the model shape.
        weights: float array ``[buckets, classes]``.
        bias: float array ``[classes]``.
    """

    def __init__(self, config: CharNgramConfig, weights: np.ndarray, bias: np.ndarray) -> None:
        if weights.shape != (config.buckets, len(config.classes)) or bias.shape != (len(config.classes),):
            raise BackendError(
                f"charngram weights have shape {weights.shape} / {bias.shape}, the config says "
                f"({config.buckets}, {len(config.classes)}); retrain with 'safetext train-classifier'"
            )
        self.config = config
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self._score = lru_cache(maxsize=16384)(self._score_uncached)

    def probabilities(self, word: str) -> np.ndarray:
        """Class probabilities of one lower-case word."""
        logits = self.weights[features(word, self.config)].sum(axis=0) + self.bias
        logits = logits - logits.max()
        exp = np.exp(logits)
        return exp / exp.sum()

    def _score_uncached(self, word: str) -> tuple[float, str]:
        probs = self.probabilities(word)
        best = int(np.argmax(probs[1:])) + 1
        return float(1.0 - probs[0]), self.config.classes[best]

    def score(self, word: str) -> tuple[float, str]:
        """``(1 - p(clean), most likely category)`` of one lower-case word (memoized)."""
        return self._score(word)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (float16) and ``config.json`` to ``directory``."""
        from safetensors.numpy import save_file

        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        save_file({"weights": self.weights.astype(np.float16), "bias": self.bias.astype(np.float16)}, str(target / WEIGHTS_FILE))
        (target / CONFIG_FILE).write_text(json.dumps(self.config.to_json(), indent=2) + "\n", encoding="utf-8")
        return target


@lru_cache(maxsize=8)
def load_model(directory: str | Path = MODEL_DIR) -> CharNgramModel:
    """Load weights from ``directory`` (default: the shipped model). Never downloads anything.

    Raises:
        BackendError: the folder or a file is missing or malformed.
    """
    from safetensors.numpy import load_file

    path = Path(directory)
    if not (path / WEIGHTS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise BackendError(
            f"charngram model folder '{path}' lacks {WEIGHTS_FILE} or {CONFIG_FILE}; "
            "train one with 'safetext train-classifier --out DIR' or drop model_dir to use the shipped model"
        )
    try:
        raw = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        config = CharNgramConfig(
            classes=tuple(raw["classes"]), buckets=int(raw["buckets"]), ngrams=tuple(raw["ngrams"]),
            skeleton_ngrams=tuple(raw["skeleton_ngrams"]),
        )
        tensors = load_file(str(path / WEIGHTS_FILE))
        return CharNgramModel(config, tensors["weights"], tensors["bias"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BackendError(f"charngram model in '{path}' is malformed ({exc}); retrain it with 'safetext train-classifier'") from exc


class CharNgramBackend(ClassifierBackend):
    """Scores the words of a prompt that are not English and reports those at or above ``min_score``.

    Args:
        model: the loaded model.
        min_score: smallest ``1 - p(clean)`` reported (the rule thresholds apply after it).
    """

    name = "charngram"

    def __init__(self, model: CharNgramModel, min_score: float = 0.95) -> None:
        self.model = model
        self.min_score = float(min_score)

    def detect(self, document: ScanDocument) -> list[Detection]:
        norm = document.norm
        detections = []
        for token in document.tokens:
            word = token.text
            if len(word) < 3 or not word.isalpha() or is_english(word) or zipf(word) >= MAX_FUZZY_ZIPF:
                continue  # English words, and names and words wordfreq sees often ("Phuket"), are not scored
            start, end = norm.span(token.start, token.end)
            if norm.text[token.start : token.end] == word and name_shaped_at(document.text, start, end):
                continue  # written like a name ("Cockfosters", "Fakfak", "Wānkāner"): a guess would be noise
            score, category = self.model.score(word)
            if score < self.min_score:
                continue
            detections.append(
                Detection(start, end, category, round(score, 4), word, step_names(token.mask), self.name,
                          evidence=f"p(clean) = {1 - score:.3f}; most likely {category}")
            )
        return detections


def _charngram_factory(params: Mapping[str, Any], context: BackendContext) -> ClassifierBackend:
    unknown = sorted(set(params) - {"model_dir", "min_score"})
    if unknown:
        raise BackendError(f"backend 'charngram' got unknown params {unknown}; known params: ['min_score', 'model_dir']")
    min_score = params.get("min_score", 0.95)
    if not isinstance(min_score, (int, float)) or not 0.0 <= float(min_score) <= 1.0:
        raise BackendError(f"backend 'charngram': min_score must be a number in [0, 1], got {min_score!r}")
    directory = Path(str(params["model_dir"])).expanduser() if "model_dir" in params else MODEL_DIR
    if not directory.is_absolute():
        directory = context.base_dir / directory
    return CharNgramBackend(load_model(directory), float(min_score))


register_backend("charngram", _charngram_factory)


# ---------------------------------------------------------------------- training
_VOWELS = "aeiou"
_SWAPS = (("ck", "k"), ("ck", "x"), ("ck", "kk"), ("c", "k"), ("k", "c"), ("s", "z"), ("ss", "zz"), ("f", "ph"),
          ("i", "y"), ("i", "ee"), ("u", "oo"), ("er", "a"), ("er", "ah"), ("a", "ah"), ("ck", "q"), ("u", "v"),
          ("i", "l"), ("l", "i"), ("o", "0"), ("g", "q"), ("ing", "in"), ("t", "tt"))
_SUFFIXES = ("s", "er", "ers", "ing", "in", "ed", "y", "z", "a", "ah", "face", "head", "hole", "bag", "wad", "er")


def mutate(word: str, rng: random.Random, english: Sequence[str]) -> str:
    """One generated misspelling, respelling, inflection or compound of ``word`` (for training only)."""
    kind = rng.randrange(7)
    if kind == 0 and any(c in _VOWELS for c in word[1:]):
        spots = [i for i, c in enumerate(word) if c in _VOWELS and i > 0]
        i = rng.choice(spots)
        return word[:i] + rng.choice([v for v in _VOWELS + "y" if v != word[i]]) + word[i + 1 :]
    if kind == 1:
        options = [(a, b) for a, b in _SWAPS if a in word]
        if options:
            a, b = rng.choice(options)
            return word.replace(a, b, 1)
    if kind == 2 and len(word) > 3:
        i = rng.randrange(1, len(word))
        return word[:i] + word[i + 1 :]
    if kind == 3:
        i = rng.randrange(len(word))
        return word[: i + 1] + word[i] * rng.randint(1, 3) + word[i + 1 :]
    if kind == 4:
        return word + rng.choice(_SUFFIXES)
    if kind == 5:
        other = rng.choice(english)
        return other + word if rng.random() < 0.5 else word + other
    i = rng.randrange(1, len(word))
    return word[:i] + "h" + word[i:] if word[i - 1] in _VOWELS else word + word


def training_data(
    positives: Mapping[str, str],
    negatives: Iterable[str],
    *,
    mutations: int = 12,
    seed: int = 0,
    exclude: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """``(word, class)`` pairs: each positive with ``mutations`` generated variants, and the negatives.

    Args:
        positives: toxic word -> policy category (the lexicon's single words).
        negatives: clean words.
        mutations: generated variants per positive word.
        seed: random seed (the data, and therefore the weights, are a function of it).
        exclude: words that must not appear in the data (e.g. every word of an evaluation set).
    """
    rng = random.Random(seed)
    banned = set(exclude)
    negatives = sorted(set(negatives) - set(positives) - banned)
    english = [w for w in negatives if 3 <= len(w) <= 6][:20000] or ["big"]
    rows: list[tuple[str, str]] = []
    for word, category in sorted(positives.items()):
        variants = {word}
        for _ in range(mutations):
            variant = mutate(word, rng, english)
            if rng.random() < 0.3:
                variant = mutate(variant, rng, english)
            variants.add(variant)
        rows += [(v, category) for v in sorted(variants) if v.isalpha() and v not in banned and not is_english(v)]
        if word not in banned:
            rows.append((word, category))
    rows += [(w, CLEAN) for w in negatives]
    rng.shuffle(rows)
    return rows


def train(
    rows: Sequence[tuple[str, str]],
    *,
    classes: Sequence[str] = (CLEAN,) + tuple(c for c in CATEGORIES if c != "custom"),
    buckets: int = 1 << 17,
    epochs: int = 4,
    seed: int = 0,
    lr: float = 0.05,
    batch_size: int = 256,
) -> CharNgramModel:
    """Fit the model on ``(word, class)`` rows with torch (CPU, deterministic for a given seed).

    Returns:
        The trained :class:`CharNgramModel` (weights rounded to float16 as shipped).
    """
    import torch

    config = CharNgramConfig(classes=tuple(classes), buckets=buckets)
    index = {name: i for i, name in enumerate(config.classes)}
    unknown = sorted({label for _, label in rows} - set(index))
    if unknown:
        raise ValueError(f"training rows use classes {unknown} that are not in {list(config.classes)}")
    generator = torch.Generator().manual_seed(seed)
    feats = [features(word, config) for word, _ in rows]
    width = max(len(f) for f in feats)
    pad = buckets  # an extra, always-zero row pads short words
    table = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, f in enumerate(feats):
        table[i, : len(f)] = torch.tensor(f, dtype=torch.long)
    labels = torch.tensor([index[label] for _, label in rows])
    counts = torch.bincount(labels, minlength=len(config.classes)).float().clamp(min=1)
    class_weight = (counts.sum() / counts) ** 0.5
    bag = torch.nn.EmbeddingBag(buckets + 1, len(config.classes), mode="sum", padding_idx=pad)
    torch.nn.init.zeros_(bag.weight)
    bias = torch.nn.Parameter(torch.zeros(len(config.classes)))
    optimizer = torch.optim.Adagrad([bag.weight, bias], lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight)
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator)
        for start in range(0, len(rows), batch_size):
            batch = order[start : start + batch_size]
            logits = bag(table[batch]) + bias
            loss = loss_fn(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    weights = bag.weight.detach()[:buckets].numpy().astype(np.float16).astype(np.float32)
    return CharNgramModel(config, weights, bias.detach().numpy().astype(np.float16).astype(np.float32))


def default_training_sets(policy_name: str = "default") -> tuple[dict[str, str], list[str]]:
    """Positives (the policy's single-word entries, by category) and negatives (English words and names).

    Negatives: every ``wordfreq`` word of Zipf >= 3 and a fixed sample of 80k Webster's words, plus
    rarer ``wordfreq`` words (Zipf 1.5-3: names, places, brands) that neither contain a list entry of
    four letters or more nor sound like one.
    """
    from safetext.policy.engine import SHIPPED_DIR, Policy
    from safetext.policy.loader import parse_policy_text
    from safetext.policy.schema import BackendSpec
    from safetext.policy.vocabulary import _frequencies, english_words

    path = SHIPPED_DIR / f"{policy_name}.yaml"
    config, _ = parse_policy_text(path.read_text(encoding="utf-8"), str(path))
    # the lists only: the classifier being trained must not be needed to train it
    config = config.model_copy(update={"backends": (BackendSpec(name="wordlist"),)})
    policy = Policy(config, base_dir=SHIPPED_DIR, source=str(path))
    terms = [t for t in policy.lexicon.single_word_terms() if t.form.isalpha() and len(t.form) >= 3]
    # "custom" rule words (scene-sense, clinical: "hoe", "penis") depend on context: neither class
    positives = {t.form: t.category for t in terms if t.category != "custom"}
    context_words = {t.form for t in terms if t.category == "custom"}
    sounds = {skeleton(form) for form in positives}
    long_forms = {form for form in positives if len(form) >= 4}
    longest = max((len(f) for f in long_forms), default=4)

    def contains_entry(word: str) -> bool:
        return any(word[i : i + n] in long_forms for n in range(4, min(longest, len(word)) + 1) for i in range(len(word) - n + 1))

    frequencies = _frequencies()
    frequent = sorted(w for w, f in frequencies.items() if f >= 1e-6 and w.isascii() and w.isalpha())
    rare = sorted(
        w for w, f in frequencies.items()
        if 10 ** -7.5 <= f < 1e-6 and w.isascii() and w.isalpha() and len(w) >= 3
    )
    rare = [w for w in rare if skeleton(w) not in sounds and not contains_entry(w)]
    webster = sorted(english_words() - set(frequent))
    sample = random.Random(0).sample(webster, min(80_000, len(webster)))
    negatives = sorted((set(frequent) | set(rare) | set(sample)) - set(positives) - context_words)
    return positives, negatives


def held_out_report(model: CharNgramModel, rows: Sequence[tuple[str, str]], min_score: float = 0.95) -> dict[str, float]:
    """Recall on toxic rows and false-positive rate on clean rows at ``min_score``."""
    toxic = [w for w, label in rows if label != CLEAN]
    clean = [w for w, label in rows if label == CLEAN]
    recall = sum(model.score(w)[0] >= min_score for w in toxic) / max(1, len(toxic))
    fpr = sum(model.score(w)[0] >= min_score for w in clean) / max(1, len(clean))
    return {"toxic": len(toxic), "clean": len(clean), "recall": round(recall, 4), "false_positive_rate": round(fpr, 4),
            "min_score": min_score}


def held_out(word: str, percent: int = 10) -> bool:
    """True for the ``percent`` % of words kept out of training for the model card's numbers (CRC-32 split)."""
    return zlib.crc32(word.encode("utf-8")) % 100 < percent


def train_default(
    out: str | Path = MODEL_DIR,
    *,
    seed: int = 0,
    epochs: int = 4,
    mutations: int = 12,
    exclude: Iterable[str] = (),
    sample: int | None = None,
) -> dict[str, Any]:
    """The one training recipe behind ``safetext train-classifier`` (and the shipped weights).

    Args:
        out: folder written (``model.safetensors``, ``config.json``, ``training.json``).
        seed: random seed; the same seed and inputs give bit-identical weights.
        epochs: passes over the data.
        mutations: generated variants per list word.
        exclude: words kept out of the data (the evaluation prompts' words).
        sample: use only this many list words and ten times as many clean words (quick runs, tests).

    Returns:
        The training report (data sizes and held-out recall / false-positive rate), also written to
        ``training.json``.
    """
    positives, negatives = default_training_sets()
    if sample is not None:
        rng = random.Random(seed)
        positives = dict(rng.sample(sorted(positives.items()), min(sample, len(positives))))
        negatives = rng.sample(negatives, min(10 * sample, len(negatives)))
    exclude = set(exclude)
    train_pos = {w: c for w, c in positives.items() if not held_out(w)}
    test_pos = {w: c for w, c in positives.items() if held_out(w)}
    train_neg = [w for w in negatives if not held_out(w)]
    test_neg = [w for w in negatives if held_out(w)]
    rows = training_data(train_pos, train_neg, mutations=mutations, seed=seed, exclude=exclude)
    model = train(rows, epochs=epochs, seed=seed)
    check = training_data(test_pos, test_neg, mutations=mutations, seed=seed + 1, exclude=exclude)
    report = {
        "seed": seed, "epochs": epochs, "mutations": mutations, "sample": sample,
        "list_words": len(train_pos), "clean_words": len(train_neg), "rows": len(rows), "excluded_words": len(exclude),
        "held_out": held_out_report(model, check, 0.95),
        "held_out_at_0.9": held_out_report(model, check, 0.9),
    }
    target = model.save(out)
    (target / "training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
