"""LayerMap: which text-attention layers of which model to patch, and from which step.

A layer map is a small reviewed file (YAML or JSON) that ties a localization result to one model
architecture through an identity fingerprint (denoiser class + hash of its parameter names and
shapes, see :class:`ModelFingerprint`; weights and config spellings do not enter, so a fine-tune of a
known model gets the same map)::

    name: sdxl-base-1.0
    family: unet_cross
    fingerprint:
      denoiser_class: UNet2DConditionModel
      structure_sha256: 5c1d...
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
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from safetext.errors import LayerMapError
from safetext.patching.adapters.base import TextAttentionLayer
from safetext.patching.layers import find_denoiser, resolve_adapter, select_layers


def _canonical(value: Any) -> Any:
    """JSON-stable form of a config value (tuples as lists, mappings as sorted dicts)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


#: Path segments of parameters that adapters add next to a denoiser's own weights: peft tuners
#: (LoRA, DoRA, LoHa, LoKr, OFT, BOFT, IA3, VeRA), attention processors holding their own weights
#: (IP-Adapter ``to_k_ip``), IP-Adapter image projections, and the fused QKV/KV Linears that
#: ``fuse_qkv_projections`` adds (a fused model keeps its identity; the patch refuses it with its own error).
_ADAPTER_SEGMENT = re.compile(
    r"^(lora_.*|hada_.*|lokr_.*|oft_.*|boft_.*|ia3_.*|vera_.*|processor|image_projection_layers|"
    r"to_qkv|to_kv|to_added_qkv)$"
)
#: Path segments that wrap the original module, dropped from names: peft's ``base_layer``, and ``_orig_mod`` of
#: a submodule compiled out of place and assigned back (``torch.compile``'s ``OptimizedModule``).
_WRAPPER_SEGMENTS = frozenset({"base_layer", "_orig_mod"})


def normalized_parameter_name(name: str) -> str | None:
    """The name a parameter has in the bare denoiser, or None for an adapter-only parameter.

    ``to_k.base_layer.weight`` (peft LoRA wrapping ``to_k``) becomes ``to_k.weight``, as does
    ``to_k._orig_mod.weight`` (a compiled module assigned back);
    ``to_k.lora_A.default.weight`` and ``attn2.processor.to_k_ip.0.weight`` become None.
    """
    parts = name.split(".")
    if any(_ADAPTER_SEGMENT.match(part) for part in parts):
        return None
    return ".".join(part for part in parts if part not in _WRAPPER_SEGMENTS)


def denoiser_structure(pipe_or_model: Any) -> dict[str, Any]:
    """What a layer map depends on: the denoiser class, its parameters' names and shapes, its attention heads.

    Weights, dtypes and devices do not enter (a model on the ``meta`` device has the same structure as
    the loaded one), nor do config options that change no parameter (``sample_size``,
    ``upcast_attention``, null-vs-default spellings, private ``_`` keys, keys another diffusers release
    adds with their default). Adapter parameters are left out (:func:`normalized_parameter_name`).

    Returns:
        ``{"class": str, "parameters": {name: shape}, "heads": {attention module: heads}}``.
    """
    denoiser = find_denoiser(pipe_or_model)
    parameters: dict[str, list[int]] = {}
    for name, parameter in denoiser.named_parameters(remove_duplicate=False):
        normalized = normalized_parameter_name(name)
        if normalized is not None:
            parameters[normalized] = [int(size) for size in parameter.shape]
    heads: dict[str, int] = {}
    for name, module in denoiser.named_modules():
        normalized = normalized_parameter_name(name) if name else name
        if normalized is not None and hasattr(module, "to_q") and isinstance(getattr(module, "heads", None), int):
            heads[normalized] = int(module.heads)
    return {
        "class": type(denoiser).__name__,
        "parameters": dict(sorted(parameters.items())),
        "heads": dict(sorted(heads.items())),
    }


