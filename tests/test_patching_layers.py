"""Text-attention layer discovery: real-size configs on the meta device, every tiny pipeline, registry errors."""

from __future__ import annotations

import pytest
import torch
from diffusers import SD3Transformer2DModel, UNet2DConditionModel
from torch import nn

from safetext.errors import LayerMapError, PatchError, UnsupportedArchitectureError
from safetext.patching import (
    ArchitectureAdapter,
    KVPatch,
    discover_text_layers,
    get_adapter,
    register_adapter,
    select_layers,
)
from tests.tiny_pipelines import TINY_BUILDERS

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json
SDXL_BASE_UNET_CONFIG = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}

# DeepFloyd/IF-I-XL-v1.0, unet/config.json (stage I, 64x64 pixels), the options that shape it (the
# published file: tests/data/hub_configs/if-i-xl-v1.0). The block structure (4 levels, 3 layers per
# block, added-K/V attention at the lower three) fixes the 22 text-attention layers.
IF_I_XL_UNET_CONFIG = {
    "act_fn": "gelu",
    "addition_embed_type": "text",
    "addition_embed_type_num_heads": 64,
    "attention_head_dim": 64,
    "block_out_channels": [704, 1408, 2112, 2816],
    "class_embed_type": None,
    "cross_attention_dim": 2816,
    "cross_attention_norm": "group_norm",
    "down_block_types": [
        "ResnetDownsampleBlock2D",
        "SimpleCrossAttnDownBlock2D",
        "SimpleCrossAttnDownBlock2D",
        "SimpleCrossAttnDownBlock2D",
    ],
    "encoder_hid_dim": 4096,
    "encoder_hid_dim_type": "text_proj",
    "in_channels": 3,
    "layers_per_block": 3,
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "norm_num_groups": 32,
    "only_cross_attention": False,
    "out_channels": 6,
    "resnet_time_scale_shift": "scale_shift",
    "sample_size": 64,
    "up_block_types": [
        "SimpleCrossAttnUpBlock2D",
        "SimpleCrossAttnUpBlock2D",
        "SimpleCrossAttnUpBlock2D",
        "ResnetUpsampleBlock2D",
    ],
    "upcast_attention": False,
    "use_linear_projection": False,
}

# stabilityai/stable-diffusion-3-medium-diffusers, transformer/config.json
SD3_MEDIUM_TRANSFORMER_CONFIG = {
    "attention_head_dim": 64,
    "caption_projection_dim": 1536,
    "in_channels": 16,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 24,
    "out_channels": 16,
    "patch_size": 2,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
    "sample_size": 128,
}


def meta_model(cls, config):
    with torch.device("meta"):
        return cls(**config)


@pytest.fixture(scope="module")
def sdxl_unet():
    return meta_model(UNet2DConditionModel, SDXL_BASE_UNET_CONFIG)


def test_sdxl_base_has_70_layers_and_paper_layers_55_to_57(sdxl_unet):
    layers = discover_text_layers(sdxl_unet)
    assert len(layers) == 70
    assert [layer.index for layer in layers] == list(range(70))
    assert [layers[i].name for i in (55, 56, 57)] == [
        f"up_blocks.0.attentions.2.transformer_blocks.{j}.attn2" for j in (1, 2, 3)
    ]
    assert layers[55].key == "up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_k"
    assert layers[55].value == "up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_v"
    # forward order: 4 + 20 down, 10 mid, then up
    assert [layer.block for layer in layers].count("down") == 24
    assert layers[24].name == "mid_block.attentions.0.transformer_blocks.0.attn2"
    assert layers[34].name == "up_blocks.0.attentions.0.transformer_blocks.0.attn2"
    # the paper's parameter count for the three layers (to_k + to_v): 15.7M, 0.61% of the UNet
    patched = sum(
        sdxl_unet.get_submodule(name).weight.numel() for i in (55, 56, 57) for name in (layers[i].key, layers[i].value)
    )
    total = sum(p.numel() for p in sdxl_unet.parameters())
    assert round(patched / 1e6, 1) == 15.7
    assert round(100 * patched / total, 2) == 0.61


