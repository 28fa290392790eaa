"""Request limits of the HTTP service and the request/response bodies they shape.

Every number a client controls is bounded here: body size (413), prompt length, steps, image size,
images per request, guidance scale, seed and the request's compute (422). Limits left at ``None``
are derived from the served pipeline when the service starts (:meth:`ServiceLimits.resolve`): its
native image size and its default number of steps, so a model trained at 64x128 is not asked for
50 steps of four 512x512 images.

The compute of a request is ``steps x width x height x num_images`` ("step-pixels"): what one
request may cost the worker, whatever mix of the four it asks for.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Largest seed accepted (``torch.Generator.manual_seed`` takes a signed 64-bit value).
MAX_SEED = 2**63 - 1
#: Used when neither the operator nor the pipeline gives a value.
FALLBACK_SIZE = (512, 512)
FALLBACK_STEPS = 20
#: Derived defaults: images up to this factor of the native size per side, steps up to this factor of the
#: default, and a compute budget of this many default images (native size, default steps).
SIZE_FACTOR = 2
STEPS_FACTOR = 2
BUDGET_IMAGES = 2
#: Caps the request bodies keep even when a limit is derived at start (the derived limit is checked per request).
_HARD_MAX_STEPS = 1_000
_HARD_MAX_SIDE = 8_192
_HARD_MAX_IMAGES = 64


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for.

    ``None`` means "derived from the served pipeline at start" (see :meth:`resolve`).

    Args:
        max_body_bytes: largest request body; bigger bodies get 413 before they are parsed.
        max_prompt_chars: longest prompt.
        max_steps: most denoising steps per request (default: twice the pipeline's default steps).
        default_steps: steps when the request names none (default: the pipeline's default).
        max_width, max_height: largest image size in pixels (default: twice the native size per side).
        size_multiple: width and height must be multiples of this (the pipeline's constraint).
        max_images: most images per request.
        max_guidance_scale: largest classifier-free guidance scale.
        max_compute: most ``steps x width x height x num_images`` per request (default: two images of
            the native size at the default steps, so one request costs at most twice a default one).
        max_json_depth: deepest nesting of the JSON body.
    """

    max_body_bytes: int = 16_384
    max_prompt_chars: int = 1_000
    max_steps: int | None = None
    default_steps: int | None = None
    max_width: int | None = None
    max_height: int | None = None
    size_multiple: int = 8
    max_images: int = 4
    max_guidance_scale: float = 20.0
    max_compute: int | None = None
    max_json_depth: int = 32

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_prompt_chars", "max_steps", "default_steps", "max_width",
                     "max_height", "size_multiple", "max_images", "max_compute", "max_json_depth"):
            value = getattr(self, name)
            if value is None and name in _DERIVED:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServiceLimits.{name} must be a positive integer, got {value!r}")
        if self.default_steps is not None and self.max_steps is not None and self.default_steps > self.max_steps:
            raise ValueError(
                f"ServiceLimits.default_steps ({self.default_steps}) exceeds max_steps ({self.max_steps}); "
                "lower default_steps or raise max_steps"
            )
        for name in ("max_width", "max_height"):
            if getattr(self, name) is not None and getattr(self, name) < self.size_multiple:
                raise ValueError(
                    f"ServiceLimits.{name} ({getattr(self, name)}) is smaller than size_multiple "
                    f"({self.size_multiple}); no image size would be accepted"
                )
        if not self.max_guidance_scale >= 0:
            raise ValueError(f"ServiceLimits.max_guidance_scale must be >= 0, got {self.max_guidance_scale!r}")

    @property
    def resolved(self) -> bool:
        """True when no limit is left to derive from a pipeline."""
        return all(getattr(self, name) is not None for name in _DERIVED)

    def resolve(self, served: Any = None) -> "ServiceLimits":
        """These limits with every ``None`` filled in from ``served`` (a generator or a pipeline).

        Args:
            served: a ``SafeTextGenerator`` (its ``.pipe`` is read) or a diffusers pipeline; None or an
                object without size/steps information uses 512x512 and 20 steps.

        Returns:
            A :class:`ServiceLimits` without ``None``.

        Raises:
            ValueError: the derived values contradict the given ones (e.g. ``max_steps`` below the
                pipeline's default steps and no ``default_steps``).
        """
        height, width = native_size(served) or FALLBACK_SIZE
        steps = default_steps(served) or FALLBACK_STEPS
        m = self.size_multiple
        default = self.default_steps or (min(steps, self.max_steps) if self.max_steps else steps)
        values = {
            "default_steps": default,
            "max_steps": self.max_steps or max(STEPS_FACTOR * default, default),
            "max_width": self.max_width or max(m, SIZE_FACTOR * width // m * m),
            "max_height": self.max_height or max(m, SIZE_FACTOR * height // m * m),
            "max_compute": self.max_compute or BUDGET_IMAGES * default * width * height,
        }
        return dataclasses.replace(self, **values)

    def native(self, served: Any = None) -> tuple[int, int]:
        """(height, width) a request gets when it names no size."""
        return native_size(served) or FALLBACK_SIZE


_DERIVED = ("max_steps", "default_steps", "max_width", "max_height", "max_compute")


def _pipe_of(served: Any) -> Any:
    return getattr(served, "pipe", served)


def native_size(served: Any) -> tuple[int, int] | None:
    """(height, width) the pipeline generates by default, or None when it does not say.

    Read from ``pipe.default_size`` (the glyph model), else the denoiser's ``sample_size`` times the
    VAE scale factor (Stable Diffusion, SDXL, SD3, PixArt), else ``default_sample_size`` (Flux).
    """
    pipe = _pipe_of(served)
    if pipe is None:
        return None
    size = getattr(pipe, "default_size", None)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]), int(size[1])
    scale = getattr(pipe, "vae_scale_factor", None)
    if not isinstance(scale, int):
        return None
    sample = getattr(pipe, "default_sample_size", None)
    if sample is None:
        for name in ("unet", "transformer"):
            config = getattr(getattr(pipe, name, None), "config", None)
            sample = getattr(config, "sample_size", None)
            if sample is not None:
                break
    if isinstance(sample, int):
        return sample * scale, sample * scale
    if isinstance(sample, (tuple, list)) and len(sample) == 2:
        return int(sample[0]) * scale, int(sample[1]) * scale
    return None


