"""Pixel-weighted cross entropy (the U-Net paper's loss): ``mean_x w(x) * CE(x)``.

``CE(x) = -log softmax(z(x))[label(x)]`` and ``w`` a weight map such as ``unet_weight_map`` (the ``weights``
target block in nnU-Net training, computed in the data-loader workers). The mean runs over the voxels that
count: all of them, or, with an ignore label, those without it (as nnU-Net's cross entropy); ignore-label
voxels add nothing whatever their weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.losses.input_checks import ValueCheckOnce, check_label_values, check_logits_and_labels
from nnunet_ext.losses.prepare import as_float_logits, class_index


def check_weight_values(weights: torch.Tensor) -> None:
    """Weights are finite and >= 0; one host sync. Raises ValueError otherwise."""
    if (~torch.isfinite(weights) | (weights < 0)).any().item():
        raise ValueError("weights must be finite and >= 0 (a weight map such as unet_weight_map's), found negative, "
                         "NaN or infinite values; pass the 'weights' block of the target, not labels")


class WeightedCrossEntropyLoss(ValueCheckOnce, nn.Module):
    """``sum_x w(x) CE(x) / (number of voxels that count)`` for softmax logits.

    Args:
        ignore_label: voxels with this label are left out (their weight is treated as 0, they are not counted).

    The label and weight values are checked on the first call only.
    """

    def __init__(self, ignore_label: int | None = None) -> None:
        super().__init__()
        self.ignore_label = ignore_label

    def extra_repr(self) -> str:
        return f"ignore_label={self.ignore_label}"

    @staticmethod
    def _check_values(labels: torch.Tensor, num_classes: int, ignore_label: int | None,
                      weights: torch.Tensor) -> None:
        check_label_values(labels, num_classes, ignore_label)
        check_weight_values(weights)

    def forward(self, net_output: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Loss for logits (B, C, *spatial), integer labels (B, 1, *spatial) and weights (B, 1, *spatial); scalar.

        Non-finite logits give a non-finite loss.
        """
        check_logits_and_labels(net_output, labels)
        if weights.shape != labels.shape:
            raise ValueError(f"weights must be shaped (B, 1, *spatial) = {tuple(labels.shape)} like the labels, got "
                             f"{tuple(weights.shape)}; pass the 'weights' block of the target (UNetWeightMapTransform) "
                             f"at the scale of net_output")
        num_classes = net_output.shape[1]
        self.check_values_once(self._check_values, labels, num_classes, self.ignore_label, weights)
        cross_entropy = F.cross_entropy(as_float_logits(net_output), class_index(labels, num_classes)[:, 0],
                                        reduction="none")[:, None]  # (B, 1, *spatial)
        weighted = weights.to(cross_entropy.dtype) * cross_entropy
        if self.ignore_label is None:
            return weighted.mean()
        valid = labels != self.ignore_label
        return torch.where(valid, weighted, 0).sum() / valid.sum().clamp_min(1)
