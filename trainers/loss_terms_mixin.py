"""Trainer mixin: compose our loss terms with (or instead of) nnU-Net's own loss, at every scale.

nnU-Net builds its Dice + CE loss and wraps it for deep supervision. Instead of
re-writing ``_build_loss``, we take what nnU-Net built and swap only its inner loss:
optionally a replacement for Dice + CE, plus the trainer's extra terms, as a
``CompoundLoss`` inside nnU-Net's own deep-supervision wrapper, so every output
scale gets every term with nnU-Net's scale weights.

Mix in before the nnU-Net trainer class; override ``extra_loss_terms`` and/or
``replacement_base_loss`` (each returns the sigmoid region variant of its losses when
``self.label_manager.has_regions``). The terms read the blocks of ``target_layout()`` (labels only here;
``ExtraTargetMixin`` adds the blocks its transforms append).
"""

from __future__ import annotations

from collections.abc import Sequence

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn

from nnunet_ext.losses import CompoundLoss, LossTerm, TargetLayout
from nnunet_ext.trainers.region_checks import check_region_definitions


def compose_with_nnunet_loss(loss: nn.Module, extra_terms: Sequence[LossTerm],
                             replacement: nn.Module | None = None, label_channels: int = 1,
                             layout: TargetLayout | None = None) -> nn.Module:
    """nnU-Net's loss (deep-supervision wrapped or not) with its inner loss replaced and/or extended.

    ``label_channels``: target channels of the labels block (1, or the number of regions); ``layout``: the
    target's blocks (default: labels and skeleton with ``label_channels`` channels each).
    """
    wrapped = isinstance(loss, DeepSupervisionWrapper)
    base = replacement if replacement is not None else (loss.loss if wrapped else loss)
    inner = (CompoundLoss([LossTerm(base, 1.0, "labels"), *extra_terms], label_channels, layout) if extra_terms
             else base)
    if wrapped:
        loss.loss = inner
        return loss
    return inner


class LossTermsMixin:
    """Builds nnU-Net's loss, then applies ``replacement_base_loss()`` and ``extra_loss_terms()``."""

    def extra_loss_terms(self) -> list[LossTerm]:
        """Terms added next to the base loss (default: none)."""
        return []

    def replacement_base_loss(self) -> nn.Module | None:
        """A loss used instead of nnU-Net's Dice + CE (default: None, keep nnU-Net's)."""
        return None

    def adjust_nnunet_loss(self, loss: nn.Module) -> None:
        """Change nnU-Net's own (inner, per-scale) loss in place before it becomes the base term (default: keep it)."""

    def target_layout(self) -> TargetLayout:
        """The blocks of the training target (default: the labels alone)."""
        manager = self.label_manager
        return TargetLayout([("labels", manager.num_segmentation_heads if manager.has_regions else 1)])

    def _build_loss(self) -> nn.Module:
        extra_terms, replacement = self.extra_loss_terms(), self.replacement_base_loss()
        label_channels = 1
        if self.label_manager.has_regions:
            losses = [term.loss for term in extra_terms] + ([] if replacement is None else [replacement])
            if losses:
                check_region_definitions(self.label_manager.foreground_regions,
                                         self.label_manager.regions_class_order, self.label_manager.ignore_label,
                                         type(self).__name__, losses)
            label_channels = self.label_manager.num_segmentation_heads
        nnunet_loss = super()._build_loss()
        if replacement is None:
            wrapped = isinstance(nnunet_loss, DeepSupervisionWrapper)
            self.adjust_nnunet_loss(nnunet_loss.loss if wrapped else nnunet_loss)
        loss = compose_with_nnunet_loss(nnunet_loss, extra_terms, replacement, label_channels, self.target_layout())
        self.print_to_log_file(f"nnunet_ext loss: {loss}")
        return loss
