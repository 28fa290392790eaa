"""GlyphPipeline: safetext's embedded text-to-image model, a genuine diffusers pipeline.

A pixel-space ``UNet2DConditionModel`` with cross-attention works on a 2x2 space-to-depth view of the
image (3 -> 12 channels, plus 2 coordinate channels), conditioned on a byte-level ``T5EncoderModel``
(ByT5 tokenizer, no vocabulary file). A stock ``DDIMScheduler`` (v-prediction, trailing spacing) and
classifier-free guidance with the batch laid out ``[uncond | cond]``, as in the Stable Diffusion
pipelines, so safetext patches it through exactly the same code path as SDXL.

    >>> from safetext.models.glyph import load_glyph_pipeline
    >>> pipe = load_glyph_pipeline()
    >>> image = pipe('A red sign that says "hello".', generator=torch.Generator().manual_seed(0)).images[0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import ByT5Tokenizer, T5EncoderModel

SPACE_TO_DEPTH = 2
COORD_CHANNELS = 2


def _axis(n: int, reference: int | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if reference is None or reference == n:
        return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
    half = (reference - 1) / 2
    return (torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2).div(half).to(dtype)


def coordinate_channels(
    batch: int,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    reference: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Two channels holding x and y, centred on the image: lets cross-attention place letter k at column k.

    Without ``reference`` the image spans [-1, 1]. With ``reference`` (the sign's size in the same
    units) the centred sign spans [-1, 1] and a larger canvas extends beyond, so a model trained on
    bare signs finds its letter positions unchanged in the middle of a scene.
    """
    ref_h, ref_w = reference if reference is not None else (None, None)
    ys, xs = _axis(height, ref_h, device, dtype), _axis(width, ref_w, device, dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, -1, -1, -1)


