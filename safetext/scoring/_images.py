"""Convert the image types scoring accepts into one float layout, with clear errors for the rest.

Accepted images (one image each):

- ``PIL.Image.Image``: mode ``L`` gives one channel, every other mode is converted to RGB.
- ``numpy.ndarray`` in HWC (or HW) layout with 1 or 3 channels: ``uint8`` in [0, 255] or a float
  dtype in [0, 1].
- ``torch.Tensor`` in CHW layout (the torch convention) or HWC layout with 1 or 3 channels:
  a float dtype in [0, 1] or ``uint8`` in [0, 255]. A tensor whose first dimension is 1 or 3 is
  read as CHW; otherwise a tensor whose last dimension is 1 or 3 is read as HWC.

Batches: a list or tuple of such images, a 4-D numpy array in NHWC layout or a 4-D tensor in NCHW
layout.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

_CHANNELS = (1, 3)
_LAYOUT_HELP = (
    "pass a PIL image, a numpy HWC array (uint8 in [0, 255] or float in [0, 1]) or a torch "
    "CHW/HWC tensor (float in [0, 1] or uint8) with 1 or 3 channels"
)


def _is_pil(image: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a core dependency
        return False
    return isinstance(image, Image.Image)


def _scale_to_unit(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as float64 in [0, 1]; uint8 is divided by 255, floats are range-checked."""
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains NaN or infinite values; pass finite values in [0, 1]")
        low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"{name} is a float image with values in [{low:.4g}, {high:.4g}], outside [0, 1]; "
                "scale it to [0, 1] (for example x.clip(0, 1) or (x + 1) / 2 for [-1, 1] data)"
            )
        return values
    raise ValueError(
        f"{name} has dtype {array.dtype}, which is not supported; convert it to uint8 in [0, 255] "
        "or to float in [0, 1]"
    )


def _hwc_to_chw(array: np.ndarray, name: str, shape_hint: tuple[int, ...]) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _CHANNELS:
        raise ValueError(
            f"{name} has shape {tuple(shape_hint)}, which is not an HWC image with 1 or 3 channels; "
            f"{_LAYOUT_HELP}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} has shape {tuple(shape_hint)}, an empty image; pass a non-empty image")
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def image_to_chw(image: Any, name: str = "image") -> torch.Tensor:
    """Convert one image to a float64 CPU tensor of shape (C, H, W) with values in [0, 1].

    Args:
        image: A PIL image, numpy HWC array or torch CHW/HWC tensor (see the module docstring).
        name: How error messages refer to the input.

    Returns:
        A float64 tensor with 1 or 3 channels.

    Raises:
        ValueError: The type, layout, dtype or value range is not supported.
    """
    if _is_pil(image):
        pil = image if image.mode in ("L", "RGB") else image.convert("RGB")
        pixels = np.asarray(pil)
        return torch.from_numpy(_hwc_to_chw(_scale_to_unit(pixels, name), name, pixels.shape))
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[0] in _CHANNELS and image.shape[2] not in _CHANNELS:
            raise ValueError(
                f"{name} is a numpy array of shape {image.shape}, which looks like CHW; numpy images "
                "must be HWC: use array.transpose(1, 2, 0)"
            )
        return torch.from_numpy(_hwc_to_chw(_scale_to_unit(image, name), name, image.shape))
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu()
        if array.dtype == torch.bfloat16:
            array = array.float()
        values = array.numpy()
        if values.ndim == 3 and values.shape[0] in _CHANNELS:
            values = values.transpose(1, 2, 0)
        elif not (values.ndim == 3 and values.shape[2] in _CHANNELS):
            raise ValueError(
                f"{name} is a tensor of shape {tuple(image.shape)}; tensors must be CHW or HWC with "
                "1 or 3 channels (index a batch to get one image)"
            )
        return torch.from_numpy(_hwc_to_chw(_scale_to_unit(values, name), name, tuple(image.shape)))
    raise TypeError(f"{name} has type {type(image).__name__}, which is not an image; {_LAYOUT_HELP}")


def is_image_batch(images: Any) -> bool:
    """Return whether ``images`` is a batch: a list/tuple, a 4-D numpy array or a 4-D tensor."""
    if isinstance(images, (list, tuple)):
        return True
    return isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4


def images_to_chw_list(images: Any, name: str = "images") -> list[torch.Tensor]:
    """Convert one image or a batch to a list of float64 (C, H, W) tensors.

    Args:
        images: One image or a batch (list/tuple, NHWC numpy array, NCHW tensor).
        name: How error messages refer to the input.

    Returns:
        One tensor per image, in order.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [image_to_chw(item, f"{name}[{index}]") for index, item in enumerate(images)]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        if images.shape[1] not in _CHANNELS:
            raise ValueError(
                f"{name} is a 4-D tensor of shape {tuple(images.shape)}; batched tensors must be NCHW "
                "with 1 or 3 channels"
            )
        return [image_to_chw(item, f"{name}[{index}]") for index, item in enumerate(images)]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name} is an empty batch; pass at least one image")
        return [image_to_chw(item, f"{name}[{index}]") for index, item in enumerate(images)]
    return [image_to_chw(images, name)]


def chw_to_uint8_rgb(chw: torch.Tensor) -> np.ndarray:
    """Round a float (C, H, W) tensor in [0, 1] to a uint8 RGB array of shape (H, W, 3)."""
    array = np.rint(chw.numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def image_to_uint8_rgb(image: Any, name: str = "image") -> np.ndarray:
    """Convert one accepted image to a uint8 RGB array of shape (H, W, 3)."""
    return chw_to_uint8_rgb(image_to_chw(image, name))


def pair_batches(
    a: Any, b: Any, names: Sequence[str] = ("a", "b")
) -> tuple[list[torch.Tensor], list[torch.Tensor], bool]:
    """Convert two images or two batches of the same length and check that shapes agree pairwise.

    Returns:
        The two lists of (C, H, W) tensors and whether the inputs were batches.
    """
    batched_a, batched_b = is_image_batch(a), is_image_batch(b)
    if batched_a != batched_b:
        raise ValueError(
            f"{names[0]} is {'a batch' if batched_a else 'one image'} but {names[1]} is "
            f"{'a batch' if batched_b else 'one image'}; pass two images or two batches"
        )
    first, second = images_to_chw_list(a, names[0]), images_to_chw_list(b, names[1])
    if len(first) != len(second):
        raise ValueError(
            f"{names[0]} has {len(first)} images but {names[1]} has {len(second)}; pass batches of "
            "equal length"
        )
    for index, (x, y) in enumerate(zip(first, second)):
        if x.shape != y.shape:
            where = f"[{index}]" if batched_a else ""
            raise ValueError(
                f"{names[0]}{where} has shape (C, H, W) = {tuple(x.shape)} but {names[1]}{where} has "
                f"{tuple(y.shape)}; compare images of the same size and channel count"
            )
    return first, second, batched_a
