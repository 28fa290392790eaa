"""Added-K/V UNets (DeepFloyd IF): the prompt enters through ``add_k_proj`` / ``add_v_proj``.

IF's ``SimpleCrossAttn*`` blocks use one attention module per layer whose keys/values are the
concatenation of the text keys/values (``add_k_proj``/``add_v_proj`` of the projected, group-normed T5
states) and the image's own (``to_k``/``to_v``). Only the text part reads the prompt, so, as for plain
cross-attention, the target prompt's text K/V are computed once and injected.

Forward order is down, mid, up. IF-I-XL (4 levels, 3 layers per block, attention at three of them) has
22 text-attention layers; the paper's layer 17 is ``up_blocks.1.attentions.3``.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from safetext.patching.adapters.base import TextAttentionLayer
from safetext.patching.adapters.unet_cross import UNetCrossAttentionAdapter, unet_text_layers
from safetext.patching.registry import register_adapter


class AddedKVAttentionAdapter(UNetCrossAttentionAdapter):
    """DeepFloyd IF (and other added-K/V UNets): inject target K/V into ``add_k_proj`` / ``add_v_proj``.

    Same UNet plumbing as :class:`UNetCrossAttentionAdapter` (text states, cross-input norm, padding
    bias); only the projections that carry the text differ.
    """

    family: ClassVar[str] = "added_kv"
    description: ClassVar[str] = "UNet added-K/V attention (DeepFloyd IF)"

    def discover(self, denoiser: nn.Module) -> list[TextAttentionLayer]:
        return unet_text_layers(denoiser, added_kv=True)


register_adapter(AddedKVAttentionAdapter)
