"""Losses of nnunet_ext (torch; usable without nnU-Net), and the U-Net weight map they read (numpy)."""

from nnunet_ext.losses.cbdice import CbDiceLoss, RegionCbDiceLoss
from nnunet_ext.losses.classification_guided import ClassificationGuidedLoss, patch_contains_foreground
from nnunet_ext.losses.clce import ClCELoss, RegionClCELoss
from nnunet_ext.losses.cldice import RegionClDiceLoss, SoftClDiceLoss, soft_cldice
from nnunet_ext.losses.combo import ComboLoss, RegionComboLoss
from nnunet_ext.losses.compound import CompoundLoss, LossTerm
from nnunet_ext.losses.hausdorff_dt import HausdorffDTLoss, RegionHausdorffDTLoss
from nnunet_ext.losses.hybrid import HybridLoss, focal_loss, ms_ssim_loss, soft_iou_loss
from nnunet_ext.losses.ms_ssim import ms_ssim, ms_ssim_plan
from nnunet_ext.losses.skeleton_recall import RegionSkeletonRecallLoss, SoftSkeletonRecallLoss
from nnunet_ext.losses.soft_skeleton import soft_skeletonize
from nnunet_ext.losses.target_layout import TARGET_BLOCKS, TargetLayout
from nnunet_ext.losses.unet_weight_map import unet_weight_map
from nnunet_ext.losses.weighted_ce import WeightedCrossEntropyLoss

__all__ = [
    "CbDiceLoss",
    "ClCELoss",
    "ClassificationGuidedLoss",
    "ComboLoss",
    "CompoundLoss",
    "HausdorffDTLoss",
    "HybridLoss",
    "LossTerm",
    "RegionCbDiceLoss",
    "RegionClCELoss",
    "RegionClDiceLoss",
    "RegionComboLoss",
    "RegionHausdorffDTLoss",
    "RegionSkeletonRecallLoss",
    "SoftClDiceLoss",
    "SoftSkeletonRecallLoss",
    "TARGET_BLOCKS",
    "TargetLayout",
    "WeightedCrossEntropyLoss",
    "focal_loss",
    "ms_ssim",
    "ms_ssim_loss",
    "ms_ssim_plan",
    "patch_contains_foreground",
    "soft_cldice",
    "soft_iou_loss",
    "soft_skeletonize",
    "unet_weight_map",
]
