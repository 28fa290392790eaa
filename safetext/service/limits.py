"""Request limits of the HTTP service and the request/response bodies they shape.

Every number a client controls is bounded here: body size (413), prompt length, steps, image size,
images per request, guidance scale and seed (422). The bodies are pydantic models built for one
:class:`ServiceLimits`, so the OpenAPI schema at ``/docs`` shows the operator's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Largest seed accepted (``torch.Generator.manual_seed`` takes a signed 64-bit value).
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for.

    Args:
        max_body_bytes: largest request body; bigger bodies get 413 before they are parsed.
        max_prompt_chars: longest prompt.
        max_steps: most denoising steps per request.
        default_steps: steps when the request names none.
        max_width, max_height: largest image size in pixels.
        size_multiple: width and height must be multiples of this (the pipeline's constraint).
        max_images: most images per request.
        max_guidance_scale: largest classifier-free guidance scale.
    """

    max_body_bytes: int = 16_384
    max_prompt_chars: int = 1_000
    max_steps: int = 50
    default_steps: int = 20
    max_width: int = 512
    max_height: int = 512
    size_multiple: int = 8
    max_images: int = 4
    max_guidance_scale: float = 20.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_prompt_chars", "max_steps", "default_steps", "max_width",
                     "max_height", "size_multiple", "max_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServiceLimits.{name} must be a positive integer, got {value!r}")
        if self.default_steps > self.max_steps:
            raise ValueError(
                f"ServiceLimits.default_steps ({self.default_steps}) exceeds max_steps ({self.max_steps}); "
                "lower default_steps or raise max_steps"
            )
        for name in ("max_width", "max_height"):
            if getattr(self, name) < self.size_multiple:
                raise ValueError(
                    f"ServiceLimits.{name} ({getattr(self, name)}) is smaller than size_multiple "
                    f"({self.size_multiple}); no image size would be accepted"
                )
        if not self.max_guidance_scale >= 0:
            raise ValueError(f"ServiceLimits.max_guidance_scale must be >= 0, got {self.max_guidance_scale!r}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GeneratedImage(BaseModel):
    """One generated image."""

    png_base64: str = Field(description="The image as a base64-encoded PNG.")
    width: int
    height: int


class GenerateResponse(BaseModel):
    """Body of a successful ``POST /v1/generate``."""

    images: list[GeneratedImage]
    verdict: dict[str, Any] = Field(description="The request's verdict (see safetext.policy.verdict.Verdict).")
    seed: int
    steps: int
    seconds: float = Field(description="Generation time in the worker, excluding the time spent queued.")


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: str = Field(description="unauthorized | payload_too_large | invalid_request | policy_violation | overloaded | generation_failed")
    detail: str = Field(description="What went wrong and how to fix it.")
    verdict: dict[str, Any] | None = Field(default=None, description="The verdict, for policy_violation.")


def build_request_models(limits: ServiceLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The ``POST /v1/generate`` and ``POST /v1/scan`` body models with ``limits`` as their bounds.

    Args:
        limits: the service's limits.

    Returns:
        ``(GenerateRequest, ScanRequest)``: frozen pydantic model classes that refuse unknown fields
        and values of the wrong JSON type. ``GenerateRequest`` has ``prompt``, ``seed``, ``steps``,
        ``guidance_scale``, ``width``, ``height`` and ``num_images``; ``ScanRequest`` has ``prompt``.
    """
    m = limits.size_multiple

    class ScanRequest(_Body):
        """Body of ``POST /v1/scan``."""

        prompt: str = Field(min_length=1, max_length=limits.max_prompt_chars, description="The prompt to scan.")

    class GenerateRequest(_Body):
        """Body of ``POST /v1/generate``."""

        prompt: str = Field(min_length=1, max_length=limits.max_prompt_chars, description="The prompt.")
        seed: int = Field(default=0, ge=0, le=MAX_SEED, description="Seed of the initial noise.")
        steps: int = Field(default=limits.default_steps, ge=1, le=limits.max_steps, description="Denoising steps.")
        guidance_scale: float | None = Field(
            default=None, ge=0.0, le=limits.max_guidance_scale, description="CFG scale (default: the pipeline's)."
        )
        width: int | None = Field(
            default=None, ge=m, le=limits.max_width, multiple_of=m, description="Image width (default: the model's)."
        )
        height: int | None = Field(
            default=None, ge=m, le=limits.max_height, multiple_of=m, description="Image height (default: the model's)."
        )
        num_images: int = Field(default=1, ge=1, le=limits.max_images, description="Images to generate.")

        def pipeline_kwargs(self) -> dict[str, Any]:
            """Keyword arguments for the generator call (the seed becomes a ``torch.Generator`` later)."""
            kwargs: dict[str, Any] = {"num_inference_steps": self.steps, "num_images_per_prompt": self.num_images}
            for name in ("guidance_scale", "width", "height"):
                if getattr(self, name) is not None:
                    kwargs[name] = getattr(self, name)
            return kwargs

    return GenerateRequest, ScanRequest