def denoiser_input(sample: torch.Tensor, sign_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Image batch (B, 3, H, W) -> UNet input (B, 12 + 2, H/2, W/2).

    ``sign_size``: (height, width) in pixels of the sign the coordinates are relative to (default: the image).
    """
    x = F.pixel_unshuffle(sample, SPACE_TO_DEPTH)
    reference = None if sign_size is None else (sign_size[0] // SPACE_TO_DEPTH, sign_size[1] // SPACE_TO_DEPTH)
    coords = coordinate_channels(x.shape[0], x.shape[2], x.shape[3], x.device, x.dtype, reference)
    return torch.cat([x, coords], dim=1)


def denoiser_output(out: torch.Tensor) -> torch.Tensor:
    """UNet output (B, 12, H/2, W/2) -> image-space prediction (B, 3, H, W)."""
    return F.pixel_shuffle(out, SPACE_TO_DEPTH)


class GlyphPipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """Text-to-image pipeline that writes the word named in the prompt on a coloured sign.

    Args:
        unet: the pixel-space denoiser (space-to-depth input, cross-attention to the text encoder).
        text_encoder: byte-level T5 encoder.
        tokenizer: ``ByT5Tokenizer`` (``model_max_length`` sets the padded prompt length).
        scheduler: a diffusers scheduler (DDIM, v-prediction, trailing spacing as shipped).
        sign_size: ``[height, width]`` of the sign in pixels when the model draws it in the middle of a
            larger scene (saved in ``model_index.json``); ``None`` when the sign fills the image.
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: T5EncoderModel,
        tokenizer: ByT5Tokenizer,
        scheduler: DDIMScheduler,
        sign_size: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        if sign_size is not None and (len(sign_size) != 2 or any(int(v) <= 0 for v in sign_size)):
            raise ValueError(f"sign_size must be [height, width] in pixels, got {sign_size!r}")
        self.register_to_config(sign_size=None if sign_size is None else [int(v) for v in sign_size])

    @property
    def sign_size(self) -> tuple[int, int]:
        """(height, width) of the sign in pixels: the whole default image unless the model draws scenes."""
        size = getattr(self.config, "sign_size", None)
        return tuple(size) if size else self.default_size

    def sign_box(self, height: int | None = None, width: int | None = None, margin: int = 0) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the sign, centred on a ``height`` x ``width`` image, grown by ``margin``."""
        from safetext.models.glyph.data import sign_box

        default_h, default_w = self.default_size
        return sign_box((height or default_h, width or default_w), self.sign_size, margin)

    @property
    def default_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return h * SPACE_TO_DEPTH, w * SPACE_TO_DEPTH

    def encode_prompt(self, prompt: list[str], device: torch.device) -> torch.Tensor:
        """Encode prompts to (B, L, D) hidden states, padded to the tokenizer's ``model_max_length``."""
        tokens = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = self.text_encoder(
            input_ids=tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device)
        )
        return out.last_hidden_state.to(self.unet.dtype)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ("latents",),
    ) -> ImagePipelineOutput | tuple[Any]:
        """Generate sign images.

        Args:
            prompt: the prompt or prompts (e.g. ``'A red sign that says "hello".'``).
            negative_prompt: prompt(s) for the unconditional branch of CFG (default: empty).
            num_inference_steps: denoising steps (20 is the shipped default).
            guidance_scale: CFG scale; <= 1 disables CFG (no unconditional rows). The default 1.5 reads
                best by OCR on the shipped weights; 3 and above over-saturate the letters.
            num_images_per_prompt: images per prompt (batch is prompt-major).
            generator: torch generator(s) for the initial noise.
            latents: optional initial noise (B, 3, H, W).
            height, width: image size (default: the size the model was trained at).
            prompt_embeds, negative_prompt_embeds: precomputed text encoder states.
            output_type: ``"pil"``, ``"np"`` (B, H, W, 3 float in [0, 1]) or ``"pt"`` (B, 3, H, W).
            return_dict: return an ``ImagePipelineOutput`` (default) or a tuple.
            callback_on_step_end: diffusers' step callback, ``callback(pipe, step_index, timestep,
                callback_kwargs) -> dict``, called after every scheduler step; a ``latents`` entry in the
                dict it returns replaces the current latents.
            callback_on_step_end_tensor_inputs: tensors passed in ``callback_kwargs`` (only ``latents``).
        """
        if prompt is None and prompt_embeds is None:
            raise ValueError("pass `prompt` or `prompt_embeds`")
        unknown = sorted(set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs))
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {unknown} are not available; choose from {list(self._callback_tensor_inputs)}"
            )
        device = self._execution_device
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds = self.encode_prompt(prompts, device)
        batch = prompt_embeds.shape[0]
        do_cfg = guidance_scale > 1.0
        if do_cfg and negative_prompt_embeds is None:
            negs = negative_prompt if negative_prompt is not None else ""
            negs = [negs] * batch if isinstance(negs, str) else list(negs)
            if len(negs) != batch:
                raise ValueError(f"negative_prompt has {len(negs)} entries for {batch} prompts")
            negative_prompt_embeds = self.encode_prompt(negs, device)
        prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        if do_cfg:
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        else:
            embeds = prompt_embeds

        default_h, default_w = self.default_size
        height, width = height or default_h, width or default_w
        if height % (2 * SPACE_TO_DEPTH * 2) or width % (2 * SPACE_TO_DEPTH * 2):
            raise ValueError(f"height and width must be multiples of 8, got {height}x{width}")
        n = batch * num_images_per_prompt
        shape = (n, 3, height, width)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents * self.scheduler.init_noise_sigma

        sign_reference = tuple(self.config.sign_size) if getattr(self.config, "sign_size", None) else None
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            out = self.unet(denoiser_input(model_in, sign_reference), t, encoder_hidden_states=embeds).sample
            pred = denoiser_output(out)
            if do_cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents).prev_sample
            if callback_on_step_end is not None:
                tensors = {"latents": latents}
                callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                latents = callback_on_step_end(self, i, t, callback_kwargs).pop("latents", latents)

        image = (latents / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            images: Any = image
        elif output_type in ("np", "pil"):
            images = image.permute(0, 2, 3, 1).float().cpu().numpy()
            if output_type == "pil":
                images = [Image.fromarray((im * 255).round().astype(np.uint8)) for im in images]
        else:
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
