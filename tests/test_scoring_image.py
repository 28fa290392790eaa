"""MSE / PSNR / SSIM against hand-computed values and an independent numpy SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from safetext.scoring import mse, psnr, ssim
from safetext.scoring._images import image_to_chw

C1 = 0.01**2  # (K1 * data range)^2
C2 = 0.03**2


def reference_ssim(x: np.ndarray, y: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Direct SSIM (Wang et al. 2004): explicit loop over every window that fits, population
    variances, per-channel mean, then mean over channels. x, y: float HWC in [0, 1]."""
    height, width, channels = x.shape
    win_h = min(window, height) if min(window, height) % 2 else min(window, height) - 1
    win_w = min(window, width) if min(window, width) % 2 else min(window, width) - 1

    def gauss(n: int) -> np.ndarray:
        offsets = np.arange(n) - (n - 1) / 2
        g = np.exp(-(offsets**2) / (2 * sigma**2))
        return g / g.sum()

    weights = np.outer(gauss(win_h), gauss(win_w))[:, :, None]
    values = []
    for i in range(height - win_h + 1):
        for j in range(width - win_w + 1):
            px = x[i : i + win_h, j : j + win_w]
            py = y[i : i + win_h, j : j + win_w]
            mx, my = (weights * px).sum((0, 1)), (weights * py).sum((0, 1))
            vx = (weights * (px - mx) ** 2).sum((0, 1))
            vy = (weights * (py - my) ** 2).sum((0, 1))
            cxy = (weights * (px - mx) * (py - my)).sum((0, 1))
            values.append(((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2)))
    return float(np.mean(np.stack(values), axis=0).mean())


@pytest.fixture(scope="module")
def noisy_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((24, 96, 3))
    y = np.clip(0.7 * x + 0.3 * rng.random((24, 96, 3)), 0.0, 1.0)
    return x, y


# ---------------------------------------------------------------- MSE


def test_mse_does_not_wrap_like_uint8_subtraction():
    a = np.array([[10]], dtype=np.uint8)
    b = np.array([[250]], dtype=np.uint8)
    # Float: (10/255 - 250/255)^2 = (240/255)^2 = 57600/65025 = 0.8858131487889...
    assert mse(a, b) == pytest.approx(57600 / 65025, abs=1e-15)
    # The research code's uint8 arithmetic: 10 - 250 wraps to 16, and 16**2 = 256 wraps to 0.
    assert int((a - b)[0, 0]) == 16
    assert float(np.mean((a - b) ** 2)) == 0.0
    assert mse(b, a) == mse(a, b)


def test_mse_hand_computed_2x2():
    a = np.array([[0, 51], [102, 255]], dtype=np.uint8)
    b = np.zeros((2, 2), dtype=np.uint8)
    # 51/255 = 0.2, 102/255 = 0.4: squares 0, 0.04, 0.16, 1 -> mean 1.2 / 4 = 0.3
    assert mse(a, b) == pytest.approx(0.3, abs=1e-15)


def test_mse_same_value_for_every_input_type():
    rng = np.random.default_rng(1)
    a8 = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    b8 = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    expected = float(np.mean((a8.astype(np.float64) / 255 - b8.astype(np.float64) / 255) ** 2))
    chw = lambda arr: torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1)  # noqa: E731
    assert mse(a8, b8) == pytest.approx(expected, abs=1e-15)
    assert mse(Image.fromarray(a8), Image.fromarray(b8)) == pytest.approx(expected, abs=1e-15)
    assert mse(a8.astype(np.float64) / 255, b8.astype(np.float64) / 255) == pytest.approx(expected, abs=1e-15)
    assert mse(chw(a8), chw(b8)) == pytest.approx(expected, abs=1e-7)
    assert mse(chw(a8).permute(1, 2, 0), chw(b8).permute(1, 2, 0)) == pytest.approx(expected, abs=1e-7)


def test_batches_give_one_value_per_pair():
    a = [np.full((2, 2), 0.5), np.full((3, 3), 0.2)]
    b = [np.full((2, 2), 0.4), np.full((3, 3), 0.2)]
    assert mse(a, b) == pytest.approx([0.01, 0.0], abs=1e-15)
    nchw_a = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 1.0)])
    nchw_b = torch.zeros(2, 3, 4, 4)
    assert mse(nchw_a, nchw_b) == pytest.approx([0.25, 1.0])
    nhwc = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert mse(nhwc, nhwc) == [0.0, 0.0]


# ---------------------------------------------------------------- PSNR


