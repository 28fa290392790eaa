"""LayerMap: which text-attention layers of which model to patch, and from which step.

A layer map is a small reviewed file (YAML or JSON) that ties a localization result to one model
architecture through an identity fingerprint (denoiser class + hash of its config; weights do not
enter, so a fine-tune of a known model gets the same map)::

    name: sdxl-base-1.0
    family: unet_cross
    fingerprint:
      denoiser_class: UNet2DConditionModel
      config_sha256: 5c1d...
    layers:
      - up_blocks.0.attentions.2.transformer_blocks.1.attn2
    start_fraction: 0.08

    >>> from safetext.patching import LayerMap
    >>> layer_map = LayerMap.for_model(pipe, layers=[55, 56, 57], start_fraction=4 / 50, name="my-sdxl")
    >>> layer_map.save("my-sdxl.yaml")
    >>> LayerMap.load("my-sdxl.yaml") == layer_map
    True

Errors in a file name ``file:line:column``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safetext.errors import LayerMapError
from safetext.patching.adapters.base import TextAttentionLayer
from safetext.patching.layers import find_denoiser, resolve_adapter, select_layers


def _canonical(value: Any) -> Any:
    """JSON-stable form of a config value (tuples as lists, mappings as sorted dicts)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class ModelFingerprint(BaseModel):
    """Identity of a denoiser architecture: its class and a hash of its (non-default) config values.

    Config entries equal to the class's ``__init__`` defaults and private ``_``-prefixed entries
    (``_name_or_path``, ``_diffusers_version``) are left out, so the hash is the same for a model loaded
    from the Hub, one built from the same config dict, and across diffusers releases that add new
    defaulted options.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    denoiser_class: str = Field(description="Class name of the denoiser, e.g. 'UNet2DConditionModel'.")
    config_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the canonical non-default config.")

    @classmethod
    def of(cls, pipe_or_model: Any) -> ModelFingerprint:
        """Fingerprint of a pipeline's denoiser (or of the denoiser itself)."""
        denoiser = find_denoiser(pipe_or_model)
        config = dict(getattr(denoiser, "config", {}) or {})
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(denoiser).__init__).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        kept = {}
        for key, value in config.items():
            if key.startswith("_"):
                continue
            if key in defaults and _canonical(defaults[key]) == _canonical(value):
                continue
            kept[key] = _canonical(value)
        digest = hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return cls(denoiser_class=type(denoiser).__name__, config_sha256=digest)

    def short(self) -> str:
        return f"{self.denoiser_class}@{self.config_sha256[:12]}"


class LayerMap(BaseModel):
    """The layers to patch for one model architecture, and the start of patching.

    Attributes:
        name: identifier shown in verdicts and logs (e.g. ``"sdxl-base-1.0"``).
        family: adapter family of the model (``unet_cross``, ``added_kv``, ``pixart``, ``sd3_joint``, ``flux``).
        fingerprint: the model identity the map was made for.
        layers: attention-module names, forward order (see :func:`~safetext.patching.discover_text_layers`).
        start_fraction: first patched step as a fraction of the schedule (patching starts at step
            ``ceil(start_fraction * num_inference_steps)``).
        notes: free text (provenance, caveats).
        metrics: localization or benchmark numbers backing the map (name -> value).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    fingerprint: ModelFingerprint
    layers: tuple[str, ...] = Field(min_length=1)
    start_fraction: float = Field(ge=0.0, le=1.0)
    notes: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def for_model(
        cls,
        pipe_or_model: Any,
        layers: Sequence[str | int],
        start_fraction: float,
        *,
        name: str = "custom",
        notes: str = "",
        metrics: dict[str, float] | None = None,
    ) -> LayerMap:
        """Build a map for a model from layer names or forward-order indices.

        Raises:
            LayerMapError: a layer the model lacks (the message lists the valid names).
        """
        denoiser, adapter = resolve_adapter(pipe_or_model)
        chosen = select_layers(adapter.discover(denoiser), list(layers))
        return cls(
            name=name,
            family=adapter.family,
            fingerprint=ModelFingerprint.of(denoiser),
            layers=tuple(layer.name for layer in chosen),
            start_fraction=start_fraction,
            notes=notes,
            metrics=dict(metrics or {}),
        )

    def matches(self, pipe_or_model: Any) -> bool:
        """True when the model has the fingerprint this map was made for."""
        return ModelFingerprint.of(pipe_or_model) == self.fingerprint

    def select(self, pipe_or_model: Any) -> tuple[TextAttentionLayer, ...]:
        """The model's layers named by this map.

        Raises:
            LayerMapError: the model lacks a named layer, or belongs to another adapter family.
        """
        denoiser, adapter = resolve_adapter(pipe_or_model)
        if adapter.family != self.family:
            raise LayerMapError(
                f"layer map {self.name!r} is for the {self.family!r} family but {type(denoiser).__name__} is "
                f"{adapter.family!r}; use a layer map made for this model (safetext localize)"
            )
        try:
            return select_layers(adapter.discover(denoiser), list(self.layers))
        except LayerMapError as error:
            raise LayerMapError(f"layer map {self.name!r}: {error}") from None

    # -- serialization -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        """Write the map as JSON (``.json``) or YAML (any other suffix)."""
        path = Path(path)
        path.write_text(self.to_json() if path.suffix.lower() == ".json" else self.to_yaml(), encoding="utf-8")
        return path

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> LayerMap:
        """Parse YAML (or JSON, a subset of YAML); errors name ``source:line:column``."""
        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
            raise LayerMapError(f"{where}: invalid YAML: {error.problem or error}") from None
        return cls._validate(data, text, source)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> LayerMap:
        """Parse JSON; errors name ``source:line:column``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise LayerMapError(f"{source}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
        return cls._validate(data, text, source)

    @classmethod
    def load(cls, path: str | Path) -> LayerMap:
        """Read a map from a ``.json`` or YAML file."""
        path = Path(path)
        if not path.is_file():
            raise LayerMapError(f"layer map file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        return cls.from_json(text, str(path)) if path.suffix.lower() == ".json" else cls.from_yaml(text, str(path))

    @classmethod
    def _validate(cls, data: Any, text: str, source: str) -> LayerMap:
        if not isinstance(data, dict):
            raise LayerMapError(f"{source}:1:1: a layer map must be a mapping with keys {sorted(cls.model_fields)}")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = error.errors()
            first = problems[0]
            line, column = _locate(text, first["loc"])
            field = ".".join(str(part) for part in first["loc"]) or "(root)"
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise LayerMapError(f"{source}:{line}:{column}: {field}: {first['msg']}{more}") from None


def _locate(text: str, loc: Sequence[Any]) -> tuple[int, int]:
    """1-based line/column of the YAML node at ``loc`` (or of its nearest existing parent)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return 1, 1
    if node is None:
        return 1, 1
    mark = node.start_mark
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            mark, node = match[0].start_mark, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark.line + 1, mark.column + 1