def default_steps(served: Any) -> int | None:
    """The pipeline's default ``num_inference_steps`` (from its call signature), or None."""
    pipe = _pipe_of(served)
    known = getattr(pipe, "default_steps", None)  # PipelineFacts of a worker process
    if isinstance(known, int) and not isinstance(known, bool) and known > 0:
        return known
    call = getattr(pipe, "__call__", None)
    if call is None:
        return None
    try:
        parameter = inspect.signature(call).parameters.get("num_inference_steps")
    except (TypeError, ValueError):
        return None
    value = getattr(parameter, "default", None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def check_request(body: Any, limits: ServiceLimits, native: tuple[int, int]) -> list[dict[str, str]]:
    """The limits a generate request breaks, as ``{field, message, type}`` entries (empty when it fits).

    Checks what the body model could not know before the pipeline was loaded: the derived step and
    size limits and the compute budget.

    Args:
        body: the validated generate request.
        limits: resolved limits.
        native: (height, width) used when the request names no size.
    """
    errors = []
    for field, limit in (("steps", limits.max_steps), ("width", limits.max_width), ("height", limits.max_height),
                         ("num_images", limits.max_images)):
        value = getattr(body, field)
        if value is not None and limit is not None and value > limit:
            errors.append({"field": field, "message": f"Input should be less than or equal to {limit}",
                           "type": "less_than_equal"})
    if errors or limits.max_compute is None:
        return errors
    height = body.height or native[0]
    width = body.width or native[1]
    compute = body.steps * width * height * body.num_images
    if compute > limits.max_compute:
        errors.append({
            "field": "compute",
            "message": (
                f"steps x width x height x num_images = {body.steps} x {width} x {height} x {body.num_images} = "
                f"{compute:,} step-pixels is over the per-request compute budget of {limits.max_compute:,} "
                "(--max-compute); lower steps, size or num_images"
            ),
            "type": "compute_budget",
        })
    return errors


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

    error: str = Field(description="unauthorized | not_found | method_not_allowed | payload_too_large | invalid_request | "
                                   "policy_violation | rate_limited | overloaded | generation_failed")
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
        steps: int | None = Field(default=None, ge=1, le=limits.max_steps or _HARD_MAX_STEPS,
                                  description="Denoising steps (default: the service's default_steps).")
        guidance_scale: float | None = Field(
            default=None, ge=0.0, le=limits.max_guidance_scale, description="CFG scale (default: the pipeline's)."
        )
        width: int | None = Field(
            default=None, ge=m, le=limits.max_width or _HARD_MAX_SIDE, multiple_of=m,
            description="Image width (default: the model's).",
        )
        height: int | None = Field(
            default=None, ge=m, le=limits.max_height or _HARD_MAX_SIDE, multiple_of=m,
            description="Image height (default: the model's).",
        )
        num_images: int = Field(default=1, ge=1, le=min(limits.max_images, _HARD_MAX_IMAGES), description="Images to generate.")

        def with_defaults(self, resolved: ServiceLimits) -> "GenerateRequest":
            """This request with ``steps`` filled in from the resolved limits."""
            return self if self.steps is not None else self.model_copy(update={"steps": resolved.default_steps})

        def pipeline_kwargs(self) -> dict[str, Any]:
            """Keyword arguments for the generator call (the seed becomes a ``torch.Generator`` later)."""
            kwargs: dict[str, Any] = {"num_inference_steps": self.steps, "num_images_per_prompt": self.num_images}
            for name in ("guidance_scale", "width", "height"):
                if getattr(self, name) is not None:
                    kwargs[name] = getattr(self, name)
            return kwargs

    return GenerateRequest, ScanRequest
