"""Trainer mixin: extra loss terms added next to nnU-Net's own loss at every scale.

nnU-Net builds its Dice + CE loss and wraps it for deep supervision. Instead of
re-writing ``_build_loss``, we take what nnU-Net built and put it into a
``CompoundLoss`` together with the trainer's extra terms, inside nnU-Net's own
deep-supervision wrapper, so every output scale gets every term with nnU-Net's
scale weights.

Mix in before the nnU-Net trainer class and override ``extra_loss_terms``.
"""

from __future__ import annotations

from collections.abc import Sequence

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn

from nnunet_ext.losses import CompoundLoss, LossTerm


def extend_nnunet_loss(loss: nn.Module, extra_terms: Sequence[LossTerm]) -> nn.Module:
    """nnU-Net's loss (deep-supervision wrapped or not) plus ``extra_terms`` at each scale."""
    if not extra_terms:
        return loss
    if isinstance(loss, DeepSupervisionWrapper):
        loss.loss = CompoundLoss([LossTerm(loss.loss, 1.0, "labels"), *extra_terms])
        return loss
    return CompoundLoss([LossTerm(loss, 1.0, "labels"), *extra_terms])


class LossTermsMixin:
    """Adds ``extra_loss_terms()`` to the loss nnU-Net builds."""

    def extra_loss_terms(self) -> list[LossTerm]:
        return []

    def _build_loss(self) -> nn.Module:
        loss = extend_nnunet_loss(super()._build_loss(), self.extra_loss_terms())
        self.print_to_log_file(f"nnunet_ext loss: {loss}")
        return loss
