"""The shipped glyph weights: load offline and fast, get their own layer-map preset, run guarded."""

from __future__ import annotations

import time

import pytest
import torch

from safetext.generator import SafeTextGenerator
from safetext.models.glyph import load_glyph_pipeline, shipped_weights_dir
from safetext.patching import discover_text_layers, resolve_layer_map

pytestmark = pytest.mark.skipif(not (shipped_weights_dir() / "model_index.json").is_file(), reason="no shipped glyph weights")

KW = dict(num_inference_steps=4, output_type="pt")


@pytest.fixture(scope="module")
def glyph():
    started = time.perf_counter()
    pipe = load_glyph_pipeline()
    return pipe, time.perf_counter() - started


def test_shipped_weights_load_in_fp32_with_seven_text_layers(glyph):
    pipe, seconds = glyph
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.float32}
    assert len(discover_text_layers(pipe)) == 7
    assert pipe.default_size == (24, 96)
    assert seconds < 10  # generous: the target (< 2 s) is measured by benchmarks/glyph_eval.py


def test_shipped_preset_matches_and_drives_the_patch(glyph):
    pipe, _ = glyph
    resolved = resolve_layer_map(pipe)
    assert resolved.source == "preset" and resolved.layer_map.name == "glyph"
    gen = SafeTextGenerator(pipe, policy="default")
    clean = 'A blue sign that says "garden".'
    raw = pipe(clean, generator=torch.Generator().manual_seed(0), **KW).images
    assert torch.equal(gen(clean, generator=torch.Generator().manual_seed(0), **KW).images, raw)
    toxic = 'A red sign that says "shit".'
    out = gen(toxic, generator=torch.Generator().manual_seed(0), **KW)
    assert out.verdict.action.value == "neutralize"
    assert out.verdict.details["layers"] == list(resolved.layer_map.layers)
    assert out.verdict.details["layer_map_source"] == "preset"
    assert not torch.equal(out.images, pipe(toxic, generator=torch.Generator().manual_seed(0), **KW).images)
