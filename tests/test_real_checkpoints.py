"""Published checkpoints: presets engage on the Hub configs, real neighbours do not, and `safetext inspect` says why.

The denoiser configs in ``tests/data/hub_configs/<model>/config.json`` are written the way the Hub
publishes them (nulls, ``_class_name``, ``_diffusers_version``, ``_name_or_path``; provenance in the
folder's README). Models are built from them on the ``meta`` device.

Also here: few-step schedules (the map's start step is clamped into the schedule, so a flagged prompt
is patched at 1-4 steps on every family, and with an img2img ``strength``) and the generator's
``on_unknown_model`` modes with their Prometheus counter.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, UNet2DConditionModel
from prometheus_client import CollectorRegistry

from safetext.cli import main
from safetext.errors import LayerMapError, PolicyViolation
from safetext.generator import SafeTextGenerator
from safetext.patching import KVPatch, LayerMap, ModelFingerprint, build_meta_denoiser, inspect_model, resolve_layer_map
from safetext.patching import find_preset, shipped_presets, start_step_for
from safetext.patching.inspection import PRESET_CONFIGS_DIR, preset_config_path, preset_structure_sha256
from safetext.patching.layer_map import legacy_config_sha256
from safetext.policy.verdict import Action
from safetext.telemetry import SafetextMetrics
from tests.test_patching_layers import SDXL_BASE_UNET_CONFIG, meta_model
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS, build_sd15, build_tiny_glyph

HUB = Path(__file__).parent / "data" / "hub_configs"
HUB_MODELS = tuple(sorted(path.name for path in HUB.iterdir() if path.is_dir()))
#: The Hub folder of the model each shipped preset was made for.
PRESET_MODELS = {"sdxl-base-1.0": "sdxl-base-1.0", "sd3-medium": "sd3-medium", "if-i-xl-v1.0": "if-i-xl-v1.0", "glyph": "glyph"}
#: Real checkpoints whose configs differ although they share a denoiser class.
REAL_PAIRS = (
    ("sdxl-base-1.0", "sdxl-refiner-1.0"),
    ("sd-1.5", "sd-2.1"),
    ("sd3-medium", "sd3.5-medium"),
    ("sd3-medium", "sd3.5-large"),
    ("sd3.5-medium", "sd3.5-large"),
    ("pixart-alpha-xl-2-1024-ms", "pixart-sigma-xl-2-1024-ms"),
    ("flux.1-dev", "flux.1-schnell"),
)
#: sha256 of stabilityai/stable-diffusion-xl-base-1.0 unet/config.json as the Hub's git-lfs pointer records it.
SDXL_BASE_PUBLISHED_SHA256 = "30ebc70750223e59006f7f2b4e1e6c102570aa19a9c4ae3e1fbe7591332dbae6"

FLAGGED = 'A sign that says "damn"'


def hub_config(name: str) -> dict:
    """The published denoiser config of a model, as a dict (nulls as None)."""
    return json.loads((HUB / name / "config.json").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def hub_model(name: str):
    """The model's denoiser built from its published config on the meta device (shared: do not modify)."""
    return build_meta_denoiser(HUB / name / "config.json")


