"""The glyph model's scene variant: the sign in the middle of a random scene (data, coordinates, pipeline config)."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from safetext.models.glyph import GlyphModelConfig, build_glyph_pipeline, load_glyph_pipeline
from safetext.models.glyph.data import GlyphDataConfig, SignSampler, render_background, render_scene, render_sign, sign_box
from safetext.models.glyph.pipeline import coordinate_channels, denoiser_input
from safetext.models.glyph.train import GlyphTrainConfig, train_glyph
from tests.tiny_pipelines import TINY_GLYPH_CONFIG

SCENE = GlyphDataConfig(height=24, width=96, canvas_height=64, canvas_width=128)
TINY_SCENE = dataclasses.replace(TINY_GLYPH_CONFIG, height=32, width=48, sign_height=16, sign_width=32)


def test_scene_puts_the_sign_with_a_border_in_the_middle():
    img = render_scene("hello", "red", 0, 0, SCENE, random.Random(0))
    assert img.shape == (3, 64, 128)
    top, left, bottom, right = sign_box((64, 128), (24, 96))
    assert (top, left, bottom, right) == (20, 16, 44, 112)
    sign = render_sign("hello", "red", config=SCENE)
    inner = img[:, top + 1 : bottom - 1, left + 1 : right - 1]
    assert torch.equal(inner, sign[:, 1:-1, 1:-1])  # the sign itself is untouched inside its border
    border = torch.tensor([200, 30, 30]) / 255.0 * 0.45
    assert torch.allclose(img[:, top, left + 5], border) and torch.allclose(img[:, bottom - 1, right - 1], border)
    shifted = render_scene("hello", "red", 3, -2, SCENE, random.Random(0))
    assert torch.equal(shifted[:, top - 2 + 1 : bottom - 2 - 1, left + 3 + 1 : right + 3 - 1], inner)


def test_scene_background_varies_with_the_seed_not_the_word():
    a = render_scene("hello", "red", 0, 0, SCENE, random.Random(1))
    b = render_scene("world", "red", 0, 0, SCENE, random.Random(1))
    c = render_scene("hello", "red", 0, 0, SCENE, random.Random(2))
    outside = torch.ones(64, 128, dtype=torch.bool)
    outside[20:44, 16:112] = False
    assert torch.equal(a[:, outside], b[:, outside])  # same scene, another word: only the sign changes
    assert not torch.equal(a[:, outside], c[:, outside])
    bg = render_background(64, 128, random.Random(3))
    assert bg.shape == (64, 128, 3) and bg.min() >= 0 and bg.max() <= 1
    assert bg.std() > 0.02  # structure, not a flat colour


def test_scene_sampler_batches_are_canvas_sized_and_deterministic():
    sampler = SignSampler(SCENE, seed=4)
    a, samples = sampler.batch(3, 5)
    b, again = sampler.batch(3, 5)
    assert a.shape == (5, 3, 64, 128) and torch.equal(a, b) and samples == again
    assert SCENE.is_scene and not GlyphDataConfig().is_scene


def test_coordinates_relative_to_the_sign():
    plain = coordinate_channels(1, 12, 48, torch.device("cpu"), torch.float32)
    assert torch.equal(plain, coordinate_channels(1, 12, 48, torch.device("cpu"), torch.float32, (12, 48)))
    scene = coordinate_channels(1, 32, 64, torch.device("cpu"), torch.float32, (12, 48))
    x, y = scene[0, 0, 0], scene[0, 1, :, 0]
    # the sign's 48 columns sit at 8..55 of the 64-column canvas and span [-1, 1] there, as in training
    assert torch.allclose(x[8:56], plain[0, 0, 0], atol=1e-6)
    assert torch.allclose(y[10:22], plain[0, 1, :, 0], atol=1e-6)
    assert x[0] < -1 and x[-1] > 1
    sample = torch.zeros(2, 3, 64, 128)
    assert torch.equal(denoiser_input(sample, [24, 96])[:, 12:], scene.expand(2, -1, -1, -1))


def test_scene_pipeline_config_round_trips_and_is_validated(tmp_path):
    pipe = build_glyph_pipeline(TINY_SCENE, seed=0)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.sign_size == [16, 32] and pipe.sign_size == (16, 32) and pipe.default_size == (32, 48)
    assert pipe.sign_box() == (8, 8, 24, 40) and pipe.sign_box(margin=2) == (6, 6, 26, 42)
    pipe.save_pretrained(str(tmp_path / "scene"), safe_serialization=True)
    loaded = load_glyph_pipeline(tmp_path / "scene")
    assert loaded.config.sign_size == [16, 32]
    kw = dict(num_inference_steps=2, output_type="pt")
    a = pipe("A red sign that says hi.", generator=torch.Generator().manual_seed(0), **kw).images
    b = loaded("A red sign that says hi.", generator=torch.Generator().manual_seed(0), **kw).images
    assert a.shape == (1, 3, 32, 48) and torch.equal(a, b)
    bare = build_glyph_pipeline(TINY_GLYPH_CONFIG, seed=0)
    assert bare.config.sign_size is None and bare.sign_size == bare.default_size and bare.sign_box() == (0, 0, 16, 32)
    with pytest.raises(ValueError, match=r"sign_size must be \[height, width\]"):
        type(pipe)(unet=pipe.unet, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler, sign_size=[16])


def test_fine_tuning_a_bare_sign_model_into_scenes(tmp_path):
    bare = build_glyph_pipeline(TINY_GLYPH_CONFIG, seed=0)
    bare.save_pretrained(str(tmp_path / "bare"), safe_serialization=True)
    config = GlyphTrainConfig(
        steps=2, batch_size=2, warmup=1, log_every=1, checkpoint_every=100, export_every=100, sample_every=100,
        sample_steps=1, aux_weight=0.0, init_from=str(tmp_path / "bare"), model=TINY_SCENE,
    )
    export = train_glyph(config, tmp_path / "run")
    scene = load_glyph_pipeline(export)
    assert scene.config.sign_size == [16, 32] and scene.default_size == (32, 48)
    image = scene("A red sign that says hi.", num_inference_steps=1, output_type="pt").images
    assert image.shape == (1, 3, 32, 48)


def test_lora_dataset_of_scenes_matches_the_scene_model(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from safetext.lora import write_glyph_dataset

    folder = write_glyph_dataset(tmp_path / "d", ["hello"], per_word=2, height=64, width=128, sign_size=(24, 96))
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    bare = write_glyph_dataset(tmp_path / "b", ["hello"], per_word=2, height=24, width=96)
    again = write_glyph_dataset(tmp_path / "b2", ["hello"], per_word=2, height=24, width=96, sign_size=(24, 96))
    for record in records:
        image = np.asarray(Image.open(folder / record["file_name"]))
        assert image.shape == (64, 128, 3)
        plain = np.asarray(Image.open(bare / record["file_name"]))
        assert plain.shape == (24, 96, 3)
        # a sign as large as the image is a bare sign: the same files as without sign_size
        assert np.array_equal(plain, np.asarray(Image.open(again / record["file_name"])))


def test_rendered_word_swap_changes_only_the_letters():
    from safetext.models.glyph.data import rendered_word_swap, sign_box

    a, b = rendered_word_swap("cat", "dog", "red", 3, (24, 96), (64, 128))
    top, left, bottom, right = sign_box((64, 128), (24, 96))
    outside = torch.ones(64, 128, dtype=torch.bool)
    outside[top:bottom, left:right] = False
    assert torch.equal(a[:, outside], b[:, outside]) and not torch.equal(a, b)
    same = rendered_word_swap("cat", "cat", "red", 3, (24, 96), (64, 128))
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], a)
    other_scene = rendered_word_swap("cat", "dog", "red", 4, (24, 96), (64, 128))[0]
    assert not torch.equal(other_scene[:, outside], a[:, outside])  # the seed picks the scene
    bare = rendered_word_swap("cat", "dog", "red", 3, (24, 96), (24, 96))
    assert bare[0].shape == (3, 24, 96) and not torch.equal(*bare)
