"""Find the text-attention layers of a denoiser: stable names, forward-order indices, K/V projections.

    >>> from safetext.patching import discover_text_layers
    >>> layers = discover_text_layers(pipe)          # a pipeline or its UNet / transformer
    >>> layers[55].name                              # SDXL base
    'up_blocks.0.attentions.2.transformer_blocks.1.attn2'
    >>> layers[55].key
    'up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_k'

Indices follow the forward order the paper numbers layers in (down blocks, mid block, up blocks for
UNets; block order for transformers). Which modules hold the text keys/values is the adapters' knowledge
(:mod:`safetext.patching.adapters`); this module is the architecture-independent front door, plus the
checks every patch runs first (fused projections, layer names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from safetext.errors import LayerMapError, PatchError, UnsupportedArchitectureError
from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.registry import get_adapter

DENOISER_COMPONENTS: tuple[str, ...] = ("unet", "transformer")
_FUSED_ATTRIBUTES: tuple[str, ...] = ("to_qkv", "to_kv", "to_added_qkv")


def find_denoiser(pipe_or_model: Any) -> nn.Module:
    """The denoiser of a diffusers pipeline (its ``unet`` or ``transformer``), or the module itself.

    A ``torch.compile`` wrapper (``OptimizedModule``) is looked through: the original module is returned.

    Raises:
        UnsupportedArchitectureError: the pipeline has neither component.
    """
    if isinstance(pipe_or_model, nn.Module):
        return getattr(pipe_or_model, "_orig_mod", pipe_or_model)  # a torch.compile wrapper: the module inside
    for name in DENOISER_COMPONENTS:
        component = getattr(pipe_or_model, name, None)
        if isinstance(component, nn.Module):
            return getattr(component, "_orig_mod", component)
    raise UnsupportedArchitectureError(
        f"{type(pipe_or_model).__name__} has no denoiser component ({' or '.join(DENOISER_COMPONENTS)}); "
        "pass a diffusers text-to-image pipeline or its UNet/transformer."
    )


def discover_text_layers(pipe_or_model: Any) -> tuple[TextAttentionLayer, ...]:
    """Every text-attention layer of a pipeline's denoiser, in forward order.

    Args:
        pipe_or_model: a diffusers pipeline, or a UNet / transformer denoiser (weights are not read, so
            a model built on the ``meta`` device works).

    Returns:
        `tuple[TextAttentionLayer, ...]`: indices 0..N-1 with module names of the attention module and
        of its text K/V projections.

    Raises:
        UnsupportedArchitectureError: no adapter knows the denoiser (the message lists what is supported).
    """
    denoiser = find_denoiser(pipe_or_model)
    return tuple(get_adapter(denoiser).discover(denoiser))


def select_layers(
    available: Sequence[TextAttentionLayer], wanted: Sequence[str | int]
) -> tuple[TextAttentionLayer, ...]:
    """Pick layers by attention-module name or forward-order index, keeping forward order.

    Args:
        available: the model's layers (:func:`discover_text_layers`).
        wanted: names (``"transformer_blocks.10.attn"``) and/or indices (``55``).

    Raises:
        LayerMapError: nothing selected, or a name/index the model lacks (the message lists the valid
            names).
    """
    if len(wanted) == 0:
        raise LayerMapError("no layers selected: name at least one text-attention layer to patch")
    by_name = {layer.name: layer for layer in available}
    chosen: dict[int, TextAttentionLayer] = {}
    unknown: list[str] = []
    for item in wanted:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise LayerMapError(f"layer {item!r} must be an attention-module name (str) or an index (int)")
        if isinstance(item, int):
            if 0 <= item < len(available):
                chosen[item] = available[item]
            else:
                unknown.append(str(item))
        elif item in by_name:
            chosen[by_name[item].index] = by_name[item]
        else:
            unknown.append(repr(item))
    if unknown:
        valid = "\n".join(f"  {layer.index:3d}  {layer.name}" for layer in available)
        raise LayerMapError(
            f"this model has no text-attention layer {', '.join(unknown)}. "
            f"Its {len(available)} text-attention layers (index, name) are:\n{valid}"
        )
    return tuple(chosen[index] for index in sorted(chosen))


def uses_fused_projections(attention: nn.Module) -> bool:
    """True when ``attention`` computes K/V with a fused QKV/KV Linear that the patch's hooks never see.

    Classic ``Attention`` modules are fused exactly when their processor is a ``Fused*`` processor
    (``UNet2DConditionModel.unfuse_qkv_projections`` restores the processors but leaves the fused
    Linear behind); newer attention classes read their ``fused_projections`` flag.
    """
    processor = getattr(attention, "processor", None)
    if processor is not None and "Fused" in type(processor).__name__:
        return True
    if type(attention).__name__ == "Attention" and type(attention).__module__.endswith("attention_processor"):
        return False
    return bool(getattr(attention, "fused_projections", False)) and any(
        hasattr(attention, a) for a in _FUSED_ATTRIBUTES
    )


def check_patchable(denoiser: nn.Module, layers: Sequence[TextAttentionLayer]) -> None:
    """Refuse layers whose K/V projections are fused (forward hooks on ``to_k``/``to_v`` would never run).

    Raises:
        PatchError: names the fused layers and the fix (``unfuse_qkv_projections()``).
    """
    fused = [layer.name for layer in layers if uses_fused_projections(denoiser.get_submodule(layer.name))]
    if fused:
        shown = ", ".join(fused[:3]) + (f" and {len(fused) - 3} more" if len(fused) > 3 else "")
        raise PatchError(
            f"the K/V projections of {shown} are fused (fuse_qkv_projections), so safetext cannot swap the "
            "text keys/values there. Call pipe.unfuse_qkv_projections() (or the denoiser's "
            "unfuse_qkv_projections()) before generating through safetext."
        )


def is_lora_wrapped(module: nn.Module) -> bool:
    """True when ``module`` is a peft LoRA layer wrapping the original Linear (its output includes the delta)."""
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


def resolve_adapter(pipe_or_model: Any) -> tuple[nn.Module, ArchitectureAdapter]:
    """``(denoiser, adapter)`` for a pipeline or denoiser (raises UnsupportedArchitectureError)."""
    denoiser = find_denoiser(pipe_or_model)
    return denoiser, get_adapter(denoiser)
