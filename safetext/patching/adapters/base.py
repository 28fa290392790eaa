"""What an architecture adapter knows: where a denoiser keeps its text keys/values and how to patch them.

An adapter describes one family of denoisers (UNet cross-attention, added-K/V UNets, PixArt, SD3 joint
attention, Flux). It finds every text-attention layer in forward order and says how the K/V patch gets
the target prompt's keys/values:

* ``strategy = "inject"`` (text K/V depend only on the prompt): the adapter turns the denoiser inputs the
  pipeline produced for the target prompt into the tensor each K/V projection reads
  (:meth:`ArchitectureAdapter.text_states` then :meth:`ArchitectureAdapter.layer_input`), so the target
  K/V are computed once, with no extra denoiser forward.
* ``strategy = "extra_rows"`` (joint attention: the text stream depends on the noisy image): the target
  prompt runs as extra batch rows of the same denoiser call; the adapter names the batched inputs and
  which of them carry the prompt.

The reference implementation to copy for a new cross-attention family is
:class:`safetext.patching.adapters.unet_cross.UNetCrossAttentionAdapter`; for a new joint-attention
family, :class:`safetext.patching.adapters.joint.SD3JointAttentionAdapter`. A new adapter is one file
ending in one :func:`safetext.patching.registry.register_adapter` call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

Strategy = Literal["inject", "extra_rows"]


@dataclass(frozen=True)
class TextAttentionLayer:
    """One attention layer that reads the prompt, with the names of its text K/V projections.

    Attributes:
        index: 0-based position in forward order (down, mid, up blocks; or block order), the numbering
            the paper uses (SDXL: 55 = ``up_blocks.0.attentions.2.transformer_blocks.1.attn2``).
        name: module name of the attention module (the name a :class:`LayerMap` stores).
        key: module name of the ``nn.Linear`` producing the text keys.
        value: module name of the ``nn.Linear`` producing the text values.
        block: where the layer sits: ``down``, ``mid``, ``up`` (UNets), ``transformer`` (DiT cross-attention), ``joint`` or
            ``single`` (MMDiT double- and single-stream blocks).
        text_prefix_only: True when the K/V projection also sees image tokens and only its first
            ``L_text`` token rows are text (Flux single-stream blocks).
    """

    index: int
    name: str
    key: str
    value: str
    block: str
    text_prefix_only: bool = False


def bias_from_padding_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Turn a (batch, tokens) keep-mask into the additive attention bias the diffusers denoisers use.

    ``UNet2DConditionModel`` and ``PixArtTransformer2DModel`` both convert ``encoder_attention_mask``
    this way before handing it to every cross-attention layer as ``attention_mask``.

    Args:
        mask (`torch.Tensor`): 1 for tokens to attend to, 0 for padding, shape (batch, tokens).
        dtype (`torch.dtype`): dtype of the denoiser's hidden states.

    Returns:
        `torch.Tensor`: bias of shape (batch, 1, tokens): 0 where kept, -10000 where masked.
    """
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def attention_modules(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Every diffusers attention module under ``module``, in registration order, with full names.

    A ``torch.compile`` wrapper (``OptimizedModule``, a submodule compiled out of place and assigned back)
    is looked through: the module it wraps is listed once, under the name it had before (the wrapper's
    attributes lead to the wrapped module's, so the name still resolves, and layer maps keep matching).
    """
    found = []
    for name, child in module.named_modules(prefix=prefix):
        if "_orig_mod" in child._modules:
            continue  # the wrapper: the module it wraps follows as <name>._orig_mod
        if hasattr(child, "to_q") and hasattr(child, "processor"):
            found.append((".".join(part for part in name.split(".") if part != "_orig_mod"), child))
    return found


class ArchitectureAdapter(ABC):
    """Base class of the per-family adapters (reference implementation: ``adapters/unet_cross.py``).

    Subclasses set the class attributes and implement :meth:`discover`; ``inject`` adapters also
    implement :meth:`text_states` (and override :meth:`layer_input` / :meth:`attention_bias` when the
    family normalizes the text or masks padding), ``extra_rows`` adapters set :attr:`batched_inputs`
    and :attr:`prompt_inputs`.

    Attributes:
        family: registry key, e.g. ``"unet_cross"``.
        description: one line naming the models of the family (shown in error messages).
        denoiser_classes: class names the adapter is registered for (looked up along the MRO).
        strategy: ``"inject"`` or ``"extra_rows"`` (see the module docstring).
        sample_input: name of the denoiser's noisy-input argument (its batch size is the batch size).
        timestep_input: name of the timestep argument (the step counter watches it).
        batched_inputs: ``extra_rows`` only: arguments with one row per batch item.
        prompt_inputs: ``extra_rows`` only: the batched arguments that come from the prompt; the extra
            rows take them from the target prompt, the others from the user's own rows.
        patched_call_ordinals: which denoiser calls within one step may be patched (``None``: all).
            Flux runs true-CFG's negative branch as a second call of the same step.
    """

    family: ClassVar[str]
    description: ClassVar[str]
    denoiser_classes: ClassVar[tuple[str, ...]]
    strategy: ClassVar[Strategy]
    sample_input: ClassVar[str] = "hidden_states"
    timestep_input: ClassVar[str] = "timestep"
    batched_inputs: ClassVar[tuple[str, ...]] = ()
    prompt_inputs: ClassVar[tuple[str, ...]] = ()
    patched_call_ordinals: ClassVar[tuple[int, ...] | None] = None

    def matches(self, denoiser: nn.Module) -> bool:
        """Duck-typed test used when the denoiser's class is not registered: does the structure fit?"""
        try:
            return len(self.discover(denoiser)) > 0
        except (AttributeError, TypeError):
            return False

    @abstractmethod
    def discover(self, denoiser: nn.Module) -> list[TextAttentionLayer]:
        """Every text-attention layer of ``denoiser`` in forward order, indices 0..N-1."""

    def text_states(self, denoiser: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
        """``inject`` only: the text hidden states the denoiser hands its attention layers.

        Args:
            denoiser: the denoiser module.
            inputs: the arguments of one denoiser call, by name, as the pipeline passed them.
        """
        raise NotImplementedError(f"{type(self).__name__} does not inject precomputed K/V")

    def layer_input(self, attention: nn.Module, states: torch.Tensor) -> torch.Tensor:
        """``inject`` only: what one layer's K/V projections read (default: the states unchanged)."""
        return states

    def attention_bias(self, inputs: Mapping[str, Any], dtype: torch.dtype) -> torch.Tensor | None:
        """``inject`` only: the text padding bias the layers receive as ``attention_mask``, if any."""
        return None
