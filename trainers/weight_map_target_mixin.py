"""Trainer mixin: the U-Net weight map rides along in nnU-Net's target (``weights`` block).

``UNetWeightMapTransform`` appends the weight map of the label map (target: labels, weights), computed in the
data-loader workers on each augmented patch, before nnU-Net's deep-supervision downsampling (which samples it
at every output scale). Region-based training is refused: regions overlap, so a voxel has no single class and
the class-balancing weight is undefined.
"""

from __future__ import annotations

from nnunet_ext.trainers.extra_target_mixin import ExtraTargetMixin, TargetContext
from nnunet_ext.trainers.region_checks import RegionDefinitionError
from nnunet_ext.transforms import UNetWeightMapTransform
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform

REGION_CAPABLE_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerHausdorffDT", "nnUNetTrainerSkeletonRecall",
                           "nnUNetTrainerClDice")


def refuse_regions(trainer_name: str) -> RegionDefinitionError:
    return RegionDefinitionError(
        f"{trainer_name} does not support region-based training (dataset.json 'regions'): regions overlap, so a voxel "
        f"has no single class and the U-Net weight map's class weights N / (K * N_c) are undefined. Train this dataset "
        f"with {', '.join(REGION_CAPABLE_TRAINERS)}, or define plain (non-overlapping) labels")


class WeightMapTargetMixin(ExtraTargetMixin):
    """Adds the ``weights`` target block: ``UNetWeightMapTransform``.

    Class attributes (override in a subclass): ``unet_w0`` (10), ``unet_sigma`` (5 voxels), as in the paper.
    """

    unet_w0: float = 10.0
    unet_sigma: float = 5.0

    @classmethod
    def extra_target_transforms(cls, context: TargetContext) -> list[ExtraTargetTransform]:
        if context.regions is not None:
            raise refuse_regions(cls.__name__)
        weights = UNetWeightMapTransform(cls.unet_w0, cls.unet_sigma, context.ignore_label)
        return [*super().extra_target_transforms(context), weights]

    def initialize(self) -> None:
        if self.label_manager.has_regions:
            raise refuse_regions(type(self).__name__)
        super().initialize()
