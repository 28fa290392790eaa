"""LayerMap: YAML/JSON round-trip, located errors, fingerprints, presets and resolution order."""

from __future__ import annotations

import pytest
import torch
import yaml
from diffusers import SD3Transformer2DModel, UNet2DConditionModel
from pydantic import ValidationError

from safetext.errors import LayerMapError, UnsupportedArchitectureError
from safetext.patching import LayerMap, ModelFingerprint, find_preset, resolve_layer_map, shipped_presets
from safetext.patching.layer_map import legacy_config_sha256, normalized_parameter_name
from tests.test_patching_layers import SD3_MEDIUM_TRANSFORMER_CONFIG, SDXL_BASE_UNET_CONFIG, meta_model
from tests.test_real_checkpoints import hub_config, hub_model
from tests.tiny_pipelines import build_sd15


@pytest.fixture(scope="module")
def sd15():
    return build_sd15()


def test_round_trip_yaml_and_json(sd15, tmp_path):
    layer_map = LayerMap.for_model(
        sd15,
        [3, "mid_block.attentions.0.transformer_blocks.0.attn2"],
        0.25,
        name="tiny",
        notes="n",
        metrics={"f1": 0.5},
    )
    assert layer_map.layers == (
        "mid_block.attentions.0.transformer_blocks.0.attn2",
        "up_blocks.1.attentions.1.transformer_blocks.0.attn2",
    )
    assert layer_map.family == "unet_cross"
    for suffix in ("yaml", "json"):
        path = layer_map.save(tmp_path / f"map.{suffix}")
        assert LayerMap.load(path) == layer_map
    assert LayerMap.from_yaml(layer_map.to_yaml()) == layer_map
    assert LayerMap.from_json(layer_map.to_json()) == layer_map
    with pytest.raises(ValidationError, match="frozen"):
        layer_map.start_fraction = 0.5


