"""Keep an edit inside a region of the image.

The K/V patch changes the written text through a few layers, but on a small model the letters' layout is
decided together with the rest of the picture, so an edit into a word of another length can move the
scene as well. A region pins the rest: after every denoising step, the edited run's latents outside the
region are replaced by the original run's latents of the same step (recorded while the original image is
generated), blended with a mask resized to the latents (area-averaged for latent-space models). Outside
the region the edited image is the original image; inside it, the text follows the target while seeing the
original surroundings at every step.

    >>> result = edit_text(pipe, prompt, "stop", "go", region="text")           # inside the pipeline's sign
    >>> result = edit_text(pipe, prompt, "stop", "go", region=(20, 16, 44, 112))  # (top, left, bottom, right)
    >>> result = edit_text(pipe, prompt, "stop", "go", region="auto")  # where the word drew attention

``region="auto"`` needs no coordinates: the box is found from the original run's cross-attention to the
source text (:mod:`safetext.edit.attention`).

Region blending needs a pipeline with a step callback (diffusers' ``callback_on_step_end``, or the legacy
``callback``) and 4-D ``(B, C, H, W)`` latents: the Stable Diffusion, SDXL, SD3, PixArt, DeepFloyd IF and
glyph pipelines; not Flux, which packs its latents.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from safetext.errors import SafetextError

#: What ``edit_text(region=...)`` accepts: ``"text"`` (inside the pipeline's declared sign), ``"auto"`` (where
#: the original run's cross-attention to the source text lands, see :mod:`safetext.edit.attention`), a
#: ``(top, left, bottom, right)`` pixel box, or an ``H x W`` mask with values in [0, 1] (1 = editable).
Region = Union[str, Sequence[int], np.ndarray, torch.Tensor]

#: ``region="text"`` is the pipeline's declared text region (its sign) shrunk by this many pixels on every
#: side: the letters are inside, and the sign's outline stays the original's. Letting the outline move too
#: (the sign plus a margin) costs most of an edit's SSIM on the glyph model: a sign shifted by a pixel
#: changes every edge around it, while the letters change only inside.
TEXT_REGION_INSET = 2


class RegionError(SafetextError, ValueError):
    """A region for an edit is malformed, does not fit the image, or the pipeline cannot blend."""


def step_callback_arguments(pipe: Any, callback: Any) -> dict[str, Any]:
    """Pipeline arguments that run ``callback(pipe, step, timestep, {"latents": ...}) -> dict`` after each step.

    Uses diffusers' ``callback_on_step_end`` where the pipeline has it; otherwise the legacy
    ``callback(step, timestep, latents)`` (PixArt-alpha, DeepFloyd IF), whose returned latents are copied into
    the pipeline's latents in place (the loop goes on with that tensor).

    Raises:
        RegionError: the pipeline takes neither.
    """
    try:
        parameters = inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        parameters = {}
    if "callback_on_step_end" in parameters:
        return {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["latents"]}
    if "callback" in parameters and "callback_steps" in parameters:

        def legacy(step: int, timestep: Any, latents: torch.Tensor) -> None:
            replaced = callback(pipe, step, timestep, {"latents": latents}).get("latents", latents)
            if replaced is not latents:
                latents.copy_(replaced)

        return {"callback": legacy, "callback_steps": 1}
    raise RegionError(
        f"{type(pipe).__name__} takes neither callback_on_step_end nor callback, one of which region blending needs "
        "to reach the latents after each step; edit without region= on this pipeline"
    )


def check_region(pipe: Any, region: Region) -> None:
    """What can be checked before generating: the pipeline can blend and the region is well formed.

    Raises:
        RegionError: a pipeline without a step callback, or see :func:`region_mask`.
    """
    step_callback_arguments(pipe, None)
    if isinstance(region, str) and region == "auto":
        from safetext.edit.attention import attention_taps

        attention_taps(pipe)
    elif isinstance(region, str):
        _declared_region(pipe, region)
    elif isinstance(region, (np.ndarray, torch.Tensor)):
        if np.ndim(region) != 2:
            raise RegionError(f"region mask must be 2-D (height x width), got shape {tuple(region.shape)}")
        region_mask(pipe, region, *(int(v) for v in region.shape))
    else:
        _box(region)


def region_mask(pipe: Any, region: Region, height: int, width: int) -> torch.Tensor:
    """The region as a float32 ``(height, width)`` mask in [0, 1] (1: the edit may change the pixel).

    Raises:
        RegionError: ``"text"`` on a pipeline that declares no text region, a box that is empty or outside
            the image, a mask of another size or with values outside [0, 1], or another kind of value.
    """
    if isinstance(region, str):
        return box_mask(_declared_region(pipe, region)(height, width), height, width)  # clipped to the image
    if isinstance(region, (np.ndarray, torch.Tensor)):
        mask = torch.as_tensor(np.asarray(region, dtype=np.float32) if isinstance(region, np.ndarray) else region)
        mask = mask.detach().to(device="cpu", dtype=torch.float32)
        if tuple(mask.shape) != (height, width):
            raise RegionError(f"region mask has shape {tuple(mask.shape)}; the image is {height} x {width}, pass a mask of that shape")
        if not bool(torch.isfinite(mask).all()) or float(mask.min()) < 0.0 or float(mask.max()) > 1.0:
            raise RegionError("region mask values must lie in [0, 1] (1: editable, 0: kept from the original)")
        return mask
    top, left, bottom, right = _box(region)
    if bottom > height or right > width:
        raise RegionError(
            f"region box (top, left, bottom, right) = {(top, left, bottom, right)} does not fit the {height} x {width} "
            f"image; pass pixel coordinates with bottom <= {height} and right <= {width}"
        )
    return box_mask((top, left, bottom, right), height, width)


def _declared_region(pipe: Any, region: str) -> Any:
    if region == "auto":
        raise RegionError("region='auto' is found from the original run's attention, inside edit_text; it has no mask before that run")
    if region != "text":
        raise RegionError(f"region must be 'text', 'auto', a (top, left, bottom, right) box or an H x W mask, got {region!r}")
    from safetext.scoring.ocr import text_region

    declared = text_region(pipe, margin=-TEXT_REGION_INSET)
    if declared is None:
        raise RegionError(
            f"{type(pipe).__name__} declares no text region (sign_box); pass region=(top, left, bottom, right) in "
            "pixels or an H x W mask instead of 'text'"
        )
    return declared


def _box(region: Any) -> tuple[int, int, int, int]:
    if not (
        isinstance(region, Sequence) and len(region) == 4 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in region)
    ):
        raise RegionError(f"region must be 'text', 'auto', a (top, left, bottom, right) box of ints or an H x W mask, got {region!r}")
    top, left, bottom, right = (int(v) for v in region)
    if not (0 <= top < bottom and 0 <= left < right):
        raise RegionError(
            f"region box (top, left, bottom, right) = {(top, left, bottom, right)} is empty or negative; "
            "pass pixel coordinates with 0 <= top < bottom and 0 <= left < right"
        )
    return top, left, bottom, right


def box_mask(box: tuple[int, int, int, int], height: int, width: int) -> torch.Tensor:
    top, left, bottom, right = box
    mask = torch.zeros(height, width, dtype=torch.float32)
    mask[top:bottom, left:right] = 1.0
    return mask


class TrajectoryBlend:
    """Records one run's latents after every step, then pins another run to them outside a mask.

    Use :meth:`record` as the original run's ``callback_on_step_end`` and :meth:`blend` as the edited
    run's. One object serves one pair of runs (it is per request; nothing is kept on the pipeline).

    Args:
        mask: ``(H, W)`` mask at image resolution, 1 where the edited run is kept. It may be set after
            :meth:`record` (a region given as a box needs the image size) but before :meth:`blend`.
    """

    def __init__(self, mask: torch.Tensor | None = None) -> None:
        self.mask = mask
        self.trajectory: dict[int, torch.Tensor] = {}  # step -> latents (legacy callbacks may skip steps)
        self._resized: dict[tuple[Any, ...], torch.Tensor] = {}

    def record(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        self.trajectory[step] = self._latents(callback_kwargs).detach().clone()
        return {}

    def blend(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = self._latents(callback_kwargs)
        original = self.trajectory.get(step)
        if original is None:
            raise RegionError(
                f"the edited run reached step {step + 1} but the original ran {len(self.trajectory)} steps; "
                "both runs must use the same settings"
            )
        if original.shape != latents.shape:
            raise RegionError(f"latents of shape {tuple(latents.shape)} at step {step}; the original had {tuple(original.shape)}")
        # lerp is exact at weights 0 and 1 and when both runs agree, so pixels outside the region are the original's.
        return {"latents": torch.lerp(original.to(latents.dtype), latents, self._mask_for(latents))}

    def _latents(self, callback_kwargs: dict[str, Any]) -> torch.Tensor:
        latents = callback_kwargs.get("latents")
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise RegionError(
                f"region blending needs (batch, channels, height, width) latents; this pipeline's are {shape} "
                "(packed latents, as in Flux, are not supported); edit without region="
            )
        return latents

    def _mask_for(self, latents: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            raise RegionError("TrajectoryBlend.blend needs a mask: set TrajectoryBlend.mask after recording")
        key = (tuple(latents.shape[-2:]), latents.dtype, latents.device)
        if key not in self._resized:
            height, width = latents.shape[-2:]
            mask = self.mask[None, None]
            if tuple(mask.shape[-2:]) != (height, width):
                # area averaging: a latent cell is as editable as the share of its pixels in the region
                mask = F.adaptive_avg_pool2d(mask, (height, width))
            self._resized[key] = mask.to(device=latents.device, dtype=latents.dtype)
        return self._resized[key]
