"""LoRA on chosen attention layers: exact targets, denoiser-only training, diffusers save/load, resume.

Every pipeline here is built fresh (the adapters mutate it), from tiny configs; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
from safetensors import safe_open

from safetext.errors import LayerMapError, PatchError, UnsupportedArchitectureError
from safetext.lora import (
    ALL_CROSS_ATTENTION,
    DEFAULT_PROJECTIONS,
    CaptionedImageDataset,
    LoraTrainConfig,
    caption_for_text,
    inject_lora,
    load_captioned_images,
    lora_module_names,
    lora_parameters,
    resolve_lora_targets,
    train_lora,
    write_glyph_dataset,
)
from safetext.lora import cli as lora_cli
from safetext.models.glyph import save_glyph_pipeline
from safetext.patching import LayerMap
from tests.tiny_pipelines import build_sd15, build_sdxl
from tests.tiny_pipelines import TINY_GLYPH_CONFIG, build_tiny_glyph

TINY_GLYPH = TINY_GLYPH_CONFIG
GLYPH_LOCALIZED = ["mid_block.attentions.0.transformer_blocks.0.attn2", "up_blocks.0.attentions.0.transformer_blocks.0.attn2"]
SD15_MID = "mid_block.attentions.0.transformer_blocks.0.attn2"
PROMPT = 'A red sign that says "hello".'
CONFIG = LoraTrainConfig(rank=4, alpha=8.0, steps=3, lr=1e-2, batch_size=2, grad_accum=2, checkpoint_every=1, seed=5)


def tiny_glyph():
    return build_tiny_glyph()


def generate(pipe, steps: int = 2) -> torch.Tensor:
    if hasattr(pipe, "vae"):
        kwargs = {"height": 32, "width": 32, "guidance_scale": 5.0}
    else:
        kwargs = {"guidance_scale": 3.0}
    return pipe(PROMPT, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images


def base_state(denoiser: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Non-LoRA weights under their original names (peft moves a wrapped Linear's weight to ``base_layer``)."""
    return {
        name.replace(".base_layer", ""): p.detach().clone()
        for name, p in denoiser.named_parameters()
        if "lora_" not in name
    }


