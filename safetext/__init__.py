"""safetext: keep slurs and profanity out of the text diffusion pipelines write into images."""

import logging

from safetext.errors import (
    BackendError,
    LayerMapError,
    PatchError,
    PolicyError,
    PolicyViolation,
    SafetextError,
    UnsupportedArchitectureError,
)

logging.getLogger("safetext").addHandler(logging.NullHandler())

__version__ = "0.1.0"

def __getattr__(name: str):
    # Imported lazily: `import safetext` stays light (no torch/diffusers) for policy-only users.
    if name == "SafeTextGenerator":
        from safetext.generator import SafeTextGenerator

        return SafeTextGenerator
    raise AttributeError(f"module 'safetext' has no attribute {name!r}")


__all__ = [
    "SafeTextGenerator",
    "BackendError",
    "LayerMapError",
    "PatchError",
    "PolicyError",
    "PolicyViolation",
    "SafetextError",
    "UnsupportedArchitectureError",
    "__version__",
]
