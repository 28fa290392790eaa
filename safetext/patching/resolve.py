"""Choose the layer map for a model: explicit > shipped preset with a matching fingerprint > fallback.

    >>> from safetext.patching import resolve_layer_map
    >>> resolved = resolve_layer_map(pipe)            # SDXL base, or any fine-tune with its config
    >>> resolved.source, resolved.layer_map.name
    ('preset', 'sdxl-base-1.0')

* explicit: a :class:`LayerMap`, a path to a map file, or the name of a shipped preset. Its layer
  names must exist in the model (else :class:`~safetext.errors.LayerMapError` listing the valid ones).
* preset: the shipped maps in ``safetext/patching/presets/`` (the paper's SDXL base, SD3 medium and
  IF-I-XL results, and the glyph model's own) whose fingerprint matches the model's parameter
  structure (:class:`~safetext.patching.ModelFingerprint`), so fine-tunes and re-saved configs of
  those models get them too.
* fallback: every text-attention layer from step 0, with a note recorded in the verdict explaining
  that this changes more of the image than a localized map and why no preset matched (the nearest
  shipped preset and what differs, as ``safetext inspect`` prints it); ``strict=True`` raises instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from safetext.errors import LayerMapError
from safetext.patching.adapters.base import TextAttentionLayer
from safetext.patching.layer_map import LayerMap, ModelFingerprint
from safetext.patching.layers import resolve_adapter

PRESETS_DIR = Path(__file__).parent / "presets"
LayerMapSource = Literal["explicit", "preset", "fallback"]


@dataclass(frozen=True)
class ResolvedLayerMap:
    """The layer map chosen for a model, where it came from, and any warning to report.

    Attributes:
        layer_map: the map.
        source: ``explicit``, ``preset`` or ``fallback``.
        layers: the model's layers it names (forward order).
        notes: warnings to record in every verdict that uses this map.
    """

    layer_map: LayerMap
    source: LayerMapSource
    layers: tuple[TextAttentionLayer, ...]
    notes: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def _load_presets(directory: str) -> tuple[LayerMap, ...]:
    paths = sorted(Path(directory).glob("*.yaml")) + sorted(Path(directory).glob("*.json"))
    return tuple(LayerMap.load(path) for path in paths)


def shipped_presets() -> tuple[LayerMap, ...]:
    """Every layer map shipped in ``safetext/patching/presets/``."""
    return _load_presets(str(PRESETS_DIR))


def find_preset(pipe_or_model: Any, fingerprint: ModelFingerprint | None = None) -> LayerMap | None:
    """The shipped preset made for this model's architecture (its fingerprint matches), if any.

    Args:
        pipe_or_model: a pipeline or its denoiser.
        fingerprint: ``ModelFingerprint.of(pipe_or_model)`` when the caller already has it.
    """
    fingerprint = fingerprint if fingerprint is not None else ModelFingerprint.of(pipe_or_model)
    return next((p for p in shipped_presets() if p.fingerprint.matches(pipe_or_model, fingerprint)), None)


def _explicit(layer_map: LayerMap | str | Path) -> LayerMap:
    if isinstance(layer_map, LayerMap):
        return layer_map
    if isinstance(layer_map, (str, Path)):
        if Path(layer_map).is_file():
            return LayerMap.load(layer_map)
        named = {preset.name: preset for preset in shipped_presets()}
        if str(layer_map) in named:
            return named[str(layer_map)]
        raise LayerMapError(
            f"layer_map {str(layer_map)!r} is neither a layer map file nor a shipped preset "
            f"(presets: {', '.join(sorted(named))})"
        )
    raise LayerMapError(f"layer_map must be a LayerMap, a file path or a preset name, got {type(layer_map).__name__}")


def resolve_layer_map(
    pipe_or_model: Any, layer_map: LayerMap | str | Path | None = None, *, strict: bool = False
) -> ResolvedLayerMap:
    """Pick the layer map for a pipeline (explicit > matching preset > all layers).

    Args:
        pipe_or_model: a diffusers pipeline or its denoiser.
        layer_map: an explicit map, map file or preset name (optional).
        strict: raise instead of falling back to all text-attention layers.

    Raises:
        LayerMapError: an explicit map that does not fit the model, or no map at all with ``strict``.
        UnsupportedArchitectureError: the denoiser is unknown.
    """
    denoiser, adapter = resolve_adapter(pipe_or_model)
    fingerprint = ModelFingerprint.of(denoiser)
    if layer_map is not None:
        chosen = _explicit(layer_map)
        notes = ()
        if not chosen.fingerprint.matches(denoiser, fingerprint):
            notes = (
                f"layer map {chosen.name!r} was made for {chosen.fingerprint.short()}, this model is "
                f"{fingerprint.short()}; its layer names exist here, so it is used as given",
            )
        return ResolvedLayerMap(chosen, "explicit", chosen.select(denoiser), notes)
    preset = find_preset(denoiser, fingerprint)
    if preset is not None:
        return ResolvedLayerMap(preset, "preset", preset.select(denoiser))
    layers = tuple(adapter.discover(denoiser))
    if strict:
        raise LayerMapError(
            f"no layer map for {fingerprint.short()} and strict=True: pass layer_map= (a LayerMap, a map file "
            f"from `safetext localize`, or a preset name), or strict=False to patch all {len(layers)} "
            "text-attention layers"
        )
    fallback = LayerMap(
        name="all-text-layers",
        family=adapter.family,
        fingerprint=fingerprint,
        layers=tuple(layer.name for layer in layers),
        start_fraction=0.0,
        notes="fallback: no localized map for this model",
    )
    from safetext.patching.inspection import fallback_reason

    try:
        reason = fallback_reason(denoiser, fingerprint)
    except Exception as error:  # the explanation must never stop a fallback that works
        reason = f"comparing with the shipped presets failed ({type(error).__name__}: {error})"
    note = (
        f"no layer map for {fingerprint.short()}: patched all {len(layers)} text-attention layers from step 0, "
        "which changes more of the image than a localized map; run `safetext localize` and pass the result "
        f"as layer_map (`safetext inspect` shows why: {reason})"
    )
    return ResolvedLayerMap(fallback, "fallback", layers, (note,))
