"""How each supported pipeline turns an (image, caption) pair into a denoiser training step.

LoRA training needs four things from a pipeline: the image size the denoiser was trained at, the
prompt conditioning exactly as the pipeline computes it at inference, the clean sample the diffusion
runs on (VAE latents, or pixels), and the denoiser's prediction for a noisy sample. A
:class:`DenoisingObjective` supplies them for one family of pipelines; families register with one
:func:`register_objective` call and are found by pipeline class (along the MRO).

Built in:

* ``sd1x_latent``: ``StableDiffusionPipeline`` (SD 1.x / 2.x): VAE latents, CLIP prompt embeddings.
* ``glyph_pixel``: safetext's ``GlyphPipeline``: pixel space through its 2x2 space-to-depth helpers.

SDXL (added time/text conditioning), SD3/Flux (flow matching) and other pipelines raise
:class:`~safetext.errors.UnsupportedArchitectureError` naming the supported ones.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from safetext.errors import UnsupportedArchitectureError

_OBJECTIVES: dict[str, "DenoisingObjective"] = {}
_LOCK = threading.Lock()


class DenoisingObjective(ABC):
    """Base class of the per-family training objectives (reference implementation: :class:`SD1xLatentObjective`).

    Attributes:
        family: registry key, e.g. ``"sd1x_latent"``.
        pipeline_classes: pipeline class names served (looked up along the pipeline's MRO).
        description: one line naming the pipelines (shown in error messages).
    """

    family: ClassVar[str]
    pipeline_classes: ClassVar[tuple[str, ...]]
    description: ClassVar[str]

    def check(self, pipe: Any) -> None:
        """Raise :class:`UnsupportedArchitectureError` when ``pipe`` does not fit the family after all."""

    @abstractmethod
    def default_size(self, pipe: Any) -> tuple[int, int]:
        """``(height, width)`` in pixels of the images the denoiser is trained on."""

    @abstractmethod
    def encode_prompts(self, pipe: Any, prompts: list[str]) -> torch.Tensor:
        """Prompt conditioning ``(B, L, D)`` as the pipeline computes it for the conditional branch."""

    @abstractmethod
    def encode_images(self, pipe: Any, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The clean diffusion sample for images ``(B, 3, H, W)`` in [0, 1]."""

    @abstractmethod
    def predict(self, pipe: Any, noisy: torch.Tensor, timesteps: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """The denoiser's prediction (shaped like the sample) for ``noisy`` at ``timesteps``."""


def register_objective(objective_cls: type[DenoisingObjective]) -> type[DenoisingObjective]:
    """Register a :class:`DenoisingObjective` subclass for its ``pipeline_classes``.

    Raises:
        TypeError: not a subclass, a class attribute is missing, or the family is taken by another class.
    """
    if not (isinstance(objective_cls, type) and issubclass(objective_cls, DenoisingObjective)):
        raise TypeError(f"register_objective expects a DenoisingObjective subclass, got {objective_cls!r}")
    for attribute in ("family", "pipeline_classes", "description"):
        if not hasattr(objective_cls, attribute):
            raise TypeError(f"{objective_cls.__name__} must define the class attribute {attribute!r}")
    with _LOCK:
        existing = _OBJECTIVES.get(objective_cls.family)
        if existing is not None and type(existing).__qualname__ != objective_cls.__qualname__:
            raise TypeError(f"objective family {objective_cls.family!r} is already registered by {type(existing).__name__}")
        _OBJECTIVES[objective_cls.family] = objective_cls()
    return objective_cls


def supported_pipelines() -> str:
    """Human-readable list of the pipelines LoRA training supports."""
    return "\n".join(
        f"  - {o.family}: {o.description} ({', '.join(o.pipeline_classes)})" for _, o in sorted(_OBJECTIVES.items())
    )


def get_objective(pipe: Any) -> DenoisingObjective:
    """The objective serving ``pipe``'s class (or a base class of it).

    Raises:
        UnsupportedArchitectureError: no registered family serves the pipeline; the message lists them.
    """
    for cls in type(pipe).__mro__:
        for objective in _OBJECTIVES.values():
            if cls.__name__ in objective.pipeline_classes:
                objective.check(pipe)
                return objective
    raise UnsupportedArchitectureError(
        f"LoRA training does not support {type(pipe).__name__}. Supported pipelines:\n{supported_pipelines()}\n"
        "To add one, subclass safetext.lora.objectives.DenoisingObjective and call register_objective."
    )


def _unet_device(pipe: Any) -> torch.device:
    return next(pipe.unet.parameters()).device


class SD1xLatentObjective(DenoisingObjective):
    """Stable Diffusion 1.x / 2.x: the UNet denoises VAE latents, conditioned on CLIP prompt embeddings."""

    family: ClassVar[str] = "sd1x_latent"
    pipeline_classes: ClassVar[tuple[str, ...]] = ("StableDiffusionPipeline",)
    description: ClassVar[str] = "Stable Diffusion 1.x/2.x latent UNet"

    def check(self, pipe: Any) -> None:
        if getattr(pipe.unet.config, "addition_embed_type", None) is not None:
            raise UnsupportedArchitectureError(
                f"{type(pipe).__name__}'s UNet needs added conditioning ({pipe.unet.config.addition_embed_type!r}), "
                f"which LoRA training does not provide. Supported pipelines:\n{supported_pipelines()}"
            )

    def default_size(self, pipe: Any) -> tuple[int, int]:
        size = pipe.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return h * pipe.vae_scale_factor, w * pipe.vae_scale_factor

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> torch.Tensor:
        embeds, _ = pipe.encode_prompt(prompts, _unet_device(pipe), 1, False)
        return embeds.to(pipe.unet.dtype)

    def encode_images(self, pipe: Any, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        vae = pipe.vae
        pixels = (pixels * 2 - 1).to(device=vae.device, dtype=vae.dtype)
        latents = vae.encode(pixels).latent_dist.sample(generator=generator)
        shift = getattr(vae.config, "shift_factor", None)
        if shift is not None:
            latents = latents - shift
        return (latents * vae.config.scaling_factor).to(pipe.unet.dtype)

    def predict(self, pipe: Any, noisy: torch.Tensor, timesteps: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        return pipe.unet(noisy, timesteps, encoder_hidden_states=conditioning).sample


class GlyphPixelObjective(DenoisingObjective):
    """safetext's glyph model: pixel-space UNet on a 2x2 space-to-depth view, byte-level T5 prompts."""

    family: ClassVar[str] = "glyph_pixel"
    pipeline_classes: ClassVar[tuple[str, ...]] = ("GlyphPipeline",)
    description: ClassVar[str] = "safetext's embedded glyph model (pixel-space UNet)"

    def default_size(self, pipe: Any) -> tuple[int, int]:
        return pipe.default_size

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> torch.Tensor:
        return pipe.encode_prompt(prompts, _unet_device(pipe))

    def encode_images(self, pipe: Any, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return (pixels * 2 - 1).to(device=_unet_device(pipe), dtype=pipe.unet.dtype)

    def predict(self, pipe: Any, noisy: torch.Tensor, timesteps: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        from safetext.models.glyph.pipeline import denoiser_input, denoiser_output

        sign_size = getattr(pipe.config, "sign_size", None)
        return denoiser_output(
            pipe.unet(denoiser_input(noisy, sign_size), timesteps, encoder_hidden_states=conditioning).sample
        )


register_objective(SD1xLatentObjective)
register_objective(GlyphPixelObjective)
