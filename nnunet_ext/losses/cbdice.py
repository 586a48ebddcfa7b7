"""Centerline boundary Dice (cbDice; Shi et al., "Centerline Boundary Dice Loss for Vascular Segmentation",
MICCAI 2024): clDice whose skeleton and mask voxels are weighted by distance transforms, so that thin and
thick vessels count evenly and a skeleton off the vessel's centre line costs.

Per map (one sample, one foreground class or region) with the target L, the hard prediction P (the voxels
the network labels c), their skeletons S_L, S_P and the prediction's probability map p:

- ``D`` = the Euclidean distance of each mask voxel to the background (0 outside the mask), in voxels;
- ``R`` = D on the skeleton (the vessel radius there), 0 elsewhere; ``R_max = max(max R, 1)``;
- normalised: ``D_N = min(D, R_max) / R_max``, ``R_N = R / R_max``, and the "subtraction-based inverse"
  radius on the skeleton ``I = (R_max - R + 1) / R_max`` (the thinnest possible vessel, radius 1 voxel,
  gets 1, the thickest 1 / R_max), squared in 3D (a vessel's volume grows with r^2 per unit length);
- ``Q_vl = D_N(L)``, ``Q_slvl = R_N(L)``, ``Q_sl = I(L)``; ``Q_vp = D_N(P) p``, ``Q_spvp = R_N(P) p``,
  ``Q_sp = I(P) p``;
- ``Tprec = (sum Q_sp Q_vl + s) / (sum Q_sp (Q_slvl on S_L, else Q_spvp) + s)``,
  ``Tsens = (sum Q_sl Q_vp + s) / (sum Q_sl (Q_spvp on S_P, else Q_slvl) + s)``,
  ``cbDice = 2 Tprec Tsens / (Tprec + Tsens)``;

and the loss is ``-mean(cbDice)`` over classes (and samples unless batch_dice), with the sign of nnU-Net's
Dice term (which returns -Dice).

Range: ``(-2 (k + 1), 0]`` for k skeleton iterations, not [-1, 0]. Numerator and denominator of Tprec and Tsens
weight the voxels differently, so either can exceed 1: voxel by voxel the ratio of Tsens's terms is 1 on both
skeletons and at most ``R_max(L) / R(L) <= k + 1`` on S_L only (skeleton radii lie in [1, k + 1]), so
Tsens <= k + 1, and cbDice, the harmonic mean of Tprec and Tsens, is below twice the smaller. A perfect
prediction gives -1, which is therefore not always the minimum: a target that fills the patch has an empty
skeleton, so Tsens = 1, Tprec >= 1 and the loss lies in (-2, -1] (about -1.47 for random logits); a thin
prediction off the centre of a thick target vessel beside a thick one around a thin target vessel puts both
above 1 (-2.8 in the tests). The paper's formulas, written out in the tests, give the same values.

Masks, skeletons (our clDice soft skeleton of the binary masks) and distances are constants; only p carries the
gradient. Everything is tensor reductions: no device-to-host sync. The soft skeleton of a 0/1 mask is 0/1 and is
computed in bool (``binary_skeletonize``); the distances only up to the largest radius the skeleton can have
(``capped_distance_transform``).
"""

from __future__ import annotations

import torch
from torch import nn

from nnunet_ext.distance.capped_edt import capped_distance_transform
from nnunet_ext.losses.binary_skeleton import binary_skeletonize
from nnunet_ext.losses.distributed import all_gather_sums
from nnunet_ext.losses.input_checks import (
    ValueCheckOnce,
    check_iterations,
    check_label_values,
    check_logits_and_labels,
    check_logits_and_regions,
    check_region_values,
    check_spatial_2d_3d,
)
from nnunet_ext.losses.prepare import as_float_logits