# -- the data --------------------------------------------------------------------------------------
def test_hub_configs_are_written_as_published():
    assert set(HUB_MODELS) == {
        "sdxl-base-1.0", "sdxl-refiner-1.0", "sd-1.5", "sd-2.1", "sd3-medium", "sd3.5-medium", "sd3.5-large",
        "pixart-alpha-xl-2-1024-ms", "pixart-sigma-xl-2-1024-ms", "flux.1-dev", "flux.1-schnell", "if-i-xl-v1.0",
        "glyph",
    }
    for name in HUB_MODELS:
        config = hub_config(name)
        assert config["_class_name"] and config["_diffusers_version"], name
        assert (HUB / name / "config.json").read_text().endswith("}\n")
    # byte-identical to the published file (the sha256 its git-lfs pointer records)
    assert hashlib.sha256((HUB / "sdxl-base-1.0" / "config.json").read_bytes()).hexdigest() == SDXL_BASE_PUBLISHED_SHA256
    assert hub_config("sdxl-base-1.0")["upcast_attention"] is None  # null where the class default is False
    assert hub_config("if-i-xl-v1.0")["cross_attention_dim"] == 2816
    assert hub_config("flux.1-dev")["_name_or_path"] == "../checkpoints/flux-dev/transformer"
    assert "README.md" in {path.name for path in HUB.iterdir()}
    # the presets ship the same published configs
    for preset in shipped_presets():
        assert json.loads(preset_config_path(preset).read_text()) == hub_config(PRESET_MODELS[preset.name])
    assert {path.stem for path in PRESET_CONFIGS_DIR.glob("*.json")} == set(PRESET_MODELS)


def test_meta_models_allocate_no_weights():
    for name in HUB_MODELS:
        assert {parameter.device.type for parameter in hub_model(name).parameters()} == {"meta"}, name
    assert type(hub_model("pixart-alpha-xl-2-1024-ms")).__name__ == "PixArtTransformer2DModel"  # _class_name Transformer2DModel


# -- identity --------------------------------------------------------------------------------------
def _defaulted_keys_of_another_release(config: dict, cls: type) -> dict:
    """The config as another diffusers release writes it: every option spelled out with its default, plus one new."""
    written = dict(config, _diffusers_version="0.99.0")
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name != "self" and parameter.default is not inspect.Parameter.empty and name not in written:
            default = parameter.default
            written[name] = list(default) if isinstance(default, tuple) else default
    written["option_of_a_later_release"] = None
    return written


