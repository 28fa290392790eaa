"""Inspect a model: its text-attention layers, the layer map safetext would use for it, and why.

    >>> from safetext.patching import inspect_model
    >>> report = inspect_model("models/stable-diffusion-xl-base-1.0")   # a model folder or a config.json
    >>> report.resolved.source, report.resolved.layer_map.name
    ('preset', 'sdxl-base-1.0')
    >>> print(report.table())                                          # what `safetext inspect` prints

A model folder (diffusers layout: ``model_index.json`` with a ``unet/`` or ``transformer/`` folder) or
a bare denoiser ``config.json`` is built on the ``meta`` device: no weights are read or allocated, so
inspecting SDXL or Flux takes a fraction of a second. A pipeline or a denoiser module is inspected as
it is (LoRA adapters loaded with peft do not change its identity).

When no shipped preset matches, the report names the nearest preset of the same denoiser class and
exactly what differs: config values (after reading ``null`` as the option's default), the number of
text-attention layers, the preset's layers this model lacks, and the parameters that exist only on
one side or have other shapes. Presets are compared through the published config of the model each
was made for, shipped next to it in ``presets/configs/<preset name>.json``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from safetext.errors import LayerMapError, UnsupportedArchitectureError
from safetext.patching.layer_map import LayerMap, ModelFingerprint, _canonical, denoiser_structure, structure_sha256
from safetext.patching.layers import DENOISER_COMPONENTS, find_denoiser, resolve_adapter
from safetext.patching.resolve import PRESETS_DIR, ResolvedLayerMap, resolve_layer_map, shipped_presets

#: Published denoiser configs of the models the shipped presets were made for (``<preset name>.json``).
PRESET_CONFIGS_DIR = PRESETS_DIR / "configs"
#: Step counts shown for a map's start step (the clamp into short schedules included).
SHOWN_STEP_COUNTS = (50, 20, 4, 1)
_EXAMPLES = 3


# -- configs and models on the meta device ------------------------------------------------------------
def denoiser_config_path(path: str | os.PathLike) -> Path:
    """The denoiser ``config.json`` of a model folder (diffusers layout) or the given config file.

    Raises:
        LayerMapError: the path does not exist or holds no denoiser config.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise LayerMapError(f"{str(path)!r} does not exist; pass a model folder or a denoiser config.json")
    index = path / "model_index.json"
    components = DENOISER_COMPONENTS
    if index.is_file():
        listed = json.loads(index.read_text(encoding="utf-8"))
        components = tuple(name for name in DENOISER_COMPONENTS if name in listed) or DENOISER_COMPONENTS
    for name in components:
        candidate = path / name / "config.json"
        if candidate.is_file():
            return candidate
    if (path / "config.json").is_file():
        return path / "config.json"
    raise LayerMapError(
        f"{str(path)!r} holds no denoiser config: expected {' or '.join(f'{c}/config.json' for c in components)} "
        "(a diffusers model folder) or a config.json"
    )


def denoiser_class_for(config: Mapping[str, Any], source: str = "<config>") -> type:
    """The diffusers class a denoiser config names (``_class_name``), with diffusers' own renames applied.

    Raises:
        UnsupportedArchitectureError: no ``_class_name``, or one diffusers does not have.
    """
    import diffusers

    name = config.get("_class_name")
    cls = getattr(diffusers, str(name), None) if name else None
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise UnsupportedArchitectureError(
            f"{source}: _class_name {name!r} is not a diffusers model class; pass the config.json of a UNet "
            "or transformer denoiser (e.g. unet/config.json)"
        )
    try:  # old PixArt configs say Transformer2DModel; diffusers loads them as PixArtTransformer2DModel
        from diffusers.models.model_loading_utils import _CLASS_REMAPPING_DICT
    except ImportError:  # pragma: no cover - diffusers without renames
        _CLASS_REMAPPING_DICT = {}
    renamed = _CLASS_REMAPPING_DICT.get(cls.__name__, {}).get(config.get("norm_type"))
    return getattr(diffusers, renamed) if renamed else cls


