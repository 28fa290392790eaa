"""Which Linears a LoRA adapter touches: the projections of a chosen set of attention modules.

A selector names attention modules, not Linears: a :class:`~safetext.patching.LayerMap` (its ``layers``
are attention-module names such as ``up_blocks.0.attentions.2.transformer_blocks.1.attn2``), a plain
list of such names, or the baseline :data:`ALL_CROSS_ATTENTION` (every text-attention layer
:func:`~safetext.patching.discover_text_layers` finds: every ``attn2`` of a UNet). Each selected module
contributes its ``to_q``, ``to_k``, ``to_v`` and ``to_out.0`` Linears (configurable), and the result is
a list of exact, full module names, the form peft matches without any pattern guessing.

    >>> from safetext.lora import resolve_lora_targets
    >>> targets = resolve_lora_targets(pipe.unet, ["mid_block.attentions.0.transformer_blocks.0.attn2"])  # doctest: +SKIP
    >>> targets.module_names  # doctest: +SKIP
    ('mid_block.attentions.0.transformer_blocks.0.attn2.to_q', ..., 'mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0')

A selector that matches nothing, or names a module that is not an attention module, raises
:class:`~safetext.errors.LayerMapError` listing the valid names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from torch import nn

from safetext.errors import LayerMapError, UnsupportedArchitectureError

logger = logging.getLogger("safetext.lora")

#: Selector of the comparison baseline: every text-attention (cross-attention) layer of the denoiser.
ALL_CROSS_ATTENTION = "all-cross-attention"

#: The attention projections LoRA adapts by default (as in the paper's SDXL experiment).
DEFAULT_PROJECTIONS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")

#: Projection names a selector may accidentally carry; they are stripped to the attention module name.
_PROJECTION_SUFFIXES: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj")

LoraSelector = Union[str, Sequence[str], Any]


@dataclass(frozen=True)
class LoraTargets:
    """The attention modules a LoRA adapter covers and the exact Linears it wraps.

    Attributes:
        attention_modules: full names of the selected attention modules, text-attention layers in forward
            order (down, mid, up blocks) first.
        projections: projection names under each attention module (``to_q``, ``to_k``, ``to_v``, ``to_out.0``).
        selector: how the modules were chosen (``"all-cross-attention"``, ``"layer-map"`` or ``"names"``).
    """

    attention_modules: tuple[str, ...]
    projections: tuple[str, ...]
    selector: str

    @property
    def module_names(self) -> tuple[str, ...]:
        """Full names of every targeted Linear, e.g. ``mid_block.attentions.0.transformer_blocks.0.attn2.to_k``."""
        return tuple(f"{attention}.{projection}" for attention in self.attention_modules for projection in self.projections)

    def parameter_count(self, denoiser: nn.Module, rank: int) -> int:
        """Parameters a rank-``rank`` LoRA on these Linears adds: ``rank * (in + out)`` per Linear."""
        total = 0
        for name in self.module_names:
            linear = _base_linear(denoiser.get_submodule(name))
            total += rank * (linear.in_features + linear.out_features)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "attention_modules": list(self.attention_modules),
            "projections": list(self.projections),
            "module_names": list(self.module_names),
        }


def _base_linear(module: nn.Module) -> nn.Module:
    """The ``nn.Linear`` itself, also when a peft LoRA layer already wraps it (``base_layer``)."""
    return getattr(module, "base_layer", module)


def attention_module_names(denoiser: nn.Module) -> list[str]:
    """Every attention module of ``denoiser`` (anything with ``to_q``/``to_k``/``to_v``), in module order."""
    return [
        name
        for name, module in denoiser.named_modules()
        if name and all(isinstance(getattr(module, p, None), nn.Module) for p in ("to_q", "to_k", "to_v"))
    ]


def text_attention_module_names(denoiser: nn.Module) -> list[str]:
    """The text-attention layers of ``denoiser`` in forward order, from safetext's architecture registry.

    Raises:
        UnsupportedArchitectureError: the registry has no adapter for the denoiser.
    """
    from safetext.patching import discover_text_layers

    return [layer.name for layer in discover_text_layers(denoiser)]


def _forward_order(denoiser: nn.Module, attention_names: list[str]) -> list[str]:
    """Text-attention layers in forward order (down, mid, up), then any other attention module."""
    try:
        text_names = text_attention_module_names(denoiser)
    except UnsupportedArchitectureError:
        text_names = []
    listed = set(text_names)
    return text_names + [n for n in attention_names if n not in listed]


def _selector_names(selector: LoraSelector, denoiser: nn.Module) -> tuple[list[str], str]:
    """The attention names a selector holds and the selector kind recorded in :class:`LoraTargets`."""
    from safetext.patching import LayerMap

    if isinstance(selector, LayerMap):
        selector.select(denoiser)  # the map's own checks: adapter family, every layer present
        if not selector.matches(denoiser):
            logger.info("layer map %r was made for another config of %s; its layers exist here, training on them",
                        selector.name, type(denoiser).__name__)
        return list(selector.layers), "layer-map"
    if isinstance(selector, str):
        if selector == ALL_CROSS_ATTENTION:
            return [], ALL_CROSS_ATTENTION
        raise LayerMapError(
            f"unknown LoRA target selector {selector!r}: pass {ALL_CROSS_ATTENTION!r}, a LayerMap, or a list of "
            "attention-module names (e.g. ['mid_block.attentions.0.transformer_blocks.0.attn2'])"
        )
    layers = getattr(selector, "layers", None)
    if layers is not None and not isinstance(selector, (list, tuple)):
        names, kind = list(layers), "layer-map"
    elif isinstance(selector, Iterable):
        names, kind = list(selector), "names"
    else:
        raise LayerMapError(
            f"LoRA target selector must be {ALL_CROSS_ATTENTION!r}, a LayerMap or a list of attention-module "
            f"names, got {type(selector).__name__}"
        )
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise LayerMapError(f"attention-module names must be non-empty strings, got {bad!r}")
    return names, kind


def _strip_projection(name: str, valid: set[str]) -> str:
    """``...attn2.to_k`` -> ``...attn2`` when the parent is an attention module (layer maps may name K/V)."""
    if name in valid:
        return name
    for suffix in _PROJECTION_SUFFIXES:
        if name.endswith("." + suffix) and name[: -len(suffix) - 1] in valid:
            return name[: -len(suffix) - 1]
    return name


def _valid_names_message(denoiser: nn.Module, attention_names: list[str]) -> str:
    try:
        text_names = text_attention_module_names(denoiser)
    except UnsupportedArchitectureError:
        text_names = []
    if text_names:
        others = len(set(attention_names) - set(text_names))
        listing = "\n".join(f"  - {n}" for n in text_names)
        extra = f"\n(the {others} other attention modules, e.g. self-attention attn1, are accepted too)" if others else ""
        return f"valid text-attention layers of {type(denoiser).__name__}:\n{listing}{extra}"
    listing = "\n".join(f"  - {n}" for n in attention_names) or "  (none: the denoiser has no attention modules)"
    return f"valid attention modules of {type(denoiser).__name__}:\n{listing}"


def resolve_lora_targets(
    denoiser: nn.Module,
    selector: LoraSelector,
    projections: Sequence[str] = DEFAULT_PROJECTIONS,
) -> LoraTargets:
    """Resolve a selector to the exact Linears LoRA will wrap.

    Args:
        denoiser: the UNet or transformer (``pipe.unet``) the adapter goes into.
        selector: ``"all-cross-attention"``, a ``LayerMap`` (checked with its own ``select``: adapter
            family and layer names), any object with a ``layers`` list of attention names, or a list of
            attention-module names. Names ending in a projection (``.to_k``) are read as their attention
            module.
        projections: projection names under each attention module (default: ``to_q``, ``to_k``, ``to_v``,
            ``to_out.0``).

    Returns:
        `LoraTargets` with the selected attention modules in forward order.

    Raises:
        LayerMapError: the selector names no module, names something that is not an attention module of
            this denoiser, or a projection is missing; the message lists the valid names.
        UnsupportedArchitectureError: ``"all-cross-attention"`` on a denoiser the registry does not know.
    """
    projections = tuple(projections)
    if not projections:
        raise LayerMapError(f"projections must name at least one Linear, e.g. {list(DEFAULT_PROJECTIONS)}")
    names, kind = _selector_names(selector, denoiser)
    attention_names = attention_module_names(denoiser)
    if kind == ALL_CROSS_ATTENTION:
        names = text_attention_module_names(denoiser)
        if not names:
            raise LayerMapError(
                f"{ALL_CROSS_ATTENTION!r} matched no cross-attention layer in {type(denoiser).__name__}; "
                f"{_valid_names_message(denoiser, attention_names)}"
            )
    valid = set(attention_names)
    resolved = [_strip_projection(n, valid) for n in names]
    unknown = [n for n, r in zip(names, resolved) if r not in valid]
    if not resolved or unknown:
        what = f"names no attention module of {type(denoiser).__name__}: {unknown}" if unknown else "is empty"
        raise LayerMapError(f"LoRA target selector {what}; {_valid_names_message(denoiser, attention_names)}")
    chosen = set(resolved)
    ordered = tuple(n for n in _forward_order(denoiser, attention_names) if n in chosen)
    for attention in ordered:
        for projection in projections:
            try:
                linear = _base_linear(denoiser.get_submodule(f"{attention}.{projection}"))
            except AttributeError:
                linear = None
            if not isinstance(linear, nn.Linear):
                raise LayerMapError(
                    f"{attention} has no Linear {projection!r}; choose projections among those every selected "
                    f"attention module has (default {list(DEFAULT_PROJECTIONS)})"
                )
    logger.debug("LoRA targets (%s): %d attention modules x %s", kind, len(ordered), projections)
    return LoraTargets(attention_modules=ordered, projections=projections, selector=kind)


def lora_module_names(denoiser: nn.Module, adapter_name: str | None = None) -> set[str]:
    """Names of the modules of ``denoiser`` that hold LoRA weights (``lora_A``), optionally for one adapter.

    This is what peft records as ``targeted_module_names``, read back from the model itself.
    """
    found = set()
    for name, module in denoiser.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, nn.ModuleDict) and len(lora_a) and (adapter_name is None or adapter_name in lora_a):
            found.add(name)
    return found
