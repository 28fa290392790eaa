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

__all__ = [
    "BackendError",
    "LayerMapError",
    "PatchError",
    "PolicyError",
    "PolicyViolation",
    "SafetextError",
    "UnsupportedArchitectureError",
    "__version__",
]
