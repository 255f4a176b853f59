"""Real photos that ship with scikit-image and scikit-learn: the training patches of the
``sr-adaptive`` parents and a held-out, Set5-like evaluation set, with PSNR and SSIM as the
SR literature measures them (luma channel, ``scale`` border pixels cropped)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TEST_PHOTOS", "TRAIN_PHOTOS", "train_photos", "test_set", "downscale", "psnr", "ssim", "quantize", "TEST_SIDE"]

# five photos never seen in training, like Set5: a face, an animal, food, a flower, a scene
TEST_PHOTOS = ("astronaut", "chelsea", "coffee", "sklearn:flower.jpg", "motorcycle_left")
TRAIN_PHOTOS = ("rocket", "sklearn:china.jpg", "hubble_deep_field", "retina", "immunohistochemistry", "camera",
                "brick", "grass", "gravel", "coins", "moon")
TEST_SIDE = 192  # each evaluation photo is its central 192x192 crop (divisible by every scale)


def _photo(name: str) -> np.ndarray:
    """An (H, W, 3) uint8 photo; grey photos are repeated into three channels."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data

        img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.tensor(img).permute(2, 0, 1).float().div(255.0)  # a copy: skimage's arrays are read-only


@lru_cache(maxsize=1)
def train_photos() -> tuple[torch.Tensor, ...]:
    """The training photos as (3, H, W) tensors in [0, 1]."""
    return tuple(_tensor(_photo(n)) for n in TRAIN_PHOTOS)


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The low-resolution input: bicubic with antialiasing (MATLAB ``imresize``-like), clamped."""
    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True,
                         align_corners=False).clamp(0.0, 1.0)


@lru_cache(maxsize=4)
def test_set(scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lr, hr)``: the held-out photos' central crops, ``(5, 3, side/scale, side/scale)`` and
    ``(5, 3, side, side)``."""
    crops = []
    for name in TEST_PHOTOS:
        img = _photo(name)
        top, left = (img.shape[0] - TEST_SIDE) // 2, (img.shape[1] - TEST_SIDE) // 2
        crops.append(_tensor(img[top:top + TEST_SIDE, left:left + TEST_SIDE]))
    hr = torch.stack(crops)
    return quantize(downscale(hr, scale)), hr


def quantize(x: torch.Tensor) -> torch.Tensor:
    """To 8-bit steps, as images are stored: the SR protocol scores 8-bit inputs and outputs."""
    return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 Y in [16, 235] from 8-bit RGB: the channel SR papers score on."""
    r, g, b = quantize(x).unbind(1)
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def psnr(sr: torch.Tensor, hr: torch.Tensor, border: int) -> float:
    """Mean PSNR in dB over the batch, on luma, without ``border`` pixels at each edge."""
    a, b = _luma(sr)[..., border:-border, border:-border], _luma(hr)[..., border:-border, border:-border]
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10.0 * torch.log10(255.0 ** 2 / mse)).mean())


def ssim(sr: torch.Tensor, hr: torch.Tensor, border: int) -> float:
    """Mean SSIM over the batch (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), on luma."""
    a = _luma(sr)[:, None, border:-border, border:-border].double()
    b = _luma(hr)[:, None, border:-border, border:-border].double()
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :])[None, None]
    mu_a, mu_b = F.conv2d(a, win), F.conv2d(b, win)
    var_a = F.conv2d(a * a, win) - mu_a ** 2
    var_b = F.conv2d(b * b, win) - mu_b ** 2
    cov = F.conv2d(a * b, win) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(m.flatten(1).mean(1).mean())
