"""Skeleton Recall (Kirchhoff et al., ECCV 2024) on stock nnU-Net: CE + Dice + w * SkeletonRecall.

Change the weight w without editing this file: use a named variant
(``nnUNetTrainerSkeletonRecall_w0p5``, ``_w2``, ``_w5``), or subclass in a module of
your own ``nnUNet_extTrainer`` folder and set ``skeleton_recall_weight``.
"""

from __future__ import annotations

from nnunet_ext.losses import LossTerm, RegionSkeletonRecallLoss, SoftSkeletonRecallLoss
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase
from nnunet_ext.trainers.skeleton_target_mixin import SkeletonTargetMixin


class nnUNetTrainerSkeletonRecall(SkeletonTargetMixin, ExtTrainerBase):
    """nnU-Net with the tubed-skeleton target and the soft skeleton recall term (weight 1)."""

    skeleton_recall_weight: float = 1.0

    def extra_loss_terms(self) -> list[LossTerm]:
        recall_class = RegionSkeletonRecallLoss if self.label_manager.has_regions else SoftSkeletonRecallLoss
        recall = recall_class(batch_dice=self.configuration_manager.batch_dice, smooth=1e-5, ddp=self.is_ddp)
        return [LossTerm(recall, self.skeleton_recall_weight, "skeleton")]


class nnUNetTrainerSkeletonRecall_w0p5(nnUNetTrainerSkeletonRecall):
    skeleton_recall_weight = 0.5


class nnUNetTrainerSkeletonRecall_w2(nnUNetTrainerSkeletonRecall):
    skeleton_recall_weight = 2.0


class nnUNetTrainerSkeletonRecall_w5(nnUNetTrainerSkeletonRecall):
    skeleton_recall_weight = 5.0


class nnUNetTrainerSkeletonRecallPerClass(nnUNetTrainerSkeletonRecall):
    """Skeletonizes each class on its own: a thin class touching a thick one keeps its own centreline
    (the binarized default skeletonizes their union, whose centreline may run through the thick class only)."""

    skeleton_per_class = True
