"""Flux: double-stream ``add_k_proj``/``add_v_proj`` and the text rows of single-stream ``to_k``/``to_v``.

Flux runs its double-stream blocks (text and image streams with separate projections, like SD3) and
then single-stream blocks over the concatenated sequence ``[text, image]``, where one ``to_k``/``to_v``
projects both: only its first ``L_text`` token rows are text keys/values. As for SD3, the text stream
depends on the noisy image, so the target prompt runs as extra batch rows of the same call.

Layers: ``transformer_blocks.{i}.attn`` (double-stream), then ``single_transformer_blocks.{j}.attn``.
The target rows leave after the block of the last mapped layer (see the early exit in
:mod:`safetext.patching.adapters.joint`); blocks are ordered double-stream, then single-stream.
The FLUX.1 transformer is guidance-distilled (no CFG batch); with ``true_cfg_scale > 1`` the pipeline
runs the negative prompt as a second call of the same step, which the patch leaves alone.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.adapters.joint import joint_block_layers
from safetext.patching.registry import register_adapter


class FluxAttentionAdapter(ArchitectureAdapter):
    """Flux.1: patch double-stream text K/V and single-stream text rows in extra batch rows."""

    family: ClassVar[str] = "flux"
    description: ClassVar[str] = "MMDiT double- and single-stream attention (Flux.1)"
    denoiser_classes: ClassVar[tuple[str, ...]] = ("FluxTransformer2DModel",)
    strategy = "extra_rows"
    sample_input: ClassVar[str] = "hidden_states"
    batched_inputs: ClassVar[tuple[str, ...]] = (
        "hidden_states",
        "timestep",
        "guidance",
        "encoder_hidden_states",
        "pooled_projections",
    )
    prompt_inputs: ClassVar[tuple[str, ...]] = ("encoder_hidden_states", "pooled_projections")
    patched_call_ordinals: ClassVar[tuple[int, ...] | None] = (0,)

    def matches(self, denoiser: nn.Module) -> bool:
        if not hasattr(denoiser, "single_transformer_blocks"):
            return False
        return super().matches(denoiser)

    def discover(self, denoiser: nn.Module) -> list[TextAttentionLayer]:
        layers = joint_block_layers(denoiser.transformer_blocks, "transformer_blocks")
        for index, block in enumerate(denoiser.single_transformer_blocks):
            attention = getattr(block, "attn", None)
            if attention is None or not hasattr(attention, "to_k"):
                continue
            name = f"single_transformer_blocks.{index}.attn"
            layers.append(
                TextAttentionLayer(len(layers), name, f"{name}.to_k", f"{name}.to_v", "single", text_prefix_only=True)
            )
        return layers

    def forward_blocks(self, denoiser: nn.Module) -> list[tuple[str, nn.Module]]:
        """Double-stream then single-stream blocks, in forward order (for the early exit)."""
        double = [(f"transformer_blocks.{i}", block) for i, block in enumerate(denoiser.transformer_blocks)]
        return double + [(f"single_transformer_blocks.{i}", b) for i, b in enumerate(denoiser.single_transformer_blocks)]


register_adapter(FluxAttentionAdapter)