def lora_weights_by_module(denoiser: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LoRA tensors keyed by ``<module>.lora_A``/``lora_B`` whatever the adapter's name."""
    out = {}
    for name, module in denoiser.named_modules():
        if hasattr(module, "lora_A") and len(module.lora_A):
            (adapter,) = list(module.lora_A)
            out[f"{name}.lora_A"] = module.lora_A[adapter].weight.detach().clone()
            out[f"{name}.lora_B"] = module.lora_B[adapter].weight.detach().clone()
            out[f"{name}.scaling"] = torch.tensor(module.scaling[adapter])
    return out


def read_safetensors(run_dir) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a saved adapter (the file's byte order of metadata keys is not fixed)."""
    with safe_open(str(run_dir / "pytorch_lora_weights.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def expected_names(attention_modules) -> set[str]:
    return {f"{a}.{p}" for a in attention_modules for p in DEFAULT_PROJECTIONS}


@pytest.fixture(scope="module")
def glyph_data(tmp_path_factory):
    return write_glyph_dataset(tmp_path_factory.mktemp("data") / "signs", ["hello", "peace"], per_word=2, height=16, width=32, font_size=10)


@pytest.fixture(scope="module")
def trained_glyph(glyph_data, tmp_path_factory):
    """A tiny glyph pipeline after 3 LoRA steps on two localized layers, its pre-training state and the run dir."""
    pipe = tiny_glyph()
    before_unet, before_text = base_state(pipe.unet), base_state(pipe.text_encoder)
    out = tmp_path_factory.mktemp("run")
    result = train_lora(pipe, glyph_data, GLYPH_LOCALIZED, CONFIG, out_dir=out, progress=False)
    return pipe, result, before_unet, before_text, out


# ----------------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------------
def test_lora_targets_exactly_the_named_modules():
    pipe = build_sd15()
    targets = resolve_lora_targets(pipe.unet, [SD15_MID])
    assert targets.module_names == tuple(f"{SD15_MID}.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0"))
    touched = inject_lora(pipe.unet, targets, rank=2, alpha=2)
    holding_lora = {name for name, m in pipe.unet.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)}
    assert holding_lora == set(touched) == expected_names([SD15_MID])
    assert lora_module_names(pipe.unet) == holding_lora
    # a projection name selects its attention module; the order follows the model, not the selector
    sel = resolve_lora_targets(pipe.unet, [f"{SD15_MID}.to_k", "down_blocks.0.attentions.0.transformer_blocks.0.attn2"])
    assert sel.attention_modules == ("down_blocks.0.attentions.0.transformer_blocks.0.attn2", SD15_MID)


@pytest.mark.parametrize("build", [build_sd15, tiny_glyph], ids=["sd15", "glyph"])
def test_all_cross_attention_baseline_targets_every_attn2(build):
    pipe = build()
    attn2 = [name for name, _ in pipe.unet.named_modules() if name.endswith(".attn2")]
    targets = resolve_lora_targets(pipe.unet, ALL_CROSS_ATTENTION)
    assert set(targets.attention_modules) == set(attn2) and len(attn2) == (4 if build is build_sd15 else 7)
    inject_lora(pipe.unet, targets, rank=2, alpha=2)
    assert lora_module_names(pipe.unet) == expected_names(attn2)
    assert not any(".attn1." in name for name in lora_module_names(pipe.unet))


def test_layer_map_selects_its_layers_and_is_checked_against_the_model(tmp_path):
    glyph = tiny_glyph()
    layer_map = LayerMap.load(LayerMap.for_model(glyph, GLYPH_LOCALIZED, start_fraction=0.0, name="tiny-glyph").save(tmp_path / "m.yaml"))
    targets = resolve_lora_targets(glyph.unet, layer_map)
    assert targets.attention_modules == tuple(GLYPH_LOCALIZED) and targets.selector == "layer-map"

    class MapLike:  # anything else with a ``layers`` list of attention-module names
        layers = (SD15_MID,)

    assert resolve_lora_targets(build_sd15().unet, MapLike()).attention_modules == (SD15_MID,)
    with pytest.raises(LayerMapError, match=r"layer map 'tiny-glyph': this model has no text-attention layer 'up_blocks.0"):
        resolve_lora_targets(build_sd15().unet, layer_map)  # made for the glyph UNet, whose up block 0 has attention


def test_selector_matching_nothing_raises_and_lists_valid_names():
    pipe = build_sd15()
    with pytest.raises(LayerMapError, match=r"names no attention module of UNet2DConditionModel: \['up_blocks.9.attn2'\]") as err:
        resolve_lora_targets(pipe.unet, ["up_blocks.9.attn2"])
    assert f"  - {SD15_MID}" in str(err.value) and "up_blocks.1.attentions.1.transformer_blocks.0.attn2" in str(err.value)
    with pytest.raises(LayerMapError, match="selector is empty"):
        resolve_lora_targets(pipe.unet, [])
    with pytest.raises(LayerMapError, match="unknown LoRA target selector 'all-attention'"):
        resolve_lora_targets(pipe.unet, "all-attention")
    with pytest.raises(LayerMapError, match="has no Linear 'add_k_proj'"):
        resolve_lora_targets(pipe.unet, [SD15_MID], projections=("to_k", "add_k_proj"))
    assert not lora_module_names(pipe.unet)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------
def test_training_changes_only_the_targeted_modules(trained_glyph):
    pipe, result, before_unet, before_text, _ = trained_glyph
    assert set(result.targeted_module_names) == expected_names(GLYPH_LOCALIZED) == lora_module_names(pipe.unet)
    after = base_state(pipe.unet)
    assert after.keys() == before_unet.keys()
    assert [k for k in after if not torch.equal(after[k], before_unet[k])] == []
    text_after = base_state(pipe.text_encoder)
    assert all(torch.equal(text_after[k], before_text[k]) for k in before_text)
    lora = lora_parameters(pipe.unet, result.adapter_name)
    assert len(lora) == 2 * len(result.targeted_module_names)
    assert all(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # "gaussian" init starts B at 0
    linears = [pipe.unet.get_submodule(name).base_layer for name in result.targeted_module_names]
    expected_count = sum(4 * (linear.in_features + linear.out_features) for linear in linears)
    assert result.lora_parameters == expected_count == result.targets.parameter_count(pipe.unet, rank=4)
    assert len(result.losses) == 3 and result.steps == 3 and pipe.unet.training == tiny_glyph().unet.training  # mode restored


def test_save_load_round_trip_is_bit_exact_unfused(trained_glyph):
    pipe, result, _, _, out = trained_glyph
    summary = json.loads((out / "lora_targets.json").read_text())
    assert set(summary["targeted_module_names"]) == expected_names(GLYPH_LOCALIZED) and summary["rank"] == 4
    fresh = tiny_glyph()
    fresh.load_lora_weights(str(out))
    assert lora_module_names(fresh.unet) == lora_module_names(pipe.unet)
    trained, loaded = lora_weights_by_module(pipe.unet), lora_weights_by_module(fresh.unet)
    assert trained.keys() == loaded.keys()
    assert all(torch.equal(trained[k], loaded[k]) for k in trained)
    assert float(trained[f"{GLYPH_LOCALIZED[0]}.to_k.scaling"]) == 8.0 / 4  # alpha survived (metadata)
    assert torch.equal(generate(pipe), generate(fresh))  # LoRA kept as separate layers (not fused)
    assert not torch.equal(generate(pipe), generate(tiny_glyph()))


def test_sd15_round_trip_through_its_own_loader(tmp_path, glyph_data):
    pipe = build_sd15()
    before = base_state(pipe.unet)
    cfg = LoraTrainConfig(rank=2, alpha=2.0, steps=2, lr=1e-2, batch_size=2, checkpoint_every=0)
    result = train_lora(pipe, glyph_data, ALL_CROSS_ATTENTION, cfg, out_dir=tmp_path, progress=False)
    assert result.targets.selector == ALL_CROSS_ATTENTION
    after = base_state(pipe.unet)
    assert all(torch.equal(after[k], before[k]) for k in before)
    fresh = build_sd15()
    fresh.load_lora_weights(str(tmp_path))
    trained, loaded = lora_weights_by_module(pipe.unet), lora_weights_by_module(fresh.unet)
    assert trained.keys() == loaded.keys() and all(torch.equal(trained[k], loaded[k]) for k in trained)
    assert torch.equal(generate(pipe), generate(fresh))


class InterruptedDataset(CaptionedImageDataset):
    """Raises KeyboardInterrupt on the ``fail_at``-th batch (simulating Ctrl-C mid-run)."""

    def __init__(self, base: CaptionedImageDataset, fail_at: int) -> None:
        super().__init__(base.records, base.size, base.source)
        self.calls, self.fail_at = 0, fail_at

    def batch(self, indices):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return super().batch(indices)


def test_resume_after_interruption_equals_uninterrupted_run(trained_glyph, glyph_data, tmp_path):
    pipe_full, result_full, _, _, out_full = trained_glyph
    pipe = tiny_glyph()
    reference = generate(pipe)
    dataset = InterruptedDataset(load_captioned_images(glyph_data, (16, 32)), fail_at=6)  # step 3, first micro-batch
    with pytest.raises(KeyboardInterrupt):
        train_lora(pipe, dataset, GLYPH_LOCALIZED, CONFIG, out_dir=tmp_path, progress=False)
    # the failed run leaves the pipeline clean; its step-2 checkpoint stays
    assert not lora_module_names(pipe.unet) and not getattr(pipe.unet, "peft_config", None)
    assert torch.equal(generate(pipe), reference)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 2
    with pytest.raises(ValueError, match=r"already holds a LoRA checkpoint .*pass resume=True \(--resume\)"):
        train_lora(pipe, glyph_data, GLYPH_LOCALIZED, CONFIG, out_dir=tmp_path, progress=False)
    changed = dataclasses.replace(CONFIG, rank=8)
    with pytest.raises(ValueError, match="the run settings changed .*rank: checkpoint 4 vs now 8"):
        train_lora(pipe, glyph_data, GLYPH_LOCALIZED, changed, out_dir=tmp_path, resume=True, progress=False)
    resumed = train_lora(pipe, glyph_data, GLYPH_LOCALIZED, CONFIG, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.resumed_from == 2 and resumed.losses == result_full.losses
    full, again = lora_weights_by_module(pipe_full.unet), lora_weights_by_module(pipe.unet)
    assert all(torch.equal(full[k], again[k]) for k in full)
    saved_full, saved_again = read_safetensors(out_full), read_safetensors(tmp_path)
    assert saved_full[1] == saved_again[1]  # metadata (the LoraConfig)
    assert saved_full[0].keys() == saved_again[0].keys()
    assert all(torch.equal(saved_full[0][k], saved_again[0][k]) for k in saved_full[0])
    log_steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log_steps == [1, 2, 3]


def test_hooks_on_to_k_after_injection_see_the_lora_delta():
    pipe = build_sd15()
    name = f"{SD15_MID}.to_k"
    seen: dict[str, torch.Tensor] = {}
    early = pipe.unet.get_submodule(name).register_forward_hook(lambda m, i, o: seen.__setitem__("before", o))
    inject_lora(pipe.unet, resolve_lora_targets(pipe.unet, [SD15_MID]), rank=2, alpha=2, init_lora_weights=False)
    to_k = pipe.unet.get_submodule(name)
    late = to_k.register_forward_hook(lambda m, i, o: seen.update(after=o, input=i[0]))
    try:
        generate(pipe, steps=1)
    finally:
        early.remove()
        late.remove()
    base_out = to_k.base_layer(seen["input"])
    assert not torch.equal(seen["after"], base_out)  # the hook after injection sees base + LoRA delta
    adapter = next(iter(to_k.lora_A))
    delta = to_k.lora_B[adapter](to_k.lora_A[adapter](seen["input"])) * to_k.scaling[adapter]
    assert torch.allclose(seen["after"], base_out + delta, atol=1e-6)
    assert torch.equal(seen["before"], base_out)  # a hook registered before injection misses it


# ----------------------------------------------------------------------------------------------------
# Errors and data
# ----------------------------------------------------------------------------------------------------
def test_failures_leave_the_pipeline_clean(tmp_path, glyph_data):
    pipe = tiny_glyph()
    flags = [p.requires_grad for p in pipe.unet.parameters()]
    reference = generate(pipe)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    (broken / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": caption_for_text("hi")}) + "\n")
    with pytest.raises(ValueError, match="cannot read image .*a.png"):
        train_lora(pipe, broken, GLYPH_LOCALIZED, CONFIG, progress=False)
    assert not lora_module_names(pipe.unet) and [p.requires_grad for p in pipe.unet.parameters()] == flags
    assert torch.equal(generate(pipe), reference)
    inject_lora(pipe.unet, resolve_lora_targets(pipe.unet, GLYPH_LOCALIZED), rank=2, alpha=2)
    with pytest.raises(PatchError, match=r"already carries adapters \['safetext_lora'\]"):
        train_lora(pipe, glyph_data, GLYPH_LOCALIZED, CONFIG, progress=False)
    half = tiny_glyph()
    half.unet.to(torch.float16)
    with pytest.raises(ValueError, match="LoRA training runs in float32, but UNet2DConditionModel is torch.float16"):
        train_lora(half, glyph_data, GLYPH_LOCALIZED, CONFIG, progress=False)
    assert not lora_module_names(half.unet)


def test_unsupported_pipeline_names_the_supported_ones(glyph_data):
    pipe = build_sdxl()
    with pytest.raises(UnsupportedArchitectureError, match="LoRA training does not support StableDiffusionXLPipeline") as err:
        train_lora(pipe, glyph_data, ALL_CROSS_ATTENTION, CONFIG, progress=False)
    assert "  - sd1x_latent: Stable Diffusion 1.x/2.x latent UNet (StableDiffusionPipeline)" in str(err.value)
    assert "  - glyph_pixel: safetext's embedded glyph model (pixel-space UNet) (GlyphPipeline)" in str(err.value)
    assert not lora_module_names(pipe.unet)


def test_dataset_folder_and_jsonl_with_clear_errors(tmp_path, glyph_data):
    records = [json.loads(line) for line in (glyph_data / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["word"] for r in records} == {"hello", "peace"}
    folder = load_captioned_images(glyph_data, (8, 16))
    image, caption = folder[0]
    assert image.shape == (3, 8, 16) and caption == records[0]["text"] and 0 <= image.min() <= image.max() <= 1
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps({"file_name": f"{glyph_data.name}/{r['file_name']}", "text": r["text"]}) for r in records))
    (tmp_path / glyph_data.name).symlink_to(glyph_data)
    assert torch.equal(load_captioned_images(jsonl, (8, 16))[3][0], folder[3][0])
    jsonl.write_text(json.dumps({"file_name": "x.png", "text": "t"}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: image 'x.png' not found"):
        load_captioned_images(jsonl, (8, 16))
    jsonl.write_text(json.dumps({"file_name": f"{glyph_data.name}/{records[0]['file_name']}", "text": "t"}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2: not valid JSON"):
        load_captioned_images(jsonl, (8, 16))
    with pytest.raises(ValueError, match="has no metadata.jsonl"):
        load_captioned_images(tmp_path, (8, 16))
    assert caption_for_text("hello") == 'An image with text saying "hello"'


def test_cli_trains_a_saved_model(tmp_path, glyph_data, capsys):
    model_dir = tmp_path / "model"
    save_glyph_pipeline(tiny_glyph(), model_dir, fp16=False)
    parser = argparse.ArgumentParser()
    lora_cli.register(parser.add_subparsers(dest="command"))
    map_file = LayerMap.for_model(tiny_glyph(), GLYPH_LOCALIZED, start_fraction=0.0).save(tmp_path / "map.yaml")
    argv = ["train-lora", "--model", str(model_dir), "--data", str(glyph_data), "--layer-map", str(map_file),
            "--rank", "2", "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "run"), "--no-progress"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "adapted 8 Linears in 2 attention modules (layer-map)" in capsys.readouterr().out
    assert (tmp_path / "run" / "pytorch_lora_weights.safetensors").is_file()
    args = parser.parse_args(argv)
    assert args.func(args) == 2  # a second run into the same directory needs --resume
    assert "pass resume=True (--resume)" in capsys.readouterr().err
    args = parser.parse_args(["train-lora", "--model", str(model_dir), "--write-glyph-data", str(tmp_path / "signs"),
                              "--words", "hello,peace", "--per-word", "1", "--target", ALL_CROSS_ATTENTION, "--rank", "2",
                              "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "baseline"), "--no-progress"])
    assert args.func(args) == 0
    assert "adapted 28 Linears in 7 attention modules (all-cross-attention)" in capsys.readouterr().out
    assert len(load_captioned_images(tmp_path / "signs", (16, 32))) == 2
