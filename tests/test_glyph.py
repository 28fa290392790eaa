"""The embedded glyph model: data, pipeline, save/load and resumable training (tiny configs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from safetext.models.glyph import GlyphPipeline, load_glyph_pipeline
from safetext.models.glyph.data import (
    COLORS,
    PALETTE,
    GlyphDataConfig,
    SignSampler,
    aux_targets,
    load_vocabulary,
    make_prompt,
    render_sign,
)
from safetext.models.glyph.train import GlyphTrainConfig, train_glyph
from tests.tiny_pipelines import TINY_GLYPH_CONFIG, build_tiny_glyph

TINY = TINY_GLYPH_CONFIG


@pytest.fixture(scope="module")
def tiny_glyph() -> GlyphPipeline:
    return build_tiny_glyph()


def test_vocabulary_split_is_disjoint_and_holds_special_words():
    v = load_vocabulary()
    assert set(v["heldout"]).isdisjoint(v["train"])
    assert set(v["toxic"]) <= set(v["train"]) and set(v["replacements"]) <= set(v["train"])
    assert 40 <= len(v["heldout"]) <= 90  # ~10% of the common words, chosen by a stable hash
    assert "fuck" in v["toxic"] and "peace" in v["replacements"]


def test_render_sign_uses_palette_colours_and_shifts():
    cfg = GlyphDataConfig()
    img = render_sign("hello", "red", config=cfg)
    assert img.shape == (3, cfg.height, cfg.width)
    bg = torch.tensor(PALETTE["red"][0]) / 255.0
    assert torch.allclose(img[:, 0, 0], bg)  # corner is background
    fg = torch.tensor(PALETTE["red"][1]) / 255.0
    centre = img[:, cfg.height // 2, :]
    assert ((centre - fg[:, None]).abs().sum(0) < 0.05).any()  # some pixel of the word is pure text colour
    shifted = render_sign("hello", "red", dx=2, config=cfg)
    assert torch.equal(shifted[:, :, 2:], img[:, :, :-2])
    with pytest.raises(ValueError, match="unknown colour 'teal'"):
        render_sign("hello", "teal")


def test_sampler_is_deterministic_per_step():
    s = SignSampler(seed=3)
    a_img, a = s.batch(7, 4)
    b_img, b = s.batch(7, 4)
    c_img, _ = s.batch(8, 4)
    assert a == b and torch.equal(a_img, b_img)
    assert not torch.equal(a_img, c_img)
    for sample in a:
        assert sample.word.lower() in sample.prompt.lower() and sample.color in sample.prompt


def test_aux_targets_mark_word_bytes_and_offsets(tiny_glyph):
    from safetext.models.glyph.data import GlyphSample

    prompt = make_prompt("cat", "blue", 0)  # 'A blue sign that says "cat".'
    sample = GlyphSample("cat", "blue", 0, prompt)
    ids = tiny_glyph.tokenizer([prompt], padding="max_length", max_length=48, return_tensors="pt").input_ids
    t = aux_targets([sample], ids, tiny_glyph.tokenizer.pad_token_id)
    start = prompt.index("cat")
    assert t["is_word"][0].nonzero().flatten().tolist() == [start, start + 1, start + 2]
    assert t["offset"][0, start].item() == pytest.approx(-0.25) and t["offset"][0, start + 2].item() == pytest.approx(0.25)
    assert (t["color"][0, : len(prompt) + 1] == COLORS.index("blue")).all()  # +1: the </s> token
    assert (t["color"][0, len(prompt) + 1 :] == -100).all()


def test_pipeline_output_types_and_determinism(tiny_glyph):
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    pt = tiny_glyph("A red sign that says hello.", num_inference_steps=2, generator=g(), output_type="pt").images
    pt2 = tiny_glyph("A red sign that says hello.", num_inference_steps=2, generator=g(), output_type="pt").images
    assert pt.shape == (1, 3, 16, 32) and torch.equal(pt, pt2)
    assert pt.min() >= 0 and pt.max() <= 1
    other = tiny_glyph("A red sign that says world.", num_inference_steps=2, generator=g(), output_type="pt").images
    assert not torch.equal(pt, other)
    arr = tiny_glyph("A red sign that says hello.", num_inference_steps=2, generator=g(), output_type="np").images
    assert arr.shape == (1, 16, 32, 3) and np.allclose(arr[0], pt[0].permute(1, 2, 0).numpy())
    pil = tiny_glyph(["a", "b"], num_inference_steps=2, generator=g(), num_images_per_prompt=2).images
    assert len(pil) == 4 and pil[0].size == (32, 16)
    with pytest.raises(ValueError, match="output_type must be"):
        tiny_glyph("x", num_inference_steps=1, output_type="latent")
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny_glyph("x", num_inference_steps=1, height=20)


def test_save_and_load_round_trip_is_bit_identical(tiny_glyph, tmp_path):
    tiny_glyph.save_pretrained(str(tmp_path / "glyph"), safe_serialization=True)
    loaded = load_glyph_pipeline(tmp_path / "glyph")
    assert isinstance(loaded, GlyphPipeline)
    kw = dict(num_inference_steps=2, output_type="pt")
    a = tiny_glyph("A sign that says hi.", generator=torch.Generator().manual_seed(1), **kw).images
    b = loaded("A sign that says hi.", generator=torch.Generator().manual_seed(1), **kw).images
    assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="model_index.json missing"):
        load_glyph_pipeline(tmp_path / "nothing")


def test_training_resume_matches_uninterrupted_run(tmp_path):
    def cfg(steps):
        return GlyphTrainConfig(steps=steps, batch_size=4, warmup=2, log_every=1, checkpoint_every=100, export_every=100, sample_every=100, sample_steps=1, model=TINY)

    train_glyph(cfg(4), tmp_path / "straight")
    train_glyph(cfg(2), tmp_path / "resumed")
    train_glyph(cfg(4), tmp_path / "resumed")  # resumes from step 2
    a = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "ckpt.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for key in ("unet", "ema_unet", "text_encoder"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    log = [json.loads(line) for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert (tmp_path / "resumed" / "export" / "model_index.json").is_file()
    assert len(list((tmp_path / "resumed" / "samples").glob("step_*.png"))) >= 1
