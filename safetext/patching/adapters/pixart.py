"""PixArt-alpha / PixArt-sigma: ``attn2.to_k`` / ``attn2.to_v`` plus the text padding mask.

PixArt's DiT blocks cross-attend to T5 tokens after the model's ``caption_projection``. The pipeline
pads every prompt to ``max_sequence_length`` and passes a keep-mask, which the transformer turns into
an additive bias given to every ``attn2`` as ``attention_mask``. A sanitized prompt usually has a
different number of real tokens, so injecting its K/V alone would let the patched rows attend to the
target's padding (or ignore its last words): the patch swaps the bias rows of the patched layers too.
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
from safetext.patching.adapters.unet_cross import normalized_cross_input
from safetext.patching.registry import register_adapter


class PixArtCrossAttentionAdapter(ArchitectureAdapter):
    """PixArt transformers: inject target K/V into ``attn2`` and swap the padding bias rows."""

    family: ClassVar[str] = "pixart"
    description: ClassVar[str] = "DiT cross-attention with a text padding mask (PixArt-alpha, PixArt-sigma)"
    denoiser_classes: ClassVar[tuple[str, ...]] = ("PixArtTransformer2DModel",)
    strategy = "inject"
    sample_input: ClassVar[str] = "hidden_states"

    def matches(self, denoiser: nn.Module) -> bool:
        if getattr(denoiser, "caption_projection", None) is None or not hasattr(denoiser, "transformer_blocks"):
            return False
        return super().matches(denoiser)

    def discover(self, denoiser: nn.Module) -> list[TextAttentionLayer]:
        layers: list[TextAttentionLayer] = []
        for index, block in enumerate(denoiser.transformer_blocks):
            for name, attention in attention_modules(block, f"transformer_blocks.{index}"):
                if (
                    getattr(attention, "is_cross_attention", False)
                    and getattr(attention, "added_kv_proj_dim", None) is None
                ):
                    layers.append(TextAttentionLayer(len(layers), name, f"{name}.to_k", f"{name}.to_v", "transformer"))
        return layers

    def text_states(self, denoiser: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
        states = inputs["encoder_hidden_states"]
        if denoiser.caption_projection is not None:
            states = denoiser.caption_projection(states)
            states = states.view(states.shape[0], -1, states.shape[-1])
        return states

    def layer_input(self, attention: nn.Module, states: torch.Tensor) -> torch.Tensor:
        return normalized_cross_input(attention, states)

    def attention_bias(self, inputs: Mapping[str, Any], dtype: torch.dtype) -> torch.Tensor | None:
        mask = inputs.get("encoder_attention_mask")
        if mask is None:
            return None
        return bias_from_padding_mask(mask, dtype) if mask.ndim == 2 else mask


register_adapter(PixArtCrossAttentionAdapter)
