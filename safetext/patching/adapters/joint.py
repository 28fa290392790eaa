"""SD3 / SD3.5 joint attention (MMDiT): the text stream's ``add_k_proj`` / ``add_v_proj``.

In an MMDiT block, text and image tokens attend jointly; the text keys/values come from the text
stream's ``add_k_proj``/``add_v_proj``. The text stream is updated by every block from the image, so
a layer's text K/V depend on the noisy image: they cannot be computed from the prompt alone. The patch
therefore runs the target prompt as extra batch rows of the same transformer call (same noisy latents,
same timestep, the target's prompt embeddings and pooled projection) and copies the extra rows' text
K/V into the patched rows at the mapped layers; the extra rows are dropped from the output.

Layers are the blocks' ``attn`` modules in block order (SD3 medium: 24, the paper's layer is
``transformer_blocks.10.attn``). SD3.5's second, image-only ``attn2`` never reads the prompt.

Early exit. The extra rows are needed only up to the block holding the last mapped layer: after it,
their text K/V are never read again. :func:`plan_early_exit` finds that block; the patch cuts the extra
rows from its output (image and text streams) and from every per-row input of the modules that run
after it (the blocks' ``temb``, the output norm's conditioning), so later blocks and the output head run
on the user's rows only (SD3 medium with the paper's block 10: 13 of 24 blocks run without the target
rows). Inputs that carry no batch dimension (Flux's rotary embedding, computed from position ids) are
left alone. A block or head whose forward takes an argument not known here, or a denoiser carrying a
diffusers cache hook (whose stored residuals assume one batch size for the whole forward), gets no early
exit: the target rows run through every block as before.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.registry import register_adapter

#: block inputs with one row per batch item that flow from block to block (cut at the exit block's output)
STREAM_INPUTS: tuple[str, ...] = ("hidden_states", "encoder_hidden_states")
#: block inputs with one row per batch item computed once per forward (cut before every later block)
ROW_INPUTS: tuple[str, ...] = ("temb",)
#: block inputs without a batch dimension (rotary embedding from position ids) or holding none (kwargs dicts)
SHARED_INPUTS: tuple[str, ...] = ("image_rotary_emb", "joint_attention_kwargs")
#: the output head: ``norm_out(hidden_states, conditioning)``; its conditioning (``temb``) is per row
HEAD_INPUTS: tuple[str, ...] = ("x", "conditioning_embedding")
HEAD_ROW_INPUTS: tuple[str, ...] = ("conditioning_embedding",)


@dataclass(frozen=True)
class EarlyExit:
    """Where the target rows leave a joint-attention forward.

    Attributes:
        block: name of the block holding the last mapped layer; its output loses the extra rows.
        module: that block.
        later: ``(name, module, parameters, per-row input names)`` of every module that runs after the
            exit and reads per-row inputs: the later blocks, then the output norm.
        blocks_after: how many blocks run without the target rows.
    """

    block: str
    module: nn.Module
    later: tuple[tuple[str, nn.Module, tuple[inspect.Parameter, ...], tuple[str, ...]], ...]
    blocks_after: int


@functools.lru_cache(maxsize=64)
def _parameters(forward: object) -> tuple[inspect.Parameter, ...]:
    return tuple(inspect.signature(forward).parameters.values())[1:]


def _unknown_inputs(parameters: Sequence[inspect.Parameter], known: Sequence[str]) -> list[str]:
    """Parameters an early exit cannot classify (unknown names, ``*args`` / ``**kwargs``)."""
    return [
        p.name
        for p in parameters
        if p.name not in known or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def _cache_hooked(modules: Sequence[nn.Module]) -> bool:
    """Whether a stateful diffusers hook (first-block, pyramid, faster, ... cache) sits on any of ``modules``."""
    for module in modules:
        registry = getattr(module, "_diffusers_hook", None)
        hooks = getattr(registry, "hooks", None) or {}
        if any(getattr(hook, "_is_stateful", False) for hook in hooks.values()):
            return True
    return False


def plan_early_exit(
    denoiser: nn.Module, blocks: Sequence[tuple[str, nn.Module]], layers: Sequence[TextAttentionLayer]
) -> EarlyExit | str:
    """Where the target rows can leave the forward, or why they cannot (the reason, a string).

    Args:
        denoiser: the joint-attention transformer.
        blocks: its blocks in forward order, with their module names.
        layers: the mapped layers (each inside one block).

    Returns:
        An :class:`EarlyExit`, or a one-line reason the target rows must run through every block.
    """
    names = [name for name, _ in blocks]
    owners = [name for layer in layers for name in names if layer.name.startswith(name + ".")]
    if len(owners) != len(layers) or not owners:
        return "a mapped layer lies outside the transformer's blocks"
    last = max(names.index(name) for name in owners)
    head = getattr(denoiser, "norm_out", None)
    if head is None:
        return f"{type(denoiser).__name__} has no norm_out output head"
    if _cache_hooked([denoiser, *(module for _, module in blocks)]):
        return "a diffusers cache hook is installed on the transformer (its residuals assume one batch size)"
    later = []
    for name, module in blocks[last + 1 :]:
        parameters = _parameters(type(module).forward)
        unknown = _unknown_inputs(parameters, STREAM_INPUTS + ROW_INPUTS + SHARED_INPUTS)
        if unknown or "hidden_states" not in [p.name for p in parameters]:
            return f"{name} ({type(module).__name__}) takes inputs the early exit does not know: {unknown or 'no hidden_states'}"
        later.append((name, module, parameters, STREAM_INPUTS + ROW_INPUTS))
    parameters = _parameters(type(head).forward)
    if tuple(p.name for p in parameters) != HEAD_INPUTS:
        return f"norm_out ({type(head).__name__}) takes {[p.name for p in parameters]}, not {list(HEAD_INPUTS)}"
    later.append(("norm_out", head, parameters, HEAD_ROW_INPUTS))
    return EarlyExit(names[last], blocks[last][1], tuple(later), len(blocks) - last - 1)


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

    def forward_blocks(self, denoiser: nn.Module) -> list[tuple[str, nn.Module]]:
        """The transformer blocks in forward order, with their module names (for the early exit)."""
        return [(f"transformer_blocks.{i}", block) for i, block in enumerate(denoiser.transformer_blocks)]


register_adapter(SD3JointAttentionAdapter)