def structure_sha256(structure: dict[str, Any]) -> str:
    """sha256 of a :func:`denoiser_structure` (canonical JSON)."""
    return hashlib.sha256(json.dumps(structure, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def legacy_config_sha256(pipe_or_model: Any) -> str:
    """The identity hash of layer maps written before ``structure_sha256``: sha256 of the non-default config.

    Kept only to match (and migrate) old map files: it changes with null-vs-default spellings, which
    the structure hash does not.
    """
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
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ModelFingerprint(BaseModel):
    """Identity of a denoiser architecture: its class and a hash of its parameter structure.

    ``structure_sha256`` hashes :func:`denoiser_structure`: every parameter's name and shape (adapter
    parameters such as LoRA's left out, peft's ``base_layer`` unwrapped) and every attention module's
    head count. A model loaded from the Hub, one built from the same config on the ``meta`` device,
    its fine-tunes (other weights, other ``sample_size``) and the config as another diffusers release
    writes it (nulls for defaults, added defaulted keys) all share it; a model with another parameter
    layout (SDXL base vs refiner, SD3 medium vs 3.5 medium) does not.

    ``config_sha256`` is the hash of map files written before ``structure_sha256`` existed (a hash of
    the non-default config values); such files still load and match the models they matched before,
    and :meth:`LayerMap.migrate` rewrites them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    denoiser_class: str = Field(description="Class name of the denoiser, e.g. 'UNet2DConditionModel'.")
    structure_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the denoiser's parameter structure."
    )
    config_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="legacy: sha256 of the non-default config values."
    )

    @model_validator(mode="after")
    def _has_a_hash(self) -> ModelFingerprint:
        if self.structure_sha256 is None and self.config_sha256 is None:
            raise ValueError("a fingerprint needs structure_sha256 (or, in old files, config_sha256)")
        return self

    @classmethod
    def of(cls, pipe_or_model: Any) -> ModelFingerprint:
        """Fingerprint of a pipeline's denoiser (or of the denoiser itself)."""
        structure = denoiser_structure(pipe_or_model)
        return cls(denoiser_class=structure["class"], structure_sha256=structure_sha256(structure))

    @property
    def is_legacy(self) -> bool:
        """True for a fingerprint from an old map file (only ``config_sha256``)."""
        return self.structure_sha256 is None

    def matches(self, pipe_or_model: Any, fingerprint: ModelFingerprint | None = None) -> bool:
        """True when the model (a pipeline or denoiser) has this identity.

        Args:
            pipe_or_model: the model.
            fingerprint: ``ModelFingerprint.of(pipe_or_model)`` when the caller already has it.
        """
        denoiser = find_denoiser(pipe_or_model)
        if type(denoiser).__name__ != self.denoiser_class:
            return False
        if self.structure_sha256 is not None:
            own = fingerprint if fingerprint is not None else ModelFingerprint.of(denoiser)
            return own.structure_sha256 == self.structure_sha256
        return legacy_config_sha256(denoiser) == self.config_sha256

    def short(self) -> str:
        """``Class@<first 12 hex digits>`` (``Class@config:<...>`` for a legacy fingerprint)."""
        if self.structure_sha256 is not None:
            return f"{self.denoiser_class}@{self.structure_sha256[:12]}"
        return f"{self.denoiser_class}@config:{self.config_sha256[:12]}"


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
        ranking: further layers in the localizer's order of influence (most first), tried by the
            verification escalation step ``next_layers``; None when the map carries none.
        replacement_legibility: per benign replacement word, how legibly this model writes it as a
            replacement (share of guarded generations read exactly, in [0, 1]); the generator then
            prefers, among the policy's benign words of a span's length, the words read best (see
            :meth:`~safetext.policy.replacement.Replacer.ranked`). None: the policy's own choice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    fingerprint: ModelFingerprint
    layers: tuple[str, ...] = Field(min_length=1)
    start_fraction: float = Field(ge=0.0, le=1.0)
    notes: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    ranking: tuple[str, ...] | None = None
    replacement_legibility: dict[str, float] | None = None

    @field_validator("replacement_legibility")
    @classmethod
    def _legibility_in_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        bad = {word: score for word, score in value.items() if not 0.0 <= float(score) <= 1.0}
        if bad:
            raise ValueError(f"replacement_legibility scores must be in [0, 1], got {bad}")
        return {word.lower(): float(score) for word, score in value.items()}

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
        return self.fingerprint.matches(pipe_or_model)

    def migrate(self, pipe_or_model: Any) -> LayerMap:
        """This map with the current fingerprint (``structure_sha256``) of the model it was made for.

        A map file written before ``structure_sha256`` existed carries only ``config_sha256``; given a
        model that matches it (the model the map was made for, or a config of it built on the ``meta``
        device), this returns the same map with the model's structure fingerprint, to ``save`` over the
        old file. A map that already has one is returned unchanged.

        Raises:
            LayerMapError: the model does not match the map's fingerprint.
        """
        if not self.fingerprint.is_legacy:
            return self
        if not self.fingerprint.matches(pipe_or_model):
            raise LayerMapError(
                f"layer map {self.name!r} was made for {self.fingerprint.short()}, which this model is not "
                f"({ModelFingerprint.of(pipe_or_model).short()}); migrate it with the model it was made for"
            )
        return self.model_copy(update={"fingerprint": ModelFingerprint.of(pipe_or_model)})

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
        return self.model_dump(mode="json", exclude_none=True)

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
