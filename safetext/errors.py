"""Exception hierarchy: one root, specific subclasses that also subclass the matching builtin.

Every message states the bad value and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from safetext.policy.verdict import Verdict


class SafetextError(Exception):
    """Root of every error raised by safetext."""


class PolicyError(SafetextError, ValueError):
    """A policy file, policy option or scanned input is invalid."""


class BackendError(SafetextError, ValueError):
    """A classifier or OCR backend is unknown, not installed or failed to load."""


class UnsupportedArchitectureError(SafetextError, TypeError):
    """The pipeline or denoiser is not one safetext knows how to patch."""


class PatchError(SafetextError, RuntimeError):
    """The K/V patch cannot be applied (fused projections, missing layers, bad layer map)."""


class PatchNotAppliedError(PatchError):
    """The K/V patch did not act on every patched step and layer (a bypassed hook, a compiled module, no step
    to patch), so the call must not claim a neutralization. Raised before the image is returned."""


class LayerMapError(SafetextError, ValueError):
    """A layer map does not fit the model it is applied to, or its file is invalid."""


class PolicyViolation(SafetextError):
    """A request was refused by the policy (action ``block``). Carries the verdict."""

    def __init__(self, message: str, verdict: "Verdict | Any") -> None:
        super().__init__(message)
        self.verdict = verdict
