"""Multi-scale structural similarity (MS-SSIM; Wang, Simoncelli & Bovik, "Multiscale structural
similarity for image quality assessment", Asilomar 2003) for 2D and 3D maps, small patches included.

At scale j (j = 0 finest .. M-1 coarsest), with local Gaussian-weighted means, variances and
covariance of x and y::

    l_j  = mean[(2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)]
    cs_j = mean[(2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)]
    ssim_j = mean[l * cs]   (the map product, then the spatial mean)

    MS-SSIM = ssim_{M-1}^{w_{M-1}} * prod_{j < M-1} cs_j^{w_j}

C1 = (0.01 L)^2, C2 = (0.03 L)^2 for data range L; the Gaussian window has sigma 1.5 and size 11 and
is applied separably (one 1D convolution per axis, 'valid', i.e. no padding); consecutive scales
are 2x average-pooled. The weights are the paper's (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); with
fewer scales the first M are used and renormalised to sum to 1.

Small and anisotropic shapes (nnU-Net patches: e.g. 16^3, 4x32x32) are planned per axis by
``ms_ssim_plan``:

* window: 11 along an axis of size >= 11; otherwise the largest odd size that fits (3 minimum);
  an axis of size 1 or 2 is not filtered (window 1) and never pooled;
* pooling: an axis is halved between two scales only if it stays >= its window afterwards, so
  thin axes of anisotropic patches keep their size while the others are pooled;
* scales: M is the largest number <= 5 for which some axis can still be pooled at every step,
  i.e. at the coarsest scale every axis is still at least as large as its window.

cs_j and ssim_M-1 can be negative (anti-correlated inputs); a negative number to a fractional power is
NaN, so they are clamped at 0 before the powers (and MS-SSIM is then 0, with zero gradient through
the clamped factor).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@dataclass(frozen=True)
class MsSsimPlan:
    """How ``ms_ssim`` treats one spatial shape.

    Attributes:
        num_scales: number of scales M (1 = plain single-scale SSIM).
        window_sizes: Gaussian window size per spatial axis (odd; 1 = the axis is not filtered).
        pooled_axes: for each of the M - 1 transitions between scales, the spatial axes (0-based)
            that are halved by average pooling.
        shapes: spatial shape at each of the M scales.
        weights: the M exponents, summing to 1 (finest scale first).
    """

    num_scales: int
    window_sizes: tuple[int, ...]
    pooled_axes: tuple[tuple[int, ...], ...]
    shapes: tuple[tuple[int, ...], ...]
    weights: tuple[float, ...]


def _axis_window(size: int, window_size: int) -> int:
    if size >= window_size:
        return window_size
    if size <= 2:
        return 1
    return size if size % 2 else size - 1


def ms_ssim_plan(spatial_shape: Sequence[int], window_size: int = 11,
                 weights: Sequence[float] = MS_SSIM_WEIGHTS) -> MsSsimPlan:
    """Plan of scales, per-axis windows and pooled axes for maps of ``spatial_shape`` (see module doc).

    At most ``len(weights)`` scales. Raises ValueError for an empty shape, non-positive sizes, an even
    or non-positive ``window_size`` or weights that are not all >= 0 with a positive sum.
    """
    shape = tuple(int(s) for s in spatial_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"spatial_shape must hold at least one positive size, got {tuple(spatial_shape)}")
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd integer, got {window_size!r}")
    weights = tuple(float(w) for w in weights)
    if not weights or any(not (math.isfinite(w) and w >= 0) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite numbers >= 0 with a positive sum (one per scale), got {weights}")

    windows = tuple(_axis_window(s, window_size) for s in shape)
    # How often each axis can be halved while staying >= its window (unfiltered axes: never).
    halvings = []
    for size, window in zip(shape, windows):
        count = 0
        while window > 1 and count < len(weights) - 1 and size // 2 >= window:
            size //= 2
            count += 1
        halvings.append(count)
    num_scales = 1 + max(halvings)

    pooled = tuple(tuple(a for a, h in enumerate(halvings) if h > j) for j in range(num_scales - 1))
    shapes = [shape]
    for axes in pooled:
        shapes.append(tuple(s // 2 if a in axes else s for a, s in enumerate(shapes[-1])))
    used = weights[:num_scales]
    total = sum(used)
    if total <= 0:
        raise ValueError(f"the first {num_scales} weights {used} (the scales that fit the shape {shape}) sum to 0")
    return MsSsimPlan(num_scales, windows, pooled, tuple(shapes), tuple(w / total for w in used))


def gaussian_window(size: int, sigma: float = 1.5, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1D Gaussian (size,), centred; size 1 gives [1.]."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def _device_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``gaussian_window`` (size,), built on the host and copied to ``device`` once per (size, sigma, dtype,
    device): the training step makes no host-to-device copy. Read-only; a normal tensor even when first made
    under inference mode."""
    with torch.inference_mode(False):
        return gaussian_window(size, sigma, dtype, device)


