"""The one registry of architecture adapters, keyed by denoiser class with duck-typed fallbacks.

Every adapter file ends with one :func:`register_adapter` call; :func:`get_adapter` finds the adapter
for a denoiser by walking its class hierarchy (so subclasses of a supported denoiser work), and when no
class is registered, asks each adapter whether the structure fits. Nothing else in safetext branches on
model classes.

    >>> from diffusers import UNet2DConditionModel
    >>> from safetext.patching import get_adapter
    >>> unet = UNet2DConditionModel(block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=8,
    ...     down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ...     layers_per_block=1, attention_head_dim=2)
    >>> get_adapter(unet).family
    'unet_cross'
"""

from __future__ import annotations

import importlib
import re
import threading

from torch import nn

from safetext.errors import UnsupportedArchitectureError
from safetext.patching.adapters import BUILTIN_ADAPTER_MODULES
from safetext.patching.adapters.base import ArchitectureAdapter

_FAMILY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ADAPTERS: dict[str, ArchitectureAdapter] = {}
_BY_CLASS: dict[str, list[str]] = {}
_LOCK = threading.Lock()


def register_adapter(adapter_cls: type[ArchitectureAdapter]) -> type[ArchitectureAdapter]:
    """Register an adapter class under its ``family`` and each of its ``denoiser_classes``.

    Args:
        adapter_cls: a concrete subclass of :class:`ArchitectureAdapter`.

    Returns:
        The class itself, so the call also works as a decorator.

    Raises:
        TypeError: the class is not an adapter, misses a required attribute, or its family is taken by
            another class.
    """
    if not (isinstance(adapter_cls, type) and issubclass(adapter_cls, ArchitectureAdapter)):
        raise TypeError(f"register_adapter expects an ArchitectureAdapter subclass, got {adapter_cls!r}")
    for attribute in ("family", "description", "denoiser_classes", "strategy"):
        if not hasattr(adapter_cls, attribute):
            raise TypeError(f"{adapter_cls.__name__} must define the class attribute {attribute!r}")
    family = adapter_cls.family
    if not _FAMILY_NAME.match(family):
        raise TypeError(f"adapter family {family!r} must be lower_snake_case (e.g. 'unet_cross')")
    if adapter_cls.strategy not in ("inject", "extra_rows"):
        raise TypeError(
            f"{adapter_cls.__name__}.strategy must be 'inject' or 'extra_rows', got {adapter_cls.strategy!r}"
        )
    if adapter_cls.strategy == "extra_rows" and not set(adapter_cls.prompt_inputs) <= set(adapter_cls.batched_inputs):
        raise TypeError(f"{adapter_cls.__name__}.prompt_inputs must be a subset of batched_inputs")
    with _LOCK:
        existing = _ADAPTERS.get(family)
        if existing is not None and type(existing).__qualname__ != adapter_cls.__qualname__:
            raise TypeError(f"adapter family {family!r} is already registered by {type(existing).__name__}")
        _ADAPTERS[family] = adapter_cls()
        for class_name in adapter_cls.denoiser_classes:
            families = _BY_CLASS.setdefault(class_name, [])
            if family not in families:
                families.append(family)
    return adapter_cls


def _load_builtin_adapters() -> None:
    for module in BUILTIN_ADAPTER_MODULES:
        importlib.import_module(module)  # each module registers its adapter on first import


def registered_adapters() -> dict[str, ArchitectureAdapter]:
    """Every registered adapter by family (the built-in ones are loaded on first use)."""
    _load_builtin_adapters()
    return dict(_ADAPTERS)


def supported_architectures() -> str:
    """A human-readable list of the supported families and their denoiser classes."""
    lines = []
    for family, adapter in sorted(registered_adapters().items()):
        lines.append(f"  - {family}: {adapter.description} ({', '.join(adapter.denoiser_classes)})")
    return "\n".join(lines)


def get_adapter(denoiser: nn.Module) -> ArchitectureAdapter:
    """The adapter that knows ``denoiser``'s text-attention layers.

    Looks up each class of the denoiser's MRO in the registry (several families may share a class,
    e.g. UNet2DConditionModel serves both ``unet_cross`` and ``added_kv``; the first whose structure
    matches wins), then falls back to asking every adapter whether the structure fits.

    Args:
        denoiser: a UNet or transformer denoiser module.

    Raises:
        UnsupportedArchitectureError: no adapter fits; the message lists what is supported.
    """
    adapters = registered_adapters()
    for cls in type(denoiser).__mro__:
        for family in _BY_CLASS.get(cls.__name__, ()):
            if adapters[family].matches(denoiser):
                return adapters[family]
    for adapter in adapters.values():
        if adapter.matches(denoiser):
            return adapter
    raise UnsupportedArchitectureError(
        f"safetext does not know where {type(denoiser).__name__} keeps the text keys/values, so it cannot "
        f"patch it. Supported denoisers:\n{supported_architectures()}\n"
        "To support another architecture, write an ArchitectureAdapter (see safetext/patching/adapters/) "
        "and register it with safetext.patching.register_adapter."
    )
