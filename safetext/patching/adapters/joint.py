"""SD3 / SD3.5 joint attention (MMDiT): the text stream's ``add_k_proj`` / ``add_v_proj``.

In an MMDiT block, text and image tokens attend jointly; the text keys/values come from the text
stream's ``add_k_proj``/``add_v_proj``. The text stream is updated by every block from the image, so
a layer's text K/V depend on the noisy image: they cannot be computed from the prompt alone. The patch
therefore runs the target prompt as extra batch rows of the same transformer call (same noisy latents,
same timestep, the target's prompt embeddings and pooled projection) and copies the extra rows' text
K/V into the patched rows at the mapped layers; the extra rows are dropped from the output.

Layers are the blocks' ``attn`` modules in block order (SD3 medium: 24, the paper's layer is
``transformer_blocks.10.attn``). SD3.5's second, image-only ``attn2`` never reads the prompt.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.registry import register_adapter


def joint_block_layers(blocks: nn.ModuleList, prefix: str) -> list[TextAttentionLayer]:
    """The text-stream K/V of each block's ``attn`` (blocks whose attention has ``add_k_proj``)."""
    layers: list[TextAttentionLayer] = []
    for index, block in enumerate(blocks):
        attention = getattr(block, "attn", None)
        if attention is not None and hasattr(attention, "add_k_proj") and hasattr(attention, "add_v_proj"):
            name = f"{prefix}.{index}.attn"
            layers.append(TextAttentionLayer(len(layers), name, f"{name}.add_k_proj", f"{name}.add_v_proj", "joint"))
    return layers


class SD3JointAttentionAdapter(ArchitectureAdapter):
    """Stable Diffusion 3 / 3.5: patch the text stream in extra batch rows of the same call."""

    family: ClassVar[str] = "sd3_joint"
    description: ClassVar[str] = "MMDiT joint attention (Stable Diffusion 3, 3.5)"
    denoiser_classes: ClassVar[tuple[str, ...]] = ("SD3Transformer2DModel",)
    strategy = "extra_rows"
    sample_input: ClassVar[str] = "hidden_states"
    batched_inputs: ClassVar[tuple[str, ...]] = (
        "hidden_states",
        "timestep",
        "encoder_hidden_states",
        "pooled_projections",
    )
    prompt_inputs: ClassVar[tuple[str, ...]] = ("encoder_hidden_states", "pooled_projections")

    def matches(self, denoiser: nn.Module) -> bool:
        if hasattr(denoiser, "single_transformer_blocks") or not hasattr(denoiser, "context_embedder"):
            return False
        return super().matches(denoiser)

    def discover(self, denoiser: nn.Module) -> list[TextAttentionLayer]:
        return joint_block_layers(denoiser.transformer_blocks, "transformer_blocks")


register_adapter(SD3JointAttentionAdapter)
