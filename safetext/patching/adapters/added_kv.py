"""Added-K/V UNets (DeepFloyd IF): the prompt enters through ``add_k_proj`` / ``add_v_proj``.

IF's ``SimpleCrossAttn*`` blocks use one attention module per layer whose keys/values are the
concatenation of the text keys/values (``add_k_proj``/``add_v_proj`` of the projected, group-normed T5
states) and the image's own (``to_k``/``to_v``). Only the text part reads the prompt, so, as for plain
cross-attention, the target prompt's text K/V are computed once and injected.

Forward order is down, mid, up. IF-I-XL (4 levels, 3 layers per block, attention at three of them) has
22 text-attention layers; the paper's layer 17 is ``up_blocks.1.attentions.3``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer, bias_from_padding_mask
from safetext.patching.adapters.unet_cross import normalized_cross_input, unet_text_layers, unet_text_states
from safetext.patching.registry import register_adapter


class AddedKVAttentionAdapter(ArchitectureAdapter):
    """DeepFloyd IF (and other added-K/V UNets): inject target K/V into ``add_k_proj`` / ``add_v_proj``."""

    family: ClassVar[str] = "added_kv"
    description: ClassVar[str] = "UNet added-K/V attention (DeepFloyd IF)"
    denoiser_classes: ClassVar[tuple[str, ...]] = ("UNet2DConditionModel",)
    strategy = "inject"
    sample_input: ClassVar[str] = "sample"

    def matches(self, denoiser: nn.Module) -> bool:
        if not all(hasattr(denoiser, name) for name in ("down_blocks", "up_blocks")):
            return False
        return super().matches(denoiser)

    def discover(self, denoiser: nn.Module) -> list[TextAttentionLayer]:
        return unet_text_layers(denoiser, added_kv=True)

    def text_states(self, denoiser: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
        return unet_text_states(denoiser, inputs)

    def layer_input(self, attention: nn.Module, states: torch.Tensor) -> torch.Tensor:
        return normalized_cross_input(attention, states)

    def attention_bias(self, inputs: Mapping[str, Any], dtype: torch.dtype) -> torch.Tensor | None:
        mask = inputs.get("encoder_attention_mask")
        return None if mask is None else bias_from_padding_mask(mask, dtype)


register_adapter(AddedKVAttentionAdapter)
