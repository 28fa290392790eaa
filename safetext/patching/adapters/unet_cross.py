"""UNet cross-attention (SD 1.x, SD 2.x, SDXL, safetext's glyph model): ``attn2.to_k`` / ``attn2.to_v``.

The text keys/values of a ``UNet2DConditionModel`` with ``CrossAttn*`` blocks come from the ``to_k`` and
``to_v`` Linears of every cross-attention module (``...transformer_blocks.N.attn2``). They read the
prompt embeddings after the UNet's optional ``encoder_hid_proj`` and the layer's optional ``norm_cross``,
and nothing else, so the target prompt's K/V are computed once and injected (no extra UNet forward).

Layers are numbered in forward order: down blocks, the mid block, then up blocks; inside a block,
attention module by attention module and transformer block by transformer block. On SDXL base that
gives 70 layers, and 55, 56, 57 are ``up_blocks.0.attentions.2.transformer_blocks.{1,2,3}.attn2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from safetext.patching.adapters.base import (
    ArchitectureAdapter,
    TextAttentionLayer,
    attention_modules,
    bias_from_padding_mask,
)
from safetext.patching.registry import register_adapter


def unet_blocks_in_forward_order(unet: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """``(block kind, module name, block)`` for the down blocks, the mid block and the up blocks.

    ``UNet2DConditionModel`` registers ``up_blocks`` before ``mid_block``, so ``named_modules()`` order is
    not forward order; this is.
    """
    blocks: list[tuple[str, str, nn.Module]] = []
    for index, block in enumerate(unet.down_blocks):
        blocks.append(("down", f"down_blocks.{index}", block))
    if getattr(unet, "mid_block", None) is not None:
        blocks.append(("mid", "mid_block", unet.mid_block))
    for index, block in enumerate(unet.up_blocks):
        blocks.append(("up", f"up_blocks.{index}", block))
    return blocks


def unet_text_layers(unet: nn.Module, *, added_kv: bool) -> list[TextAttentionLayer]:
    """Text-attention layers of a UNet, forward order.

    Args:
        unet: a ``UNet2DConditionModel``-like module (``down_blocks``, ``mid_block``, ``up_blocks``).
        added_kv: select added-K/V attention (IF: ``add_k_proj``/``add_v_proj``) instead of plain
            cross-attention (``to_k``/``to_v`` reading the prompt).
    """
    layers: list[TextAttentionLayer] = []
    for kind, prefix, block in unet_blocks_in_forward_order(unet):
        for name, attention in attention_modules(block, prefix):
            has_added_kv = getattr(attention, "added_kv_proj_dim", None) is not None
            if added_kv and has_added_kv and hasattr(attention, "add_k_proj"):
                layers.append(TextAttentionLayer(len(layers), name, f"{name}.add_k_proj", f"{name}.add_v_proj", kind))
            elif not added_kv and not has_added_kv and getattr(attention, "is_cross_attention", False):
                layers.append(TextAttentionLayer(len(layers), name, f"{name}.to_k", f"{name}.to_v", kind))
    return layers


def unet_text_states(unet: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The prompt states a UNet hands its attention blocks: ``encoder_hidden_states`` after ``encoder_hid_proj``."""
    states = inputs["encoder_hidden_states"]
    process = getattr(unet, "process_encoder_hidden_states", None)
    if process is not None:
        states = process(encoder_hidden_states=states, added_cond_kwargs=inputs.get("added_cond_kwargs") or {})
    if isinstance(states, tuple):  # IP-Adapter: (text states, image states); K/V projections read the text
        states = states[0]
    return states


def normalized_cross_input(attention: nn.Module, states: torch.Tensor) -> torch.Tensor:
    """Apply the layer's ``norm_cross`` (LayerNorm or GroupNorm over features) the way its processor does."""
    if getattr(attention, "norm_cross", None) is not None:
        return attention.norm_encoder_hidden_states(states)
    return states


class UNetCrossAttentionAdapter(ArchitectureAdapter):
    """SD1.x / SD2.x / SDXL / glyph UNets: inject target K/V into ``attn2.to_k`` / ``attn2.to_v``."""

    family: ClassVar[str] = "unet_cross"
    description: ClassVar[str] = "UNet cross-attention (Stable Diffusion 1.x/2.x, SDXL, safetext glyph)"
    denoiser_classes: ClassVar[tuple[str, ...]] = ("UNet2DConditionModel",)
    strategy = "inject"
    sample_input: ClassVar[str] = "sample"

    def matches(self, denoiser: nn.Module) -> bool:
        if not all(hasattr(denoiser, name) for name in ("down_blocks", "up_blocks")):
            return False
        return super().matches(denoiser)

    def discover(self, denoiser: nn.Module) -> list[TextAttentionLayer]:
        return unet_text_layers(denoiser, added_kv=False)

    def text_states(self, denoiser: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
        return unet_text_states(denoiser, inputs)

    def layer_input(self, attention: nn.Module, states: torch.Tensor) -> torch.Tensor:
        return normalized_cross_input(attention, states)

    def attention_bias(self, inputs: Mapping[str, Any], dtype: torch.dtype) -> torch.Tensor | None:
        mask = inputs.get("encoder_attention_mask")
        return None if mask is None else bias_from_padding_mask(mask, dtype)


register_adapter(UNetCrossAttentionAdapter)
