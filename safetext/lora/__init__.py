"""LoRA fine-tuning restricted to a LayerMap's attention layers, saved in diffusers format.

- :func:`resolve_lora_targets` / :class:`LoraTargets`: which Linears (``to_q``, ``to_k``, ``to_v``,
  ``to_out.0`` of the selected attention modules) an adapter wraps; ``"all-cross-attention"`` is the
  baseline selector.
- :func:`train_lora` / :class:`LoraTrainConfig` / :class:`LoraTrainResult`: the seeded, resumable,
  denoiser-only training loop.
- :func:`inject_lora`, :func:`save_lora_weights`: the adapter itself; weights load with the pipeline's
  own ``load_lora_weights``.
- :func:`load_captioned_images`, :func:`write_glyph_dataset`, :func:`caption_for_text`: datasets.

K/V patch hooks must be registered AFTER ``load_lora_weights`` (see :mod:`safetext.lora.adapter`).
"""

from safetext.lora.adapter import (
    DEFAULT_ADAPTER_NAME,
    LORA_WEIGHT_NAME,
    diffusers_lora_state_dict,
    inject_lora,
    lora_parameters,
    remove_lora,
    save_lora_weights,
)
from safetext.lora.data import CaptionedImageDataset, caption_for_text, load_captioned_images, write_glyph_dataset
from safetext.lora.objectives import DenoisingObjective, get_objective, register_objective
from safetext.lora.targets import (
    ALL_CROSS_ATTENTION,
    DEFAULT_PROJECTIONS,
    LoraTargets,
    attention_module_names,
    lora_module_names,
    resolve_lora_targets,
    text_attention_module_names,
)
from safetext.lora.train import LoraTrainConfig, LoraTrainResult, train_lora

__all__ = [
    "ALL_CROSS_ATTENTION",
    "DEFAULT_ADAPTER_NAME",
    "DEFAULT_PROJECTIONS",
    "LORA_WEIGHT_NAME",
    "CaptionedImageDataset",
    "DenoisingObjective",
    "LoraTargets",
    "LoraTrainConfig",
    "LoraTrainResult",
    "attention_module_names",
    "caption_for_text",
    "diffusers_lora_state_dict",
    "get_objective",
    "inject_lora",
    "load_captioned_images",
    "lora_module_names",
    "lora_parameters",
    "register_objective",
    "remove_lora",
    "resolve_lora_targets",
    "save_lora_weights",
    "text_attention_module_names",
    "train_lora",
    "write_glyph_dataset",
]
