"""CLIP-T with a tiny random CLIP saved to a temporary directory (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from safetext.errors import BackendError
from safetext.scoring import CLIP_T_SKIP_MESSAGE, ClipScorer, load_clip_scorer

transformers = pytest.importorskip("transformers")


def byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for the bytes 0..255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [byte for byte in range(256) if byte not in printable]
    return [chr(code) for code in printable] + [chr(256 + index) for index in range(len(extra))]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    directory = tmp_path_factory.mktemp("tiny-clip")
    alphabet = byte_level_alphabet()
    # One token per byte, and per byte at the end of a word; no merges.
    vocab = {char: index for index, char in enumerate(alphabet)}
    vocab.update({f"{char}</w>": len(alphabet) + index for index, char in enumerate(alphabet)})
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"))

    shared = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
            **shared,
        ),
        vision_config=dict(image_size=32, patch_size=8, **shared),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(directory)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def scorer(clip_dir) -> ClipScorer:
    return load_clip_scorer(clip_dir, batch_size=2)


def scene(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)


TEXTS = ['A sign that says "hello".', 'A sign that says "river".', "a red bus", "zzz qqq 123"]


def reference_cosines(clip_dir: Path, image: np.ndarray, texts: list[str]) -> list[float]:
    """Cosines from CLIPModel's own forward pass (its normalized image_embeds / text_embeds)."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(clip_dir, local_files_only=True)
    inputs = processor(text=texts, images=[Image.fromarray(image)], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    return [float(value) for value in (out.text_embeds.double() @ out.image_embeds.double()[0])]


def test_no_directory_means_a_clear_skip_message(tmp_path):
    with pytest.raises(BackendError) as info:
        load_clip_scorer(None)
    assert str(info.value) == CLIP_T_SKIP_MESSAGE
    assert "never downloads" in CLIP_T_SKIP_MESSAGE
    with pytest.raises(BackendError, match="does not exist; pass a local directory"):
        load_clip_scorer(tmp_path / "missing")
    with pytest.raises(BackendError, match="has no config.json"):
        load_clip_scorer(tmp_path)


def test_unloadable_directory_is_a_backend_error(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    scorer = load_clip_scorer(tmp_path)
    with pytest.raises(BackendError, match="cannot load CLIP from"):
        scorer.score(scene(0), "hello")
    assert "loaded=False" in repr(scorer)


def test_clip_t_equals_100_times_clipped_cosine_of_the_model(clip_dir, scorer):
    image = scene(0)
    cosines = scorer.cosine_many([image] * len(TEXTS), TEXTS)
    assert cosines == pytest.approx(reference_cosines(clip_dir, image, TEXTS), abs=1e-6)
    scores = scorer.score_many([image] * len(TEXTS), TEXTS)
    assert scores == pytest.approx([100.0 * max(cosine, 0.0) for cosine in cosines], abs=1e-9)
    assert all(0.0 <= score <= 100.0 for score in scores)
    # Different texts give different similarities.
    assert len({round(cosine, 9) for cosine in cosines}) == len(TEXTS)
    positive = [score for score in scores if score > 0.0]
    assert len(set(positive)) == len(positive) >= 2, scores


def test_clip_t_is_deterministic_and_batch_independent(clip_dir, scorer):
    images = [scene(seed) for seed in range(3)]
    texts = TEXTS[:3]
    first = scorer.score_many(images, texts)  # batch_size 2: batches of 2 and 1
    assert scorer.score_many(images, texts) == first  # bit-identical on repeat
    assert load_clip_scorer(clip_dir, batch_size=2).score_many(images, texts) == first  # and on reload
    # Other batchings pad texts to other lengths: float32 rounding moves scores by < 1e-4.
    again = load_clip_scorer(clip_dir, batch_size=3).score_many(images, texts)
    assert first == pytest.approx(again, abs=1e-4)
    assert [scorer.score(image, text) for image, text in zip(images, texts)] == pytest.approx(first, abs=1e-4)


def test_clip_t_accepts_every_image_type(scorer):
    image = scene(1)
    expected = scorer.score(image, TEXTS[0])
    chw = torch.from_numpy(image).permute(2, 0, 1).double() / 255
    for variant in (Image.fromarray(image), image.astype(np.float64) / 255, chw, chw.permute(1, 2, 0)):
        assert scorer.score(variant, TEXTS[0]) == pytest.approx(expected, abs=1e-9)


def test_clip_t_input_errors(scorer):
    with pytest.raises(ValueError, match="got 2 images but 1 texts"):
        scorer.score_many([scene(0), scene(1)], ["one"])
    with pytest.raises(ValueError, match="texts must be a list of strings"):
        scorer.score_many([scene(0)], "one")
    with pytest.raises(ValueError, match="images must be a batch"):
        scorer.cosine_many(scene(0), ["one"])
