"""How safetext steers a model: find the text-attention layers, swap their keys/values, map layers per model.

* :func:`discover_text_layers` — every text-attention layer of a denoiser, forward order, stable names.
* :class:`KVPatch` — swap the text K/V of chosen layers for a target prompt's, from a start step on.
* :class:`LayerMap` / :func:`resolve_layer_map` — which layers to patch for which model (presets for
  SDXL base, SD3 medium, IF-I-XL).
* :func:`inspect_model` — which map a model gets and why (``safetext inspect``).
* :func:`register_adapter` — teach safetext a new architecture (one adapter file, one call).
"""

from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.kv_patch import KVPatch, PatchReport, denoiser_hooks_snapshot, start_step_for
from safetext.patching.inspection import ModelInspection, build_meta_denoiser, inspect_model
from safetext.patching.layer_map import LayerMap, ModelFingerprint
from safetext.patching.layers import check_patchable, discover_text_layers, find_denoiser, select_layers
from safetext.patching.recording import RecordedCall, record_denoiser_inputs
from safetext.patching.registry import get_adapter, register_adapter, registered_adapters, supported_architectures
from safetext.patching.resolve import ResolvedLayerMap, find_preset, resolve_layer_map, shipped_presets

__all__ = [
    "ArchitectureAdapter",
    "KVPatch",
    "LayerMap",
    "ModelFingerprint",
    "ModelInspection",
    "PatchReport",
    "RecordedCall",
    "ResolvedLayerMap",
    "TextAttentionLayer",
    "build_meta_denoiser",
    "check_patchable",
    "denoiser_hooks_snapshot",
    "discover_text_layers",
    "find_denoiser",
    "find_preset",
    "get_adapter",
    "inspect_model",
    "record_denoiser_inputs",
    "register_adapter",
    "registered_adapters",
    "resolve_layer_map",
    "select_layers",
    "shipped_presets",
    "start_step_for",
    "supported_architectures",
]