@pytest.mark.parametrize("preset_name", sorted(PRESET_MODELS))
def test_the_same_architecture_written_four_ways_resolves_to_the_same_preset(preset_name, tmp_path):
    name = PRESET_MODELS[preset_name]
    published = hub_config(name)
    model = hub_model(name)
    # (b) save_config of a model built from it, read back from the saved folder
    model.save_config(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    if name != "glyph":  # the glyph file was itself written by this diffusers release's save_config
        assert saved != published and saved["_diffusers_version"] != published["_diffusers_version"]
    # (c) another release: added defaulted keys; (d) a fine-tune at another resolution
    other_release = _defaulted_keys_of_another_release(published, type(model))
    sample_size = published["sample_size"]
    finetune = dict(published, sample_size=[s // 2 for s in sample_size] if isinstance(sample_size, list) else sample_size // 2)
    finetune["_name_or_path"] = "someone/fine-tune"
    variants = {
        "published": model,
        "save_config": build_meta_denoiser(tmp_path / "saved"),
        "another release": build_meta_denoiser(other_release),
        "fine-tune": build_meta_denoiser(finetune),
    }
    fingerprints = {key: ModelFingerprint.of(variant) for key, variant in variants.items()}
    assert len(set(fingerprints.values())) == 1, fingerprints
    for key, variant in variants.items():
        resolved = resolve_layer_map(variant)
        assert (resolved.source, resolved.layer_map.name, resolved.notes) == ("preset", preset_name, ()), key
    assert next(p for p in shipped_presets() if p.name == preset_name).fingerprint == fingerprints["published"]
    assert preset_structure_sha256(resolved.layer_map) == fingerprints["published"].structure_sha256


def test_the_old_config_hash_split_the_published_sdxl_from_its_hand_written_twin():
    published, hand_written = hub_model("sdxl-base-1.0"), meta_model(UNet2DConditionModel, SDXL_BASE_UNET_CONFIG)
    assert legacy_config_sha256(published) != legacy_config_sha256(hand_written)  # "upcast_attention": null vs false
    assert ModelFingerprint.of(published) == ModelFingerprint.of(hand_written)


def test_old_preset_files_load_and_migrate_to_the_structure_fingerprint():
    # the SDXL preset as shipped before: its config hash matched only a hand-written config
    old = next(p for p in shipped_presets() if p.name == "sdxl-base-1.0").model_copy(
        update={"fingerprint": ModelFingerprint(
            denoiser_class="UNet2DConditionModel",
            config_sha256="d416da0aaf5c2dc42d0fdb4ae9cc19c4ae3c7cb837c15721ff1808d6e819800f",
        )}
    )
    hand_written = meta_model(UNet2DConditionModel, SDXL_BASE_UNET_CONFIG)
    assert old.matches(hand_written) and not old.matches(hub_model("sdxl-base-1.0"))
    migrated = old.migrate(hand_written)
    assert migrated.matches(hub_model("sdxl-base-1.0"))
    assert migrated.fingerprint == next(p for p in shipped_presets() if p.name == "sdxl-base-1.0").fingerprint
    # a map file written by `safetext localize` before the change
    glyph_map = LayerMap.load(Path(__file__).parents[1] / "benchmarks" / "results" / "glyph_layer_map.yaml")
    assert glyph_map.fingerprint.is_legacy and glyph_map.matches(hub_model("glyph"))
    assert glyph_map.migrate(hub_model("glyph")).fingerprint == find_preset(hub_model("glyph")).fingerprint


@pytest.mark.parametrize(("first", "second"), REAL_PAIRS)
def test_real_neighbours_have_other_fingerprints(first, second):
    assert type(hub_model(first)) is type(hub_model(second))
    assert ModelFingerprint.of(hub_model(first)) != ModelFingerprint.of(hub_model(second))


def test_every_published_model_gets_its_own_preset_or_none():
    fingerprints = {name: ModelFingerprint.of(hub_model(name)) for name in HUB_MODELS}
    assert len(set(fingerprints.values())) == len(HUB_MODELS)  # 13 architectures, 13 identities
    for name in HUB_MODELS:
        preset = find_preset(hub_model(name))
        expected = next((p for p, model in PRESET_MODELS.items() if model == name), None)
        assert (preset.name if preset else None) == expected, name
        resolved = resolve_layer_map(hub_model(name))
        assert resolved.source == ("preset" if expected else "fallback"), name


@pytest.mark.parametrize(
    ("model", "layers"),
    [
        ("sdxl-base-1.0", {55: "up_blocks.0.attentions.2.transformer_blocks.1.attn2",
                           56: "up_blocks.0.attentions.2.transformer_blocks.2.attn2",
                           57: "up_blocks.0.attentions.2.transformer_blocks.3.attn2"}),
        ("sd3-medium", {10: "transformer_blocks.10.attn"}),
        ("if-i-xl-v1.0", {17: "up_blocks.1.attentions.3"}),
    ],
)
def test_paper_layers_hold_on_the_published_configs(model, layers):
    resolved = resolve_layer_map(hub_model(model))
    assert {layer.index: layer.name for layer in resolved.layers} == layers


# -- inspect ---------------------------------------------------------------------------------------
def test_inspect_a_preset_model_lists_every_layer_and_marks_the_mapped_ones():
    report = inspect_model(HUB / "sdxl-base-1.0" / "config.json")
    assert (report.resolved.source, report.resolved.layer_map.name, report.family) == ("preset", "sdxl-base-1.0", "unet_cross")
    assert len(report.layers) == 70 and [layer.index for layer in report.layers if layer.mapped] == [55, 56, 57]
    assert report.layers[55].kv_parameters == 2 * 2048 * 1280  # to_k + to_v, no bias
    assert report.comparison is None
    assert "the shipped preset 'sdxl-base-1.0' was made for this architecture" in report.reason
    # start steps shown with the clamp: 0.08 of 1 step is step 0
    assert report.start_steps() == "4 of 50, 2 of 20, 1 of 4, 0 of 1"


def test_inspect_explains_a_fallback_with_the_nearest_preset_and_what_differs():
    report = inspect_model(HUB / "sdxl-refiner-1.0" / "config.json")
    assert report.resolved.source == "fallback" and len(report.layers) == 44
    comparison = report.comparison
    assert comparison.preset.name == "sdxl-base-1.0"
    config = {key: (a, b) for key, a, b in comparison.config}
    assert config["cross_attention_dim"] == (2048, 1280)
    assert config["projection_class_embeddings_input_dim"] == (2816, 2560)
    assert "upcast_attention" not in config and "sample_size" not in config  # null reads as the default; both 128
    assert comparison.text_layers == (70, 44)
    assert comparison.missing_layers == tuple(f"up_blocks.0.attentions.2.transformer_blocks.{i}.attn2" for i in (1, 2, 3))
    assert ("conv_in.weight", [320, 4, 3, 3], [384, 4, 3, 3]) in comparison.other_shapes
    # the verdict's fallback note names the same reason
    note = resolve_layer_map(hub_model("sdxl-refiner-1.0")).notes[0]
    assert report.reason in note and "cross_attention_dim 2048 -> 1280" in note

    sd35 = inspect_model(HUB / "sd3.5-medium" / "config.json").comparison
    assert sd35.preset.name == "sd3-medium" and sd35.text_layers == (24, 24) and sd35.missing_layers == ()
    assert {key: (a, b) for key, a, b in sd35.config}["qk_norm"] == (None, "rms_norm")
    assert "transformer_blocks.0.attn2.to_k.weight" in sd35.only_in_model
    assert "transformer_blocks.0.attn.norm_q.weight" in sd35.only_in_model

    flux = inspect_model(HUB / "flux.1-schnell" / "config.json")
    assert flux.comparison is None and flux.reason.startswith("no shipped preset is made for a FluxTransformer2DModel")


def test_inspect_cli_prints_the_table_and_the_reason(capsys):
    path = HUB / "sdxl-refiner-1.0" / "config.json"
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"model        {path}"
    assert lines[1] == "denoiser     UNet2DConditionModel (family unet_cross, 2,259,526,660 parameters)"
    assert lines[3].startswith("layer map    all-text-layers [fallback]: 44 of 44 text-attention layers")
    assert lines[4].startswith("reason       no shipped preset has fingerprint UNet2DConditionModel@")
    assert "nearest shipped preset 'sdxl-base-1.0'" in lines[4] and "text-attention layers 70 -> 44" in lines[4]
    assert lines[6].split() == ["index", "K/V", "params", "map", "layer"]
    rows = lines[7:]
    assert len(rows) == 44
    assert rows[0].split() == ["0", "1,966,080", "*", "down_blocks.1.attentions.0.transformer_blocks.0.attn2"]  # 2*1280*768


def test_inspect_cli_reads_a_model_folder_and_writes_json(tmp_path, capsys):
    folder = tmp_path / "my-sdxl-finetune"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
    (folder / "unet" / "config.json").write_text(json.dumps(dict(hub_config("sdxl-base-1.0"), sample_size=96)))
    assert main(["inspect", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["source"], report["layer_map"], report["family"]) == ("preset", "sdxl-base-1.0", "unet_cross")
    assert [layer["index"] for layer in report["layers"] if layer["mapped"]] == [55, 56, 57]
    assert report["fingerprint"]["structure_sha256"] == ModelFingerprint.of(hub_model("sdxl-base-1.0")).structure_sha256

    assert main(["inspect", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayerMapError, match="holds no denoiser config"):
        inspect_model(tmp_path / "empty")


def test_inspect_a_live_pipeline_with_an_explicit_map():
    pipe = build_sd15()
    report = inspect_model(pipe)
    assert report.model == "StableDiffusionPipeline" and report.resolved.source == "fallback"
    assert report.comparison.preset.name == "glyph"  # fewer differing options than SDXL base
    explicit = inspect_model(pipe, report.resolved.layer_map.model_copy(update={"name": "mine", "layers": ("mid_block.attentions.0.transformer_blocks.0.attn2",)}))
    assert explicit.resolved.source == "explicit" and [layer.index for layer in explicit.layers if layer.mapped] == [1]
    assert explicit.reason == "explicit layer map 'mine' made for this architecture"


# -- few-step schedules ----------------------------------------------------------------------------
def test_start_step_is_clamped_into_short_schedules():
    assert [start_step_for(0.08, n) for n in (1, 2, 3, 4, 50)] == [0, 1, 1, 1, 4]
    assert [start_step_for(0.9, n) for n in (1, 2, 3, 4)] == [0, 1, 2, 3]
    assert [start_step_for(0.9, n, clamp=False) for n in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert start_step_for(1.0, 4) == 4 and start_step_for(0.0, 1) == 0 and start_step_for(0.5, 0) == 0


FEW_STEP_CASES = [
    (family, steps)
    for family in [*TINY_BUILDERS, "glyph"]
    for steps in (1, 2, 3, 4)
    # diffusers' PixArt pipeline runs 1 step only with a DMD scheduler (it indexes the step output's [1])
    if not (family == "pixart" and steps == 1)
]


@functools.lru_cache(maxsize=None)
def _tiny(family):
    return build_tiny_glyph() if family == "glyph" else TINY_BUILDERS[family]()


@pytest.mark.parametrize(("family", "steps"), FEW_STEP_CASES)
def test_a_late_start_still_patches_the_last_step_of_a_few_step_schedule(family, steps):
    pipe = _tiny(family)
    kwargs = {**TINY_CALL_KWARGS.get(family, {"output_type": "pt"}), "num_inference_steps": steps}
    raw = pipe(prompt=FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs).images
    out, report = KVPatch(pipe, None, 0.9).generate(
        prompt=FLAGGED, target_prompt='A sign that says "world"', generator=torch.Generator().manual_seed(0), **kwargs
    )
    assert (report.total_steps, report.start_step, report.patched_steps) == (steps, steps - 1, 1)
    assert report.start_step_clamped and report.scheduled_start_step == steps
    assert report.as_details()["start_step_clamped"] is True
    assert not torch.equal(out.images, raw)


def test_img2img_strength_counts_only_the_steps_that_run():
    pipe = StableDiffusionImg2ImgPipeline(**_tiny("sd15").components)
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    kwargs = {k: v for k, v in TINY_CALL_KWARGS["sd15"].items() if k not in ("height", "width")}
    for strength, run_steps in ((0.5, 2), (0.3, 1)):  # 4 steps scheduled, the first 2 or 3 skipped
        call = dict(prompt=FLAGGED, image=image, strength=strength, **kwargs)
        raw = pipe(generator=torch.Generator().manual_seed(0), **call).images
        out, report = KVPatch(pipe, None, 0.9).generate(
            target_prompt='A sign that says "world"', generator=torch.Generator().manual_seed(0), **call
        )
        assert (report.total_steps, report.start_step, report.patched_steps) == (run_steps, run_steps - 1, 1)
        assert not torch.equal(out.images, raw)


def test_generator_notes_the_clamp_on_a_one_step_glyph_run():
    from tests.test_generator import WordSwapPolicy

    pipe = build_tiny_glyph()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy(), layer_map=_glyph_map(pipe))
    out = gen(FLAGGED, num_inference_steps=1, generator=torch.Generator().manual_seed(0), output_type="pt")
    details = out.verdict.details
    assert out.verdict.action is Action.NEUTRALIZE
    assert (details["start_step"], details["patched_steps"], details["start_step_clamped"]) == (0, 1, True)
    assert any("past this short schedule; patched from step 0" in note for note in out.verdict.notes)


def _glyph_map(pipe):
    from safetext.patching import LayerMap

    return LayerMap.for_model(pipe, [4], 0.2, name="tiny-glyph")  # the glyph preset's start fraction


# -- on_unknown_model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd15():
    return build_sd15()


def _call(gen, prompt):
    return gen(prompt, generator=torch.Generator().manual_seed(0), **TINY_CALL_KWARGS["sd15"])


def test_on_unknown_model_all_layers_patches_every_layer_and_is_counted(sd15):
    from tests.test_generator import WordSwapPolicy

    metrics = SafetextMetrics(CollectorRegistry())
    gen = SafeTextGenerator(sd15, policy=WordSwapPolicy(), metrics=metrics)
    assert gen.on_unknown_model == "all_layers" and gen.resolved.source == "fallback"
    out = _call(gen, FLAGGED)
    assert out.verdict.details["layer_map_source"] == "fallback" and len(out.verdict.details["layers"]) == 4
    _call(gen, 'A sign that says "hello"')  # clean: not served by the map
    sample = metrics.registry.get_sample_value
    assert sample("safetext_fallback_map_requests_total", {"decision": "neutralize"}) == 1.0
    assert sample("safetext_fallback_map_requests_total", {"decision": "block"}) == 0.0


def test_on_unknown_model_raise_and_strict_alias(sd15):
    from tests.test_generator import WordSwapPolicy

    for kwargs in ({"on_unknown_model": "raise"}, {"strict": True}, {"strict": True, "on_unknown_model": "raise"}):
        with pytest.raises(LayerMapError, match="no layer map for UNet2DConditionModel@.* and strict=True"):
            SafeTextGenerator(sd15, policy=WordSwapPolicy(), **kwargs)
    with pytest.raises(LayerMapError, match="strict=True means on_unknown_model='raise'"):
        SafeTextGenerator(sd15, policy=WordSwapPolicy(), strict=True, on_unknown_model="block")
    with pytest.raises(LayerMapError, match="on_unknown_model must be one of 'all_layers', 'raise', 'block'"):
        SafeTextGenerator(sd15, policy=WordSwapPolicy(), on_unknown_model="ignore")
    # a model with a map is not affected
    explicit = SafeTextGenerator(sd15, policy=WordSwapPolicy(), layer_map=_sd15_map(sd15), on_unknown_model="raise")
    assert explicit.resolved.source == "explicit"


def _sd15_map(pipe):
    from safetext.patching import LayerMap

    return LayerMap.for_model(pipe, [1], 0.0, name="tiny-sd15")


def test_on_unknown_model_block_blocks_flagged_prompts_and_serves_clean_ones(sd15):
    from tests.test_generator import WordSwapPolicy

    metrics = SafetextMetrics(CollectorRegistry())
    gen = SafeTextGenerator(sd15, policy=WordSwapPolicy(), on_unknown_model="block", metrics=metrics)
    with pytest.raises(PolicyViolation, match="on_unknown_model='block'") as info:
        _call(gen, FLAGGED)
    verdict = info.value.verdict
    assert verdict.action is Action.BLOCK and verdict.details["layer_map_source"] == "fallback"
    assert any("blocked instead of patched" in note for note in verdict.notes)
    clean = _call(gen, 'A sign that says "hello"')
    raw = sd15('A sign that says "hello"', generator=torch.Generator().manual_seed(0), **TINY_CALL_KWARGS["sd15"])
    assert clean.verdict.action is Action.ALLOW and torch.equal(clean.images, raw.images)
    sample = metrics.registry.get_sample_value
    assert sample("safetext_fallback_map_requests_total", {"decision": "block"}) == 1.0
    assert sample("safetext_requests_total", {"decision": "block"}) == 1.0
    # with a map, "block" changes nothing: the flagged prompt is patched
    mapped = SafeTextGenerator(sd15, policy=WordSwapPolicy(), layer_map=_sd15_map(sd15), on_unknown_model="block")
    assert _call(mapped, FLAGGED).verdict.action is Action.NEUTRALIZE