def test_if_i_xl_has_22_layers_and_paper_layer_17():
    unet = meta_model(UNet2DConditionModel, IF_I_XL_UNET_CONFIG)
    layers = discover_text_layers(unet)
    assert get_adapter(unet).family == "added_kv"
    assert len(layers) == 22
    assert layers[17].name == "up_blocks.1.attentions.3"
    assert (layers[17].key, layers[17].value) == (
        "up_blocks.1.attentions.3.add_k_proj",
        "up_blocks.1.attentions.3.add_v_proj",
    )
    assert [layer.name for layer in layers[9:11]] == ["mid_block.attentions.0", "up_blocks.0.attentions.0"]
    # the paper's 8.9M (0.21%) for layer 17 is its to_k + to_v
    attention = unet.get_submodule(layers[17].name)
    patched = sum(p.numel() for module in (attention.to_k, attention.to_v) for p in module.parameters())
    total = sum(p.numel() for p in unet.parameters())
    assert round(patched / 1e6, 1) == 8.9
    assert round(100 * patched / total, 2) == 0.21


def test_sd3_medium_has_24_joint_layers():
    transformer = meta_model(SD3Transformer2DModel, SD3_MEDIUM_TRANSFORMER_CONFIG)
    layers = discover_text_layers(transformer)
    assert get_adapter(transformer).family == "sd3_joint"
    assert len(layers) == 24
    assert layers[10].name == "transformer_blocks.10.attn"
    assert layers[10].key == "transformer_blocks.10.attn.add_k_proj"
    attention = transformer.get_submodule(layers[10].name)
    patched = sum(p.numel() for module in (attention.add_k_proj, attention.add_v_proj) for p in module.parameters())
    assert round(patched / 1e6, 1) == 4.7


EXPECTED_TINY_LAYERS = {
    "sd15": (
        "unet_cross",
        [
            "down_blocks.0.attentions.0.transformer_blocks.0.attn2",
            "mid_block.attentions.0.transformer_blocks.0.attn2",
            "up_blocks.1.attentions.0.transformer_blocks.0.attn2",
            "up_blocks.1.attentions.1.transformer_blocks.0.attn2",
        ],
    ),
    "sdxl": (
        "unet_cross",
        [f"down_blocks.1.attentions.0.transformer_blocks.{i}.attn2" for i in (0, 1)]
        + [f"mid_block.attentions.0.transformer_blocks.{i}.attn2" for i in (0, 1)]
        + [f"up_blocks.0.attentions.{a}.transformer_blocks.{i}.attn2" for a in (0, 1) for i in (0, 1)],
    ),
    "sd3": ("sd3_joint", ["transformer_blocks.0.attn", "transformer_blocks.1.attn"]),
    "if": (
        "added_kv",
        [
            "down_blocks.1.attentions.0",
            "mid_block.attentions.0",
            "up_blocks.0.attentions.0",
            "up_blocks.0.attentions.1",
        ],
    ),
    "pixart": ("pixart", ["transformer_blocks.0.attn2", "transformer_blocks.1.attn2"]),
    "flux": ("flux", ["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"]),
}


@pytest.mark.parametrize("tiny_pipe", list(EXPECTED_TINY_LAYERS), indirect=True)
def test_tiny_pipelines_discovery(tiny_pipe, tiny_pipe_name):
    family, names = EXPECTED_TINY_LAYERS[tiny_pipe_name]
    layers = discover_text_layers(tiny_pipe)
    assert get_adapter(tiny_pipe.unet if hasattr(tiny_pipe, "unet") else tiny_pipe.transformer).family == family
    assert [layer.name for layer in layers] == names
    for layer in layers:
        denoiser = tiny_pipe.unet if hasattr(tiny_pipe, "unet") else tiny_pipe.transformer
        assert isinstance(denoiser.get_submodule(layer.key), nn.Linear)
        assert isinstance(denoiser.get_submodule(layer.value), nn.Linear)
    if tiny_pipe_name == "flux":
        assert [layer.text_prefix_only for layer in layers] == [False, True]
        assert layers[1].key == "single_transformer_blocks.0.attn.to_k"


