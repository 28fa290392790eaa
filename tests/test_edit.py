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


# --- region blending -----------------------------------------------------------------------------------

BOX = (4, 8, 12, 24)  # (top, left, bottom, right) inside the tiny 16 x 32 image


def _outside(image: torch.Tensor, box=BOX) -> torch.Tensor:
    keep = torch.ones(image.shape[-2:], dtype=torch.bool)
    keep[box[0] : box[2], box[1] : box[3]] = False
    return image[:, keep]


def test_region_edit_keeps_every_pixel_outside_the_region(pipe):
    layers = [layer.name for layer in discover_text_layers(pipe)]
    free = edit_text(pipe, PROMPT, "stop", "go", layers=layers, seed=4, ocr=None, **STEPS)
    boxed = edit_text(pipe, PROMPT, "stop", "go", layers=layers, seed=4, ocr=None, region=BOX, **STEPS)
    assert torch.equal(boxed.original, free.original) and torch.equal(boxed.original, _plain(pipe, PROMPT, 4))
    # without a region the whole image moves; with one, outside the box it is the original bit for bit
    assert not torch.equal(_outside(free.edited), _outside(free.original))
    assert torch.equal(_outside(boxed.edited), _outside(boxed.original))
    inside = (slice(None), slice(BOX[0], BOX[2]), slice(BOX[1], BOX[3]))
    assert not torch.equal(boxed.edited[inside], boxed.original[inside])
    assert boxed.metrics["ssim"] > free.metrics["ssim"]
    assert boxed.metrics["region"] == {"kind": "box", "box": list(BOX)} and free.metrics["region"] is None
    mask = torch.zeros(16, 32)
    mask[BOX[0] : BOX[2], BOX[1] : BOX[3]] = 1.0
    masked = edit_text(pipe, PROMPT, "stop", "go", layers=layers, seed=4, ocr=None, region=mask.numpy(), **STEPS)
    assert torch.equal(masked.edited, boxed.edited) and masked.metrics["region"] == {"kind": "mask", "share": 0.25}


def test_region_edit_to_the_same_text_is_bit_identical(pipe):
    result = edit_text(pipe, PROMPT, "stop", "stop", layers=[0, 3], seed=2, ocr=None, region=BOX, **STEPS)
    assert torch.equal(result.original, result.edited) and result.metrics["identical"]


def test_text_region_is_the_declared_sign_of_a_scene_pipeline():
    from safetext.models.glyph import build_glyph_pipeline
    from tests.test_glyph_scene import TINY_SCENE

    scene = build_glyph_pipeline(TINY_SCENE, seed=0)
    scene.set_progress_bar_config(disable=True)
    result = edit_text(scene, PROMPT, "stop", "go", layers=[0, 3], seed=1, ocr=None, region="text", **STEPS)
    top, left, bottom, right = scene.sign_box(margin=-2)  # inside the 16 x 32 sign of the 32 x 48 scene
    assert (top, left, bottom, right) == (10, 10, 22, 38)
    assert result.metrics["region"] == {"kind": "text", "box": [top, left, bottom, right]}
    assert torch.equal(_outside(result.edited, (top, left, bottom, right)), _outside(result.original, (top, left, bottom, right)))
    assert not torch.equal(result.edited, result.original)