def test_psnr_hand_computed():
    a = np.zeros((4, 4, 3))
    assert psnr(a, a) == math.inf
    # Every pixel differs by 0.1: MSE 0.01, PSNR = 10 log10(1 / 0.01) = 20 dB.
    assert psnr(np.full((4, 4, 3), 0.6), np.full((4, 4, 3), 0.5)) == pytest.approx(20.0, abs=1e-9)
    a8 = np.array([[0, 51], [102, 255]], dtype=np.uint8)
    # MSE 0.3 (see above): 10 log10(1 / 0.3) = 5.2287874528...
    assert psnr(a8, np.zeros((2, 2), np.uint8)) == pytest.approx(5.228787452803376, abs=1e-12)
    assert psnr([a, a], [a, np.full((4, 4, 3), 0.1)]) == pytest.approx([math.inf, 20.0])


# ---------------------------------------------------------------- SSIM


def test_ssim_identical_is_one(noisy_pair):
    x, _ = noisy_pair
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_hand_computed():
    # Constant images: every local variance/covariance is 0, so SSIM = luminance term
    # (2 * 0.5 * 0.25 + C1) / (0.5^2 + 0.25^2 + C1) * (0 + C2) / (0 + C2) = 0.2501 / 0.3126
    expected = (2 * 0.5 * 0.25 + C1) / (0.25 + 0.0625 + C1)
    assert expected == pytest.approx(0.80006397952655, abs=1e-13)
    for shape in [(24, 96, 3), (32, 128, 1), (5, 5, 3)]:
        assert ssim(np.full(shape, 0.5), np.full(shape, 0.25)) == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_direct_numpy_formula(noisy_pair):
    x, y = noisy_pair
    expected = reference_ssim(x, y)
    assert 0.2 < expected < 0.95  # a pair that exercises the structure term
    assert ssim(x, y) == pytest.approx(expected, abs=1e-10)
    # SSIM is symmetric and the uint8 path equals the float path on the quantized images.
    assert ssim(y, x) == pytest.approx(expected, abs=1e-10)
    x8, y8 = np.rint(x * 255).astype(np.uint8), np.rint(y * 255).astype(np.uint8)
    assert ssim(x8, y8) == pytest.approx(reference_ssim(x8 / 255, y8 / 255), abs=1e-10)


def test_ssim_shrinks_window_for_small_images(noisy_pair):
    x, y = noisy_pair
    small_x, small_y = x[:8, :20], y[:8, :20]  # window becomes 7 x 11
    assert ssim(small_x, small_y) == pytest.approx(reference_ssim(small_x, small_y), abs=1e-10)
    tiny_x, tiny_y = x[:4, :4], y[:4, :4]  # window becomes 3 x 3
    assert ssim(tiny_x, tiny_y) == pytest.approx(reference_ssim(tiny_x, tiny_y), abs=1e-10)


def test_ssim_batch_equals_single_calls(noisy_pair):
    x, y = noisy_pair
    singles = [ssim(x, y), ssim(x, x), ssim(x[:8, :20], y[:8, :20])]
    assert ssim([x, x, x[:8, :20]], [y, x, y[:8, :20]]) == pytest.approx(singles, abs=1e-12)
    nchw = lambda arr: torch.from_numpy(arr).permute(2, 0, 1)  # noqa: E731
    batch = ssim(torch.stack([nchw(x), nchw(x)]), torch.stack([nchw(y), nchw(x)]))
    assert batch == pytest.approx(singles[:2], abs=1e-12)


# ---------------------------------------------------------------- input errors


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"a has shape \(C, H, W\) = \(3, 4, 4\) but b has \(3, 4, 5\)"):
        mse(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="a is a batch but b is one image"):
        ssim([np.zeros((4, 4))], np.zeros((4, 4)))
    with pytest.raises(ValueError, match="a has 2 images but b has 1"):
        psnr([np.zeros((4, 4))] * 2, [np.zeros((4, 4))])


def test_bad_images_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"values in \[-1, 1\], outside \[0, 1\]"):
        mse(np.full((2, 2), -1.0) + np.eye(2) * 2, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"looks like CHW; numpy images must be HWC: use array.transpose\(1, 2, 0\)"):
        mse(np.zeros((3, 8, 8)), np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="dtype int64, which is not supported"):
        mse(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        mse(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="a has type str, which is not an image"):
        mse("x.png", "y.png")
    with pytest.raises(ValueError, match=r"tensors must be CHW or HWC"):
        image_to_chw(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="window_size must be a positive odd integer, got 10"):
        ssim(np.zeros((4, 4)), np.zeros((4, 4)), window_size=10)


def test_pil_modes_are_converted():
    rgba = Image.new("RGBA", (4, 3), (255, 0, 0, 128))
    chw = image_to_chw(rgba)
    assert chw.shape == (3, 3, 4) and chw.dtype == torch.float64
    assert torch.equal(chw[0], torch.ones(3, 4)) and torch.equal(chw[1], torch.zeros(3, 4))
    gray = image_to_chw(Image.new("L", (4, 3), 51))
    assert gray.shape == (1, 3, 4) and float(gray[0, 0, 0]) == pytest.approx(0.2, abs=1e-15)
