"""Editing the written text of a generated image, on a tiny random-weight glyph pipeline."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from safetext.edit import EditError, edit_text, target_prompt_for
from safetext.edit.cli import register
from safetext.errors import LayerMapError
from safetext.models.glyph import save_glyph_pipeline
from safetext.patching.layer_map import LayerMap
from safetext.patching.layers import discover_text_layers
from safetext.scoring import OcrResult
from tests.tiny_pipelines import TINY_GLYPH_CONFIG, build_tiny_glyph

TINY = TINY_GLYPH_CONFIG
PROMPT = 'A red sign that says "stop".'
STEPS = {"num_inference_steps": 3}


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_glyph()


def _plain(pipe, prompt: str, seed: int) -> torch.Tensor:
    images = pipe(prompt, generator=torch.Generator().manual_seed(seed), output_type="np", **STEPS).images
    return torch.from_numpy(images[0]).permute(2, 0, 1)


def test_target_prompt_replaces_the_source_text():
    assert target_prompt_for(PROMPT, "stop", "go") == 'A red sign that says "go".'
    assert target_prompt_for('A sign that says "STOP"', "stop", "go") == 'A sign that says "go"'
    with pytest.raises(EditError, match="source_text 'halt' does not occur in the prompt"):
        target_prompt_for(PROMPT, "halt", "go")
    with pytest.raises(EditError, match="target_text must be the non-empty text"):
        target_prompt_for(PROMPT, "stop", " ")


def test_edit_to_the_same_text_is_bit_identical_to_the_original(pipe):
    layers = [layer.name for layer in discover_text_layers(pipe)]
    result = edit_text(pipe, PROMPT, "stop", "stop", layers=layers, seed=7, ocr=None, **STEPS)
    assert torch.equal(result.original, result.edited)
    assert torch.equal(result.original, _plain(pipe, PROMPT, 7))  # the original is the user's image
    assert result.metrics["identical"] and result.metrics["psnr"] is None and result.metrics["ssim"] == pytest.approx(1.0)
    assert result.report.patched_steps == 3  # the patch really ran, with the prompt's own K/V


def test_edit_with_every_layer_from_step_zero_equals_generating_the_target_prompt(pipe):
    layers = [layer.name for layer in discover_text_layers(pipe)]
    result = edit_text(pipe, PROMPT, "stop", "go", layers=layers, seed=7, ocr=None, **STEPS)
    assert result.target_prompt == 'A red sign that says "go".'
    assert not torch.equal(result.original, result.edited) and not result.metrics["identical"]
    assert torch.equal(result.edited, _plain(pipe, result.target_prompt, 7))
    assert result.metrics["ssim"] < 1.0 and math.isfinite(result.metrics["psnr"])


def test_edit_uses_the_layer_map_layers_and_start_step(pipe):
    name = "mid_block.attentions.0.transformer_blocks.0.attn2"
    layer_map = LayerMap.for_model(pipe, [name], 0.34, name="mid-only")
    result = edit_text(pipe, PROMPT, "stop", "go", layer_map=layer_map, seed=1, ocr=None, **STEPS)
    assert result.report.layers == (name,)
    assert (result.metrics["start_step"], result.report.patched_steps) == (2, 1)  # ceil(0.34 * 3) = 2
    assert result.metrics["layer_map"] == "mid-only" and result.metrics["layers"] == [name]
    assert not torch.equal(result.original, result.edited)
    unmapped = edit_text(pipe, PROMPT, "stop", "go", seed=1, ocr=None, **STEPS)  # no preset: every layer
    assert unmapped.metrics["layer_map"] == "all-text-layers" and "no layer map" in unmapped.metrics["notes"][0]


def test_edit_rejects_bad_requests(pipe):
    with pytest.raises(EditError, match="pass either layer_map or layers, not both"):
        edit_text(pipe, PROMPT, "stop", "go", layers=[0], layer_map="x.yaml", ocr=None)
    with pytest.raises(EditError, match="edit_text sets generator itself"):
        edit_text(pipe, PROMPT, "stop", "go", layers=[0], generator=torch.Generator(), ocr=None)
    with pytest.raises(LayerMapError, match="no text-attention layer 42"):
        edit_text(pipe, PROMPT, "stop", "go", layers=[42], ocr=None)


class _StubOcr:
    def read_many(self, images):
        return [OcrResult("STOP", 0.9), OcrResult("G0!", 0.8)]


def test_edit_metrics_report_ocr_of_both_images(pipe):
    result = edit_text(pipe, PROMPT, "stop", "go", layers=[2], seed=0, ocr=_StubOcr(), **STEPS)
    metrics = result.metrics
    assert (metrics["original_text"], metrics["edited_text"]) == ("STOP", "G0!")
    assert metrics["original_reads_source"] and not metrics["edited_reads_target"]
    assert metrics["edited_f1_target"] == pytest.approx(0.5)  # "g0" vs "go": one of two characters


def test_save_and_cli_write_the_four_files(pipe, tmp_path, capsys):
    result = edit_text(pipe, PROMPT, "stop", "go", layers=[2, 3], seed=0, ocr=None, **STEPS)
    files = result.save(tmp_path / "api")
    assert sorted(path.name for path in files.values()) == ["edited.png", "metrics.json", "original.png", "side_by_side.png"]
    with Image.open(files["original"]) as original:
        assert np.array_equal(np.asarray(original), np.asarray(result.original_image))
    with Image.open(files["side_by_side"]) as pair:
        assert pair.size == (2 * 32 * 8 + 8, 16 * 8 + 16)  # upscaled 8x to 128 px high, gap, caption
    assert json.loads(files["metrics"].read_text())["target_prompt"] == 'A red sign that says "go".'

    model = tmp_path / "model"
    save_glyph_pipeline(pipe, model, fp16=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "cli"
    args = parser.parse_args(["edit", PROMPT, "--from", "stop", "--to", "go", "--model", str(model), "--steps", "3", "--no-ocr", "--out", str(out)])
    assert args.func(args) == 0
    assert {path.name for path in out.iterdir()} == {"edited.png", "metrics.json", "original.png", "side_by_side.png"}
    assert json.loads((out / "metrics.json").read_text())["source_text"] == "stop"
    bad = parser.parse_args(["edit", PROMPT, "--from", "halt", "--to", "go", "--model", str(model), "--no-ocr", "--out", str(out)])
    assert bad.func(bad) == 2
    assert "source_text 'halt' does not occur" in capsys.readouterr().err


@pytest.mark.slow
def test_edit_benchmark_runs_end_to_end_on_a_tiny_model(pipe, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    model = tmp_path / "model"
    save_glyph_pipeline(pipe, model, fp16=False)
    layer_map = tmp_path / "map.yaml"
    LayerMap.for_model(pipe, [2], 0.0, name="tiny").save(layer_map)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "edit_glyph.py"
    results = tmp_path / "results"
    command = [sys.executable, str(script), "--model", str(model), "--layer-map", str(layer_map), "--edits", "3",
               "--steps", "3", "--threads", "1", "--results", str(results)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads((results / "edit_glyph.json").read_text())
    assert summary["edits"] == 3 and summary["layer_map"]["layers"] == ["mid_block.attentions.0.transformer_blocks.0.attn2"]
    assert {path.name for path in results.iterdir()} == {"edit_glyph.json", "edit_glyph.md", "edit_glyph.png"}