def test_unknown_denoiser_lists_supported_architectures():
    class PlainDenoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 4)

    with pytest.raises(UnsupportedArchitectureError) as info:
        discover_text_layers(PlainDenoiser())
    message = str(info.value)
    assert "PlainDenoiser" in message
    for family in ("unet_cross", "added_kv", "pixart", "sd3_joint", "flux"):
        assert f"  - {family}: " in message
    assert "UNet2DConditionModel" in message and "FluxTransformer2DModel" in message
    assert "register_adapter" in message


def test_pipeline_without_denoiser_is_refused():
    with pytest.raises(UnsupportedArchitectureError, match="has no denoiser component"):
        discover_text_layers(object())


def test_select_layers_by_name_and_index_and_unknown_names(sdxl_unet):
    layers = discover_text_layers(sdxl_unet)
    chosen = select_layers(layers, [57, "up_blocks.0.attentions.2.transformer_blocks.1.attn2", 56])
    assert [layer.index for layer in chosen] == [55, 56, 57]
    with pytest.raises(LayerMapError) as info:
        select_layers(layers, ["up_blocks.9.attn2", 70])
    message = str(info.value)
    assert "'up_blocks.9.attn2'" in message and "70" in message
    assert " 55  up_blocks.0.attentions.2.transformer_blocks.1.attn2" in message
    with pytest.raises(LayerMapError, match="no layers selected"):
        select_layers(layers, [])


@pytest.mark.parametrize("name", ["sd15", "flux"])
def test_fused_qkv_projections_are_refused(name):
    pipe = TINY_BUILDERS[name]()  # private: unfusing a UNet leaves the fused Linears behind
    denoiser = pipe.unet if hasattr(pipe, "unet") else pipe.transformer
    denoiser.fuse_qkv_projections()
    with pytest.raises(PatchError) as info:
        KVPatch(pipe)
    assert "are fused (fuse_qkv_projections)" in str(info.value)
    assert "Call pipe.unfuse_qkv_projections()" in str(info.value)
    denoiser.unfuse_qkv_projections()
    KVPatch(pipe)  # accepted again once unfused


def test_register_adapter_validates_its_input():
    class Broken(ArchitectureAdapter):
        family = "Bad Name"
        description = "x"
        denoiser_classes = ()
        strategy = "inject"

        def discover(self, denoiser):
            return []

    with pytest.raises(TypeError, match="lower_snake_case"):
        register_adapter(Broken)
    with pytest.raises(TypeError, match="ArchitectureAdapter subclass"):
        register_adapter(object)

    class NoStrategy(ArchitectureAdapter):
        family = "no_strategy"
        description = "x"
        denoiser_classes = ()
        strategy = "swap"

        def discover(self, denoiser):
            return []

    with pytest.raises(TypeError, match="strategy must be 'inject' or 'extra_rows'"):
        register_adapter(NoStrategy)


@pytest.mark.parametrize("tiny_pipe", ["sd15", "pixart"], indirect=True)
def test_subclasses_and_unregistered_lookalikes_are_found(tiny_pipe, tiny_pipe_name):
    if tiny_pipe_name == "sd15":
        # a subclass of a registered class: found along the MRO
        class MyUNet(UNet2DConditionModel):
            pass

        unet = MyUNet(**tiny_pipe.unet.config)
        assert get_adapter(unet).family == "unet_cross"
        assert len(discover_text_layers(unet)) == 4
        return

    # an unregistered class with PixArt's structure: found by the duck-typed check
    class HouseDiT(nn.Module):
        def __init__(self, source):
            super().__init__()
            self.caption_projection = source.caption_projection
            self.transformer_blocks = source.transformer_blocks

    lookalike = HouseDiT(tiny_pipe.transformer)
    assert get_adapter(lookalike).family == "pixart"
    assert [layer.name for layer in discover_text_layers(lookalike)] == [
        "transformer_blocks.0.attn2",
        "transformer_blocks.1.attn2",
    ]
