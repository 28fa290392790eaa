"""Architecture adapters, one file per family.

The built-in adapter modules are listed in :data:`BUILTIN_ADAPTER_MODULES`; the registry imports them
on first use (each ends with its ``register_adapter`` call), so importing this package stays cheap and
free of import cycles.
"""

from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer, bias_from_padding_mask

BUILTIN_ADAPTER_MODULES: tuple[str, ...] = (
    "safetext.patching.adapters.unet_cross",
    "safetext.patching.adapters.added_kv",
    "safetext.patching.adapters.pixart",
    "safetext.patching.adapters.joint",
    "safetext.patching.adapters.flux",
)

__all__ = ["BUILTIN_ADAPTER_MODULES", "ArchitectureAdapter", "TextAttentionLayer", "bias_from_padding_mask"]