def test_yaml_errors_name_file_line_and_column(tmp_path):
    good = LayerMap.for_model(build_sd15(), [0], 0.1, name="x").to_yaml()
    bad_value = tmp_path / "bad_value.yaml"
    bad_value.write_text(good.replace("start_fraction: 0.1", "start_fraction: 1.5"))
    line = next(i for i, text in enumerate(bad_value.read_text().splitlines(), 1) if text.startswith("start_fraction"))
    with pytest.raises(LayerMapError) as info:
        LayerMap.load(bad_value)
    assert str(info.value).startswith(f"{bad_value}:{line}:1: start_fraction: Input should be less than or equal to 1")

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(good + "layerz: [a]\n")
    with pytest.raises(
        LayerMapError, match=rf"unknown.yaml:{len(good.splitlines()) + 1}:1: layerz: Extra inputs are not permitted"
    ):
        LayerMap.load(unknown)

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nlayers: [a, b\nfamily: y\n")
    with pytest.raises(LayerMapError, match=r"broken.yaml:3:\d+: invalid YAML"):
        LayerMap.load(broken)

    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"name": "x",\n  "layers": [}')
    with pytest.raises(LayerMapError, match=r"broken.json:2:\d+: invalid JSON"):
        LayerMap.load(broken_json)

    with pytest.raises(LayerMapError, match="does not exist"):
        LayerMap.load(tmp_path / "missing.yaml")
    with pytest.raises(LayerMapError, match=r":1:1: a layer map must be a mapping"):
        LayerMap.from_yaml("- just\n- a list\n")


def test_fingerprint_ignores_weights_and_names_but_not_config():
    a, b = build_sd15(), build_sd15()
    with torch.no_grad():
        for p in b.unet.parameters():
            p.add_(1.0)  # a "fine-tune": same config, other weights
    b.unet.register_to_config(_name_or_path="someone/fine-tune")
    assert ModelFingerprint.of(a) == ModelFingerprint.of(b)
    other = UNet2DConditionModel(**{**a.unet.config, "cross_attention_dim": 16})
    assert ModelFingerprint.of(other) != ModelFingerprint.of(a)
    assert ModelFingerprint.of(a).denoiser_class == "UNet2DConditionModel"
    # options that change no parameter do not change the identity; the head count does
    same = UNet2DConditionModel(**{**a.unet.config, "sample_size": 64, "upcast_attention": None})
    assert ModelFingerprint.of(same) == ModelFingerprint.of(a)
    heads = UNet2DConditionModel(**{**a.unet.config, "attention_head_dim": 4})
    assert a.unet.config.attention_head_dim != 4
    assert [p.shape for p in heads.parameters()] == [p.shape for p in a.unet.parameters()]
    assert ModelFingerprint.of(heads) != ModelFingerprint.of(a)


def test_adapter_parameters_do_not_change_the_fingerprint():
    from peft import LoraConfig

    pipe = build_sd15()
    before = ModelFingerprint.of(pipe)
    pipe.unet.add_adapter(LoraConfig(r=2, target_modules=["to_k", "to_v", "to_q", "to_out.0"]))
    names = [name for name, _ in pipe.unet.named_parameters()]
    assert any(".base_layer." in name for name in names) and any(".lora_A." in name for name in names)
    assert ModelFingerprint.of(pipe) == before
    assert normalized_parameter_name("a.attn2.to_k.base_layer.weight") == "a.attn2.to_k.weight"
    assert normalized_parameter_name("a.attn2.to_k.lora_B.default.weight") is None
    assert normalized_parameter_name("a.attn2.processor.to_k_ip.0.weight") is None


def test_fused_projections_keep_the_identity_and_are_refused_with_their_own_error():
    from safetext.errors import PatchError
    from safetext.patching import KVPatch

    pipe = build_sd15()
    before = ModelFingerprint.of(pipe)
    pipe.fuse_qkv_projections()
    assert ModelFingerprint.of(pipe) == before
    with pytest.raises(PatchError, match="are fused"):
        KVPatch(pipe, None, 0.0)


def test_legacy_map_files_still_load_match_and_migrate(sd15, tmp_path):
    current = LayerMap.for_model(sd15, [1], 0.25, name="old")
    legacy = {
        **current.to_dict(),
        "fingerprint": {"denoiser_class": "UNet2DConditionModel", "config_sha256": legacy_config_sha256(sd15)},
    }
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(legacy))
    loaded = LayerMap.load(path)
    assert loaded.fingerprint.is_legacy and loaded.fingerprint.structure_sha256 is None
    assert loaded.matches(sd15)
    other = UNet2DConditionModel(**{**sd15.unet.config, "cross_attention_dim": 16})
    assert not loaded.matches(other)
    assert resolve_layer_map(sd15, loaded).notes == ()
    migrated = loaded.migrate(sd15)
    assert migrated.fingerprint == ModelFingerprint.of(sd15) and migrated.layers == loaded.layers
    assert "config_sha256" not in migrated.to_yaml()
    with pytest.raises(LayerMapError, match="was made for UNet2DConditionModel@config:"):
        loaded.migrate(other)
    with pytest.raises(LayerMapError, match="fingerprint: Value error, a fingerprint needs structure_sha256"):
        LayerMap.from_yaml(yaml.safe_dump({**legacy, "fingerprint": {"denoiser_class": "X"}}))


@pytest.mark.parametrize(
    ("hub_name", "name", "layers", "start"),
    [
        (
            "sdxl-base-1.0",
            "sdxl-base-1.0",
            [f"up_blocks.0.attentions.2.transformer_blocks.{i}.attn2" for i in (1, 2, 3)],
            0.08,
        ),
        ("sd3-medium", "sd3-medium", ["transformer_blocks.10.attn"], 2 / 28),
        ("if-i-xl-v1.0", "if-i-xl-v1.0", ["up_blocks.1.attentions.3"], 0.04),
    ],
)
def test_paper_presets_match_their_published_configs(hub_name, name, layers, start):
    model = hub_model(hub_name)
    resolved = resolve_layer_map(model)
    assert resolved.source == "preset"
    assert resolved.layer_map.name == name
    assert list(resolved.layer_map.layers) == layers
    assert [layer.name for layer in resolved.layers] == layers
    assert resolved.layer_map.start_fraction == pytest.approx(start)
    assert resolved.notes == ()
    assert find_preset(model) is resolved.layer_map


