"""Image similarity: MSE, PSNR and SSIM on float images in [0, 1].

All three metrics convert their inputs to float64 in [0, 1] first (uint8 is divided by 255), so a
difference is never computed in uint8. The paper's research code computes
``np.mean((orig - proc) ** 2)`` directly on the image arrays; on uint8 arrays the subtraction and
the square wrap modulo 256 (pixels 10 and 250 give ``(10 - 250) % 256 = 16`` and
``16 ** 2 % 256 = 0``). It also floors MSE at 1e-10 before its PSNR (range 255), so identical
images get 148.1 dB where :func:`psnr` returns infinity. Compare MSE/PSNR with the paper's tables
only with that in mind. SSIM follows the same definition as the paper's (pytorch-msssim: Gaussian
window 11, sigma 1.5, no padding), so it is comparable.

Inputs are PIL images, numpy HWC arrays or torch CHW/HWC tensors (see
:mod:`safetext.scoring._images`). Pass two images to get a ``float``; pass two batches (lists or
tuples, NHWC numpy arrays or NCHW tensors) of equal length to get a ``list[float]``, one value per
pair.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from safetext.scoring._images import pair_batches

__all__ = ["mse", "psnr", "ssim", "SSIM_WINDOW_SIZE", "SSIM_SIGMA"]

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _per_pair(values: list[float], batched: bool) -> float | list[float]:
    return values if batched else values[0]


def _pair_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.mean((x - y) ** 2))


def mse(a: Any, b: Any) -> float | list[float]:
    """Mean squared error over all pixels and channels, on the [0, 1] scale.

    Args:
        a: An image or a batch of images.
        b: An image or a batch of images with the same shapes as ``a``.

    Returns:
        The MSE in [0, 1] for two images, or one MSE per pair for two batches.

    Example:
        >>> import numpy as np
        >>> round(mse(np.full((1, 1, 3), 10, np.uint8), np.full((1, 1, 3), 250, np.uint8)), 6)
        0.885813
    """
    first, second, batched = pair_batches(a, b)
    return _per_pair([_pair_mse(x, y) for x, y in zip(first, second)], batched)


def psnr(a: Any, b: Any) -> float | list[float]:
    """Peak signal-to-noise ratio in dB with data range 1: ``10 * log10(1 / MSE)``.

    Args:
        a: An image or a batch of images.
        b: An image or a batch of images with the same shapes as ``a``.

    Returns:
        The PSNR for two images (``math.inf`` when they are identical), or one PSNR per pair.
    """
    first, second, batched = pair_batches(a, b)
    values = []
    for x, y in zip(first, second):
        error = _pair_mse(x, y)
        values.append(math.inf if error == 0.0 else 10.0 * math.log10(1.0 / error))
    return _per_pair(values, batched)


def _gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    positions = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    kernel = torch.exp(-(positions**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def _fitted_window(window_size: int, extent: int) -> int:
    """The window along one dimension: ``window_size``, or the largest odd size <= ``extent``."""
    size = min(window_size, extent)
    return size if size % 2 == 1 else size - 1


def _ssim_batch(x: torch.Tensor, y: torch.Tensor, window_size: int, sigma: float) -> list[float]:
    """SSIM per image of two (N, C, H, W) float64 tensors in [0, 1]."""
    batch, channels, height, width = x.shape
    kernel_h = _gaussian_kernel(_fitted_window(window_size, height), sigma).view(1, 1, -1, 1)
    kernel_w = _gaussian_kernel(_fitted_window(window_size, width), sigma).view(1, 1, 1, -1)

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        flat = t.reshape(batch * channels, 1, height, width)
        return F.conv2d(F.conv2d(flat, kernel_w), kernel_h)  # "valid": no padding

    c1 = (_SSIM_K1 * 1.0) ** 2
    c2 = (_SSIM_K2 * 1.0) ** 2
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    structure = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    per_channel = (luminance * structure).reshape(batch, channels, -1).mean(dim=2)
    return [float(value) for value in per_channel.mean(dim=1)]


def ssim(
    a: Any,
    b: Any,
    *,
    window_size: int = SSIM_WINDOW_SIZE,
    sigma: float = SSIM_SIGMA,
) -> float | list[float]:
    """Structural similarity with a Gaussian window (Wang et al. 2004), data range 1.

    Per channel, local means, variances and the covariance are Gaussian-weighted averages over an
    ``window_size`` x ``window_size`` window (``sigma`` 1.5), computed with a separable
    ``torch.nn.functional.conv2d`` without padding (only windows that fit inside the image count);
    variances use the population form (no N/(N-1) correction); K1 = 0.01, K2 = 0.03. The SSIM map
    is averaged over positions, then over channels. This is the convention of pytorch-msssim and of
    scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``.

    Images smaller than the window: along a dimension shorter than ``window_size`` the window
    shrinks to the largest odd length that fits (for an 8-pixel-high image, 7), keeping ``sigma``
    and renormalising the truncated Gaussian (pytorch-msssim instead skips smoothing along such a
    dimension). A 24x96 image uses the full 11x11 window.

    Args:
        a: An image or a batch of images.
        b: An image or a batch of images with the same shapes as ``a``.
        window_size: Odd window length in pixels.
        sigma: Standard deviation of the Gaussian window in pixels.

    Returns:
        The SSIM (1.0 for identical images, at most 1) for two images, or one SSIM per pair.

    Raises:
        ValueError: The inputs are not images of matching shapes, or the window is invalid.
    """
    if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd integer, got {window_size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    first, second, batched = pair_batches(a, b)
    values: list[float] = []
    start = 0
    while start < len(first):
        # Stack consecutive pairs of one shape so that a uniform batch is one conv call.
        stop = start + 1
        while stop < len(first) and first[stop].shape == first[start].shape:
            stop += 1
        x = torch.stack(first[start:stop])
        y = torch.stack(second[start:stop])
        values.extend(_ssim_batch(x, y, window_size, sigma))
        start = stop
    return _per_pair(values, batched)
