"""clDice written the straightforward way: the definition our fast version is checked and timed against.

Soft erosion = min of axis-aligned 3-long min-pools (as -maxpool(-x)), soft dilation =
3x...x3 max-pool, open = dilate(erode(x)); ``skel = relu(x - open(x))`` then k times
``x = erode(x); delta = relu(x - open(x)); skel += relu(delta - skel * delta)``, on every
channel. Per foreground class c: ``Tprec = (sum skel(P)*L + s) / (sum skel(P) + s)``,
``Tsens = (sum skel(L)*P + s) / (sum skel(L) + s)``, ``clDice = 2 Tprec Tsens / (Tprec + Tsens)``;
the loss is ``1 - mean(clDice)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pool(x: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor:
    padding = tuple(k // 2 for k in kernel)
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(x, kernel, stride=1, padding=padding)


def reference_soft_erode(x: torch.Tensor) -> torch.Tensor:
    spatial = x.ndim - 2
    pools = []
    for axis in range(spatial):
        kernel = tuple(3 if a == axis else 1 for a in range(spatial))
        pools.append(-_pool(-x, kernel))
    out = pools[0]
    for p in pools[1:]:
        out = torch.min(out, p)
    return out


def reference_soft_dilate(x: torch.Tensor) -> torch.Tensor:
    return _pool(x, (3,) * (x.ndim - 2))


def reference_soft_skeleton(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """Soft skeleton of (B, C, *spatial) values in [0, 1], same shape."""
    skel = F.relu(x - reference_soft_dilate(reference_soft_erode(x)))
    for _ in range(iterations):
        x = reference_soft_erode(x)
        delta = F.relu(x - reference_soft_dilate(reference_soft_erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def reference_cldice_loss(probs: torch.Tensor, onehot: torch.Tensor, iterations: int = 3, smooth: float = 1.0,
                          batch_dice: bool = False) -> torch.Tensor:
    """1 - mean clDice over foreground classes; probs and onehot (B, C, *spatial), channel 0 background."""
    skel_pred = reference_soft_skeleton(probs, iterations)
    skel_true = reference_soft_skeleton(onehot, iterations)
    axes = tuple(range(2, probs.ndim)) if not batch_dice else (0, *range(2, probs.ndim))
    tprec = ((skel_pred * onehot).sum(axes) + smooth) / (skel_pred.sum(axes) + smooth)
    tsens = ((skel_true * probs).sum(axes) + smooth) / (skel_true.sum(axes) + smooth)
    cldice = 2 * tprec * tsens / (tprec + tsens)
    return 1 - cldice[..., 1:].mean()