def _filter(x: torch.Tensor, windows: Sequence[int], sigma: float) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of x (N, 1, *spatial) along every axis with window > 1."""
    nd = x.ndim - 2
    conv = _CONV[nd]
    for axis, size in enumerate(windows):
        if size == 1:
            continue
        kernel_shape = [1, 1] + [1] * nd
        kernel_shape[2 + axis] = size
        x = conv(x, _device_window(size, sigma, x.dtype, x.device).view(kernel_shape))
    return x


def _pool(x: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """2x average pooling (floor: an odd trailing slice is dropped) along the given spatial axes."""
    for axis in axes:
        dim = 2 + axis
        half = x.shape[dim] // 2
        x = x.narrow(dim, 0, 2 * half).unflatten(dim, (half, 2)).mean(dim + 1)
    return x


def _clamped_pow(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """max(x, 0) ** exponent with a finite gradient everywhere (0 where x <= 0)."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1) ** exponent, 0)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
            weights: Sequence[float] = MS_SSIM_WEIGHTS, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """MS-SSIM per sample and channel of maps x, y (B, K, *spatial) with 1 to 3 spatial axes; (B, K).

    Values lie in [0, 1] (1 for identical maps); see the module docstring for the scales and the clamp
    at 0. Computed in float32 (float64 inputs stay float64) with autocast disabled: the variances are
    differences of local second moments, which half precision would cancel away. Values are not
    checked against ``data_range``. ``weights=(1.0,)`` gives single-scale SSIM.
    """
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim not in (3, 4, 5):
        raise ValueError(f"x and y must be shaped (B, K, *spatial) with 1 to 3 spatial axes, got {tuple(x.shape)}")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"x and y must be floating point maps, got {x.dtype} and {y.dtype}")
    if not (math.isfinite(data_range) and data_range > 0) or not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"data_range and sigma must be finite and > 0, got {data_range!r} and {sigma!r}")
    plan = ms_ssim_plan(x.shape[2:], window_size, weights)

    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    batch, channels = x.shape[:2]
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    # autocast has no meta device type (shape-only runs): the CPU's, switched off, changes nothing there
    with torch.autocast(device_type="cpu" if x.is_meta else x.device.type, enabled=False):
        x = x.to(dtype).reshape(batch * channels, 1, *x.shape[2:])
        y = y.to(dtype).reshape(batch * channels, 1, *y.shape[2:])
        result = None
        for scale in range(plan.num_scales):
            if scale > 0:
                x, y = _pool(x, plan.pooled_axes[scale - 1]), _pool(y, plan.pooled_axes[scale - 1])
            # One filtering pass over the five maps stacked along the batch axis.
            moments = _filter(torch.cat([x, y, x * x, y * y, x * y]), plan.window_sizes, sigma)
            mu_x, mu_y, xx, yy, xy = moments.chunk(5)
            mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
            cs_map = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
            if scale < plan.num_scales - 1:
                value = cs_map.flatten(1).mean(1)
            else:
                luminance = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1)
                value = (luminance * cs_map).flatten(1).mean(1)
            factor = _clamped_pow(value, plan.weights[scale])
            result = factor if result is None else result * factor
    return result.reshape(batch, channels)