def radius_weights(masks: torch.Tensor, skeletons: torch.Tensor, cap: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The normalised distance map D_N, skeleton radius R_N and inverse radius I of binary maps.

    Args:
        masks: (B, K, *spatial) bool.
        skeletons: (B, K, *spatial) bool, each inside its mask.
        cap: a bound on every skeleton radius; distances are computed up to it only
            (``capped_distance_transform``), which is exact after the clamp at R_max <= cap. For a soft skeleton
            of k iterations the bound is k + 1: its voxels are ridges of the j-th erosion (j <= k), at city-block
            distance j + 1 from the background, and the Euclidean distance is at most the city-block one.

    Returns:
        Three float32 tensors of ``masks``' shape; I is squared for 3D maps. Normalised per (B, K) map.
    """
    distance = capped_distance_transform(masks, cap)
    radius = torch.where(skeletons, distance, 0.0)
    r_max = radius.amax(dim=tuple(range(2, masks.ndim)), keepdim=True).clamp_min(1.0)
    inverse = torch.where(skeletons, (r_max - radius + 1.0) / r_max, 0.0)
    if masks.ndim == 5:
        inverse = inverse.square()
    return torch.minimum(distance, r_max) / r_max, radius / r_max, inverse


def cbdice_of_scored_channels(probs: torch.Tensor, hard: torch.Tensor, true: torch.Tensor, iterations: int,
                              smooth: float, batch_dice: bool, ddp: bool) -> torch.Tensor:
    """``-mean cbDice`` of every channel; no checks, no device sync (the loss modules' hot path).

    Args:
        probs: (B, K, X, Y[, Z]) probability map p of each scored class or region (carries the gradient).
        hard: (B, K, ...) bool, the hard prediction P.
        true: (B, K, ...) bool, the target L.
        iterations: soft-skeleton iterations k of the hard masks.
        smooth: the smoothing term s of Tprec and Tsens.
        batch_dice: one cbDice per channel from sums over the batch too (normalisation stays per sample).
        ddp: with batch_dice, add the sums of all ranks (one collective).

    Returns:
        Scalar in (-2 (iterations + 1), 0] (see the module docstring: not bounded below by -1).
    """
    with torch.no_grad():
        masks = torch.cat([true, hard], 1)
        skeletons = binary_skeletonize(masks, iterations)  # the soft skeleton of the 0/1 masks
        d_norm, r_norm, inverse = radius_weights(masks, skeletons, cap=float(iterations + 1))
        k = true.shape[1]
        skel_l, skel_p = skeletons[:, :k], skeletons[:, k:]
        d_l, d_p = d_norm[:, :k], d_norm[:, k:]
        r_l, r_p = r_norm[:, :k], r_norm[:, k:]
        i_l, i_p = inverse[:, :k], inverse[:, k:]
    axes = (0, *range(2, probs.ndim)) if batch_dice else tuple(range(2, probs.ndim))
    sums = [
        (probs * (i_p * d_l)).sum(axes),                                      # sum Q_sp Q_vl
        (probs * i_p * torch.where(skel_l, r_l, r_p * probs)).sum(axes),      # Q_sp (Q_slvl | Q_spvp)
        (probs * (i_l * d_p)).sum(axes),                                      # sum Q_sl Q_vp
        (i_l * torch.where(skel_p, r_p * probs, r_l)).sum(axes),              # Q_sl (Q_spvp | Q_slvl)
    ]
    if batch_dice and ddp:
        sums = all_gather_sums(*sums)
    prec_num, prec_den, sens_num, sens_den = sums
    tprec = (prec_num + smooth) / (prec_den + smooth)
    tsens = (sens_num + smooth) / (sens_den + smooth)
    return -(2 * tprec * tsens / (tprec + tsens)).mean()


def _check_spatial(net_output: torch.Tensor) -> None:
    check_spatial_2d_3d(net_output, "cbDice needs 2D or 3D outputs (B, C, X, Y[, Z])")


class CbDiceLoss(ValueCheckOnce, nn.Module):
    """cbDice on nnU-Net's (logits, integer labels) pair, per foreground class (one vs. rest), averaged.

    Class c's hard prediction is ``argmax == c``, its probability map the softmax channel c. With one
    foreground class this is the reference's binary cbDice; with several, the reference merges them into one
    foreground (the max of the foreground logits) while this scores each class on its own and averages.

    Args:
        iterations: soft-skeleton iterations of the hard masks (the reference's 10); ridges deeper than
            ``iterations + 1`` voxels are not reached.
        smooth: the smoothing term s (the reference's nnU-Net trainer uses 1e-3).
        batch_dice: nnU-Net's batch_dice (sums over the batch too).
        ddp: all-gather the sums across ranks (with batch_dice), one collective.
        ignore_label: voxels with this label are background in every mask and carry no probability.

    The labels' values are checked on the first call only (no device sync afterwards).
    """

    def __init__(self, iterations: int = 10, smooth: float = 1e-3, batch_dice: bool = False, ddp: bool = False,
                 ignore_label: int | None = None) -> None:
        super().__init__()
        check_iterations(iterations)
        self.iterations, self.smooth, self.batch_dice = iterations, smooth, batch_dice
        self.ddp, self.ignore_label = ddp, ignore_label

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, smooth={self.smooth}, batch_dice={self.batch_dice}"

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits (B, C, X, Y[, Z]) and integer labels (B, 1, X, Y[, Z]); a scalar <= 0, -1 for a perfect
        prediction (the range: module docstring)."""
        check_logits_and_labels(net_output, target)
        _check_spatial(net_output)
        num_classes = net_output.shape[1]
        self.check_values_once(check_label_values, target, num_classes, self.ignore_label)
        logits = as_float_logits(net_output)
        probs = torch.softmax(logits, 1)[:, 1:]
        classes = torch.arange(1, num_classes, device=target.device).view(1, -1, *([1] * (target.ndim - 2)))
        true = target == classes  # labels outside [1, C) belong to no class
        hard = logits.argmax(1, keepdim=True) == classes
        if self.ignore_label is not None:
            valid = target != self.ignore_label
            true, hard, probs = true & valid, hard & valid, torch.where(valid, probs, 0.0)
        return cbdice_of_scored_channels(probs, hard, true, self.iterations, self.smooth, self.batch_dice, self.ddp)


class RegionCbDiceLoss(CbDiceLoss):
    """cbDice for region-based training: sigmoid outputs and binary region masks, every region scored.

    Region r is the reference's binary cbDice with ``p = sigmoid(z_r)`` and the hard prediction ``z_r > 0``
    (the two-class softmax of (0, z_r)); the loss is minus the mean over regions. Same arguments as
    ``CbDiceLoss`` except ``ignore_label`` (regions come without one here).
    """

    def __init__(self, iterations: int = 10, smooth: float = 1e-3, batch_dice: bool = False,
                 ddp: bool = False) -> None:
        super().__init__(iterations=iterations, smooth=smooth, batch_dice=batch_dice, ddp=ddp)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for region logits (B, R, X, Y[, Z]) and binary region masks of the same shape; a scalar <= 0."""
        check_logits_and_regions(net_output, target)
        _check_spatial(net_output)
        self.check_values_once(check_region_values, target)
        logits = as_float_logits(net_output)
        return cbdice_of_scored_channels(torch.sigmoid(logits), logits > 0, target.bool(), self.iterations,
                                         self.smooth, self.batch_dice, self.ddp)