def build_meta_denoiser(path_or_config: str | os.PathLike | Mapping[str, Any]) -> nn.Module:
    """Build a denoiser from its config (a dict, a ``config.json``, or a model folder) on the meta device.

    No weights are allocated: the module has every parameter with its real shape, on ``meta``.
    """
    if isinstance(path_or_config, Mapping):
        config, source = dict(path_or_config), "<config>"
    else:
        config_path = denoiser_config_path(path_or_config)
        source = str(config_path)
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise LayerMapError(f"{source}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
    cls = denoiser_class_for(config, source)
    with torch.device("meta"):
        return cls.from_config(config)


def effective_config(denoiser: nn.Module) -> dict[str, Any]:
    """The denoiser's ``__init__`` options as they act: a ``null`` (or missing) option reads as its default."""
    config = dict(getattr(denoiser, "config", {}) or {})
    effective: dict[str, Any] = {}
    for name, parameter in inspect.signature(type(denoiser).__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        value = config.get(name, default)
        effective[name] = _canonical(default if value is None else value)
    return effective


# -- comparing with the shipped presets --------------------------------------------------------------
@dataclass(frozen=True)
class _Reference:
    structure: dict[str, Any]
    config: dict[str, Any]
    text_layers: tuple[str, ...]


@lru_cache(maxsize=None)
def _reference(config_path: str) -> _Reference:
    model = build_meta_denoiser(config_path)
    _, adapter = resolve_adapter(model)
    return _Reference(
        denoiser_structure(model), effective_config(model), tuple(layer.name for layer in adapter.discover(model))
    )


def preset_config_path(preset: LayerMap) -> Path | None:
    """The published denoiser config shipped for a preset (``presets/configs/<name>.json``), if any."""
    path = PRESET_CONFIGS_DIR / f"{preset.name}.json"
    return path if path.is_file() else None


@dataclass(frozen=True)
class PresetComparison:
    """How a model differs from a shipped preset's model.

    Attributes:
        preset: the preset.
        config: ``(option, preset's value, this model's value)`` for every option that differs.
        text_layers: number of text-attention layers, ``(preset's model, this model)``.
        missing_layers: the preset's layers this model lacks.
        only_in_preset: parameters only the preset's model has.
        only_in_model: parameters only this model has.
        other_shapes: ``(parameter, preset's shape, this model's shape)``.
        other_heads: ``(attention module, preset's heads, this model's heads)``.
    """

    preset: LayerMap
    config: tuple[tuple[str, Any, Any], ...]
    text_layers: tuple[int, int]
    missing_layers: tuple[str, ...]
    only_in_preset: tuple[str, ...]
    only_in_model: tuple[str, ...]
    other_shapes: tuple[tuple[str, list[int], list[int]], ...]
    other_heads: tuple[tuple[str, int, int], ...]

    @property
    def structural_differences(self) -> int:
        """Parameters and attention modules that differ (0: same architecture)."""
        return len(self.only_in_preset) + len(self.only_in_model) + len(self.other_shapes) + len(self.other_heads)

    def describe(self) -> str:
        """One line: the nearest preset and what differs (preset's value -> this model's)."""
        parts = []
        if self.config:
            shown = ", ".join(f"{key} {_show(a)} -> {_show(b)}" for key, a, b in self.config)
            parts.append(f"config {shown}")
        if self.text_layers[0] != self.text_layers[1]:
            parts.append(f"text-attention layers {self.text_layers[0]} -> {self.text_layers[1]}")
        if self.missing_layers:
            parts.append(f"the preset's layers {_examples(self.missing_layers)} do not exist here")
        if self.only_in_preset:
            parts.append(f"{len(self.only_in_preset)} parameters only in the preset's model ({_examples(self.only_in_preset)})")
        if self.only_in_model:
            parts.append(f"{len(self.only_in_model)} parameters only in this model ({_examples(self.only_in_model)})")
        if self.other_shapes:
            shown = ", ".join(f"{name} {a} -> {b}" for name, a, b in self.other_shapes[:_EXAMPLES])
            more = ", ..." if len(self.other_shapes) > _EXAMPLES else ""
            parts.append(f"{len(self.other_shapes)} parameters with other shapes ({shown}{more})")
        if self.other_heads:
            shown = ", ".join(f"{name} {a} -> {b}" for name, a, b in self.other_heads[:_EXAMPLES])
            more = ", ..." if len(self.other_heads) > _EXAMPLES else ""
            parts.append(f"{len(self.other_heads)} attention modules with other head counts ({shown}{more})")
        what = "; ".join(parts) if parts else "nothing in its parameter structure"
        return f"nearest shipped preset {self.preset.name!r} ({self.preset.fingerprint.short()}) differs: {what}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset.name,
            "config": [{"option": k, "preset": a, "model": b} for k, a, b in self.config],
            "text_layers": {"preset": self.text_layers[0], "model": self.text_layers[1]},
            "missing_layers": list(self.missing_layers),
            "only_in_preset": list(self.only_in_preset),
            "only_in_model": list(self.only_in_model),
            "other_shapes": [{"parameter": n, "preset": a, "model": b} for n, a, b in self.other_shapes],
            "other_heads": [{"module": n, "preset": a, "model": b} for n, a, b in self.other_heads],
        }


def _show(value: Any) -> str:
    return json.dumps(value)


def _examples(names: tuple[str, ...]) -> str:
    return ", ".join(names[:_EXAMPLES]) + (", ..." if len(names) > _EXAMPLES else "")


def compare_with_preset(pipe_or_model: Any, preset: LayerMap) -> PresetComparison | None:
    """What differs between a model and the model a shipped preset was made for (None: no shipped config)."""
    config_path = preset_config_path(preset)
    if config_path is None:
        return None
    reference = _reference(str(config_path))
    denoiser, adapter = resolve_adapter(pipe_or_model)
    structure = denoiser_structure(denoiser)
    config = effective_config(denoiser)
    layers = tuple(layer.name for layer in adapter.discover(denoiser))
    theirs, ours = reference.structure["parameters"], structure["parameters"]
    their_heads, our_heads = reference.structure["heads"], structure["heads"]
    return PresetComparison(
        preset=preset,
        config=tuple(
            (key, reference.config.get(key), config.get(key))
            for key in sorted(set(reference.config) | set(config))
            if reference.config.get(key) != config.get(key)
        ),
        text_layers=(len(reference.text_layers), len(layers)),
        missing_layers=tuple(name for name in preset.layers if name not in layers),
        only_in_preset=tuple(name for name in theirs if name not in ours),
        only_in_model=tuple(name for name in ours if name not in theirs),
        other_shapes=tuple((n, theirs[n], ours[n]) for n in theirs if n in ours and theirs[n] != ours[n]),
        other_heads=tuple(
            (n, their_heads[n], our_heads[n]) for n in their_heads if n in our_heads and their_heads[n] != our_heads[n]
        ),
    )


def nearest_preset(pipe_or_model: Any) -> PresetComparison | None:
    """The shipped preset for the same denoiser class whose model differs least from this one (None: none).

    Least: fewest differing config options, then fewest differing parameters.
    """
    denoiser = find_denoiser(pipe_or_model)
    comparisons = [
        comparison
        for preset in shipped_presets()
        if preset.fingerprint.denoiser_class == type(denoiser).__name__
        and (comparison := compare_with_preset(denoiser, preset)) is not None
    ]
    if not comparisons:
        return None
    return min(comparisons, key=lambda c: (len(c.config), c.structural_differences, c.preset.name))


def fallback_reason(pipe_or_model: Any, fingerprint: ModelFingerprint | None = None) -> str:
    """Why no shipped preset is used for this model: the nearest preset and what differs."""
    denoiser = find_denoiser(pipe_or_model)
    fingerprint = fingerprint if fingerprint is not None else ModelFingerprint.of(denoiser)
    comparison = nearest_preset(denoiser)
    if comparison is None:
        names = ", ".join(sorted(p.name for p in shipped_presets()))
        return f"no shipped preset is made for a {type(denoiser).__name__} (presets: {names})"
    return f"no shipped preset has fingerprint {fingerprint.short()}; {comparison.describe()}"


# -- the report --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    """One text-attention layer in an inspection report.

    Attributes:
        index: forward-order index (the paper's numbering).
        name: attention-module name.
        block: ``down``, ``mid``, ``up``, ``transformer``, ``joint`` or ``single``.
        kv_parameters: parameters of its text K and V projections (weights and biases).
        mapped: whether the chosen layer map patches it.
    """

    index: int
    name: str
    block: str
    kv_parameters: int
    mapped: bool


@dataclass(frozen=True)
class ModelInspection:
    """What :func:`inspect_model` found (``table()`` is what ``safetext inspect`` prints).

    Attributes:
        model: what was inspected (a path, or the pipeline / denoiser class).
        family: adapter family.
        fingerprint: the model's identity.
        parameters: parameters of the denoiser.
        layers: every text-attention layer.
        resolved: the layer map that would be used, and its source (explicit, preset, fallback).
        reason: why that map.
        comparison: on a fallback, the nearest preset and what differs (None when there is none).
    """

    model: str
    family: str
    fingerprint: ModelFingerprint
    parameters: int
    layers: tuple[LayerInfo, ...]
    resolved: ResolvedLayerMap
    reason: str
    comparison: PresetComparison | None

    def start_steps(self) -> str:
        """The map's first patched step at a few schedule lengths (``4 of 50, 2 of 20, ...``)."""
        from safetext.patching.kv_patch import start_step_for

        fraction = self.resolved.layer_map.start_fraction
        return ", ".join(f"{start_step_for(fraction, steps)} of {steps}" for steps in SHOWN_STEP_COUNTS)

    def table(self) -> str:
        layer_map = self.resolved.layer_map
        mapped = sum(layer.mapped for layer in self.layers)
        lines = [
            f"model        {self.model}",
            f"denoiser     {self.fingerprint.denoiser_class} (family {self.family}, {self.parameters:,} parameters)",
            f"fingerprint  {self.fingerprint.short()}",
            f"layer map    {layer_map.name} [{self.resolved.source}]: {mapped} of {len(self.layers)} text-attention "
            f"layers, start_fraction {layer_map.start_fraction:g} (first patched step {self.start_steps()})",
            f"reason       {self.reason}",
            "",
            f"{'index':>5}  {'K/V params':>12}  map  layer",
        ]
        for layer in self.layers:
            lines.append(f"{layer.index:>5}  {layer.kv_parameters:>12,}  {'*' if layer.mapped else ' ':^3}  {layer.name}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        layer_map = self.resolved.layer_map
        return {
            "model": self.model,
            "denoiser_class": self.fingerprint.denoiser_class,
            "family": self.family,
            "fingerprint": self.fingerprint.model_dump(mode="json", exclude_none=True),
            "parameters": self.parameters,
            "layer_map": layer_map.name,
            "source": self.resolved.source,
            "start_fraction": layer_map.start_fraction,
            "reason": self.reason,
            "notes": list(self.resolved.notes),
            "layers": [asdict(layer) for layer in self.layers],
            "nearest_preset": self.comparison.to_dict() if self.comparison is not None else None,
        }


def inspect_model(
    target: Any, layer_map: LayerMap | str | os.PathLike | None = None
) -> ModelInspection:
    """Inspect a pipeline, a denoiser, a denoiser ``config.json`` or a model folder.

    Args:
        target: a diffusers pipeline or its UNet / transformer, or a path to a model folder (diffusers
            layout) or a denoiser ``config.json`` (built on the ``meta`` device, no weights).
        layer_map: an explicit map, map file or preset name, as ``SafeTextGenerator(layer_map=...)``
            would get it (optional).

    Returns:
        :class:`ModelInspection`.

    Raises:
        LayerMapError: the path holds no denoiser config, or the explicit map does not fit.
        UnsupportedArchitectureError: the denoiser is unknown.
    """
    if isinstance(target, (str, os.PathLike)):
        denoiser, description = build_meta_denoiser(target), str(target)
    else:
        denoiser = find_denoiser(target)
        description = type(target).__name__
    denoiser, adapter = resolve_adapter(denoiser)
    fingerprint = ModelFingerprint.of(denoiser)
    resolved = resolve_layer_map(denoiser, layer_map)
    comparison = None
    if resolved.source == "explicit":
        reason = f"explicit layer map {resolved.layer_map.name!r}"
        reason += f" ({resolved.notes[0]})" if resolved.notes else " made for this architecture"
    elif resolved.source == "preset":
        reason = (
            f"the shipped preset {resolved.layer_map.name!r} was made for this architecture "
            f"(fingerprint {fingerprint.short()})"
        )
    else:
        comparison = nearest_preset(denoiser)
        reason = fallback_reason(denoiser, fingerprint)
    chosen = {layer.name for layer in resolved.layers}
    layers = tuple(
        LayerInfo(
            index=layer.index,
            name=layer.name,
            block=layer.block,
            kv_parameters=sum(
                parameter.numel()
                for module in (layer.key, layer.value)
                for parameter in denoiser.get_submodule(module).parameters()
            ),
            mapped=layer.name in chosen,
        )
        for layer in adapter.discover(denoiser)
    )
    return ModelInspection(
        model=description,
        family=adapter.family,
        fingerprint=fingerprint,
        parameters=sum(parameter.numel() for parameter in denoiser.parameters()),
        layers=layers,
        resolved=resolved,
        reason=reason,
        comparison=comparison,
    )


def preset_structure_sha256(preset: LayerMap) -> str | None:
    """Structure fingerprint of a preset's shipped config (None without one); equals the preset's own."""
    config_path = preset_config_path(preset)
    return None if config_path is None else structure_sha256(_reference(str(config_path)).structure)


__all__ = [
    "LayerInfo",
    "ModelInspection",
    "PresetComparison",
    "build_meta_denoiser",
    "compare_with_preset",
    "denoiser_config_path",
    "effective_config",
    "fallback_reason",
    "inspect_model",
    "nearest_preset",
    "preset_config_path",
    "preset_structure_sha256",
]