def test_region_rejects_bad_regions_before_generating(pipe):
    from safetext.edit import RegionError

    calls = []

    class Counting:
        """The pipeline, counting calls (a region error must come before any generation)."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, *args, callback_on_step_end=None, **kwargs):
            calls.append(1)
            return self.inner(*args, callback_on_step_end=callback_on_step_end, **kwargs)

    before = _plain(pipe, PROMPT, 0)
    counting = Counting(pipe)
    cases = [
        ("text", "declares no text region \\(sign_box\\); pass region=\\(top, left, bottom, right\\)"),
        ("sign", "region must be 'text', 'auto', a \\(top, left, bottom, right\\) box or an H x W mask, got 'sign'"),
        ((4, 8, 4, 24), "is empty or negative"),
        ((4, 8, 12.5, 24), "box of ints"),
        (np.full((16, 32), 1.5), "values must lie in \\[0, 1\\]"),
        (np.ones((2, 16, 32)), "must be 2-D"),
    ]
    for region, message in cases:
        with pytest.raises(RegionError, match=message):
            edit_text(counting, PROMPT, "stop", "go", layers=[0], ocr=None, region=region, **STEPS)
    assert calls == []
    with pytest.raises(EditError, match="edit_text sets callback_on_step_end itself"):
        edit_text(pipe, PROMPT, "stop", "go", layers=[0], ocr=None, region=BOX, callback_on_step_end=lambda *a: {}, **STEPS)

    class NoCallback:
        def __getattr__(self, name):
            return getattr(pipe, name)

        def __call__(self, prompt, generator=None, output_type="np", num_inference_steps=3):
            return pipe(prompt, generator=generator, output_type=output_type, num_inference_steps=num_inference_steps)

    with pytest.raises(RegionError, match="NoCallback takes neither callback_on_step_end nor callback"):
        edit_text(NoCallback(), PROMPT, "stop", "go", layers=[0], ocr=None, region=BOX, **STEPS)
    # a box that does not fit is only known once the image is: the error comes after the original run,
    # and the pipeline is left clean (no hook, the next plain call is the raw one)
    with pytest.raises(RegionError, match="does not fit the 16 x 32 image"):
        edit_text(pipe, PROMPT, "stop", "go", layers=[0], ocr=None, region=(0, 0, 17, 32), **STEPS)
    assert torch.equal(_plain(pipe, PROMPT, 0), before)
    assert all(not module._forward_hooks for module in pipe.unet.modules())


def test_trajectory_blend_area_averages_the_mask_onto_latents():
    from safetext.edit.region import RegionError, TrajectoryBlend

    mask = torch.zeros(16, 16)
    mask[0:8, 0:6] = 1.0  # a latent cell of 4 x 4 pixels is as editable as its share of the box
    blend = TrajectoryBlend(mask)
    original, edited = torch.zeros(1, 4, 4, 4), torch.ones(1, 4, 4, 4)
    blend.record(None, 0, 999, {"latents": original})
    out = blend.blend(None, 0, 999, {"latents": edited})["latents"]
    expected = torch.tensor([[1.0, 0.5, 0.0, 0.0]] * 2 + [[0.0] * 4] * 2)
    assert torch.equal(out[0, 0], expected) and torch.equal(out[0, 3], expected)
    with pytest.raises(RegionError, match="the original ran 1 steps"):
        blend.blend(None, 1, 990, {"latents": edited})
    with pytest.raises(RegionError, match="packed latents, as in Flux, are not supported"):
        blend.blend(None, 0, 999, {"latents": torch.ones(1, 16, 64)})


def test_glyph_pipeline_step_callback_sees_and_replaces_the_latents(pipe):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, int(timestep), tuple(kwargs["latents"].shape)))
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == 2 else {}

    image = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", callback_on_step_end=callback, **STEPS).images
    assert [step for step, _, _ in seen] == [0, 1, 2] and seen[0][2] == (1, 3, 16, 32)
    assert torch.equal(image, torch.full_like(image, 0.5))  # zero latents after the last step decode to mid-grey
    with pytest.raises(ValueError, match=r"callback_on_step_end_tensor_inputs \['noise'\] are not available"):
        pipe(PROMPT, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["noise"], **STEPS)


def test_cli_region_flag(pipe, tmp_path, capsys):
    model = tmp_path / "model"
    save_glyph_pipeline(pipe, model, fp16=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    common = [PROMPT, "--from", "stop", "--to", "go", "--model", str(model), "--steps", "3", "--no-ocr"]
    args = parser.parse_args(["edit", *common, "--region", "4,8,12,24", "--out", str(tmp_path / "boxed")])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "boxed" / "metrics.json").read_text())["region"] == {"kind": "box", "box": [4, 8, 12, 24]}
    bad = parser.parse_args(["edit", *common, "--region", "4,8,12", "--out", str(tmp_path / "bad")])
    assert bad.func(bad) == 2
    assert "--region must be 'text', 'auto' or TOP,LEFT,BOTTOM,RIGHT in pixels" in capsys.readouterr().err
    text = parser.parse_args(["edit", *common, "--region", "text", "--out", str(tmp_path / "bad")])
    assert text.func(text) == 2
    assert "GlyphPipeline declares no text region" in capsys.readouterr().err


def test_region_on_a_latent_diffusion_pipeline():
    from tests.tiny_pipelines import build_sd15

    sd = build_sd15()
    kwargs = {"height": 32, "width": 32, "num_inference_steps": 3, "guidance_scale": 5.0}
    layers = [layer.name for layer in discover_text_layers(sd)]
    free = edit_text(sd, "a sign that says stop", "stop", "go", layers=layers, seed=1, ocr=None, **kwargs)
    whole = edit_text(sd, "a sign that says stop", "stop", "go", layers=layers, seed=1, ocr=None, region=(0, 0, 32, 32), **kwargs)
    assert torch.equal(whole.edited, free.edited)  # a region covering the image blends nothing away
    none = edit_text(sd, "a sign that says stop", "stop", "go", layers=layers, seed=1, ocr=None, region=np.zeros((32, 32)), **kwargs)
    assert torch.equal(none.edited, none.original) and not torch.equal(free.edited, free.original)
    half = edit_text(sd, "a sign that says stop", "stop", "go", layers=layers, seed=1, ocr=None, region=(0, 0, 32, 16), **kwargs)
    # the 4 x 4 latents: the right half is the original's, so the decoded right edge barely moves
    right_change = (half.edited[:, :, 24:] - half.original[:, :, 24:]).abs().mean()
    left_change = (half.edited[:, :, :8] - half.original[:, :, :8]).abs().mean()
    assert right_change < 0.5 * left_change  # (the tiny random VAE decoder mixes neighbouring latents)


@pytest.mark.parametrize("name", ["sdxl", "sd3", "pixart", "if"])
def test_region_blending_on_other_latent_pipelines(name):
    from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS

    pipe = TINY_BUILDERS[name]()
    kwargs = {k: v for k, v in TINY_CALL_KWARGS[name].items() if k != "output_type"}
    kwargs["num_inference_steps"] = 2
    layers = [layer.name for layer in discover_text_layers(pipe)]
    free = edit_text(pipe, "a sign that says stop", "stop", "go", layers=layers, seed=1, ocr=None, **kwargs)
    whole = edit_text(pipe, "a sign that says stop", "stop", "go", layers=layers, seed=1, ocr=None, region=(0, 0, 32, 32), **kwargs)
    kept = edit_text(pipe, "a sign that says stop", "stop", "go", layers=layers, seed=1, ocr=None, region=np.zeros((32, 32)), **kwargs)
    assert not torch.equal(free.edited, free.original)
    assert torch.equal(whole.edited, free.edited) and torch.equal(kept.edited, kept.original)


def test_region_on_packed_latents_is_refused_with_the_reason():
    from safetext.edit import RegionError
    from tests.tiny_pipelines import TINY_CALL_KWARGS, build_flux

    flux = build_flux()
    kwargs = {k: v for k, v in TINY_CALL_KWARGS["flux"].items() if k != "output_type"}
    kwargs["num_inference_steps"] = 2
    with pytest.raises(RegionError, match="packed latents, as in Flux, are not supported"):
        edit_text(flux, "a sign that says stop", "stop", "go", layers=[0], seed=1, ocr=None, region=(0, 0, 16, 16), **kwargs)
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in flux.transformer.modules())