def test_hand_written_configs_of_the_same_models_match_too():
    # the options that shape the model, written without nulls or private keys
    assert find_preset(meta_model(UNet2DConditionModel, SDXL_BASE_UNET_CONFIG)).name == "sdxl-base-1.0"
    assert find_preset(meta_model(SD3Transformer2DModel, SD3_MEDIUM_TRANSFORMER_CONFIG)).name == "sd3-medium"


def test_presets_resolve_by_index_to_the_papers_numbers():
    indices = {"sdxl-base-1.0": (55, 56, 57), "sd3-medium": (10,), "if-i-xl-v1.0": (17,)}
    presets = {preset.name: preset for preset in shipped_presets()}
    assert set(presets) == set(indices) | {"glyph"}  # glyph: the embedded model's own map, not from the paper
    for name, expected in indices.items():
        assert tuple(layer.index for layer in presets[name].select(hub_model(name))) == expected
    assert hub_config("if-i-xl-v1.0")["cross_attention_dim"] == 2816


def test_resolution_order_explicit_preset_fallback(sd15, tmp_path):
    fallback = resolve_layer_map(sd15)
    assert fallback.source == "fallback"
    assert fallback.layer_map.layers == tuple(layer.name for layer in fallback.layers) and len(fallback.layers) == 4
    assert fallback.layer_map.start_fraction == 0.0
    assert len(fallback.notes) == 1 and "patched all 4 text-attention layers from step 0" in fallback.notes[0]
    with pytest.raises(LayerMapError, match="no layer map for UNet2DConditionModel@.* and strict=True"):
        resolve_layer_map(sd15, strict=True)

    explicit = LayerMap.for_model(sd15, [1], 0.5, name="mine")
    resolved = resolve_layer_map(sd15, explicit, strict=True)
    assert (resolved.source, resolved.layer_map, resolved.notes) == ("explicit", explicit, ())
    path = explicit.save(tmp_path / "mine.yaml")
    assert resolve_layer_map(sd15, str(path)).layer_map == explicit

    # an explicit map made for another model whose names exist here: used, with a note
    sdxl_preset = next(p for p in shipped_presets() if p.name == "sdxl-base-1.0")
    borrowed = sdxl_preset.model_copy(update={"layers": explicit.layers})
    resolved = resolve_layer_map(sd15, borrowed)
    assert resolved.source == "explicit" and "was made for UNet2DConditionModel@" in resolved.notes[0]

    with pytest.raises(LayerMapError) as info:
        resolve_layer_map(sd15, "sdxl-base-1.0")  # the preset's layers do not exist in the tiny UNet
    assert "layer map 'sdxl-base-1.0'" in str(info.value)
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2" in str(info.value)  # the valid names
    with pytest.raises(LayerMapError, match="neither a layer map file nor a shipped preset"):
        resolve_layer_map(sd15, "no-such-map")


def test_map_of_another_family_is_refused(sd15):
    sd3_preset = next(p for p in shipped_presets() if p.name == "sd3-medium")
    with pytest.raises(LayerMapError, match="is for the 'sd3_joint' family but UNet2DConditionModel is 'unet_cross'"):
        sd3_preset.select(sd15)


def test_unknown_architecture_cannot_be_mapped():
    with pytest.raises(UnsupportedArchitectureError):
        resolve_layer_map(torch.nn.Linear(2, 2))
