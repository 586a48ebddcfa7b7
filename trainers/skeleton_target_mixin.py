"""Trainer mixin: the tubed skeleton rides along in nnU-Net's target, after the labels.

The ``skeleton`` block of the target (``ExtraTargetMixin``): ``SkeletonTransform`` appends the tubed skeleton
of the label map (target: labels, skeleton; 2 channels); in region-based training ``RegionSkeletonTransform``
appends one tubed skeleton per region after nnU-Net's region conversion (R regions, R skeletons; 2R channels).
Both run before nnU-Net's deep-supervision downsampling, so each output scale gets a skeleton target at its
own resolution.

Mix in before the nnU-Net trainer class: ``class T(SkeletonTargetMixin, nnUNetTrainer)``.
"""

from __future__ import annotations

from nnunet_ext.trainers.extra_target_mixin import ExtraTargetMixin, TargetContext
from nnunet_ext.transforms import RegionSkeletonTransform, SkeletonTransform
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform


class SkeletonTargetMixin(ExtraTargetMixin):
    """Adds the ``skeleton`` target block: ``SkeletonTransform`` (or ``RegionSkeletonTransform``).

    Class attributes (override in a subclass to change them):
        skeleton_tube_radius: dilations of the skeleton with the 1-step cross (paper: 2).
        skeleton_per_class: skeletonize each class on its own (touching classes).
        skeleton_fallback: repair 3D objects that Lee's thinning deletes entirely.
    """

    skeleton_tube_radius: int = 2
    skeleton_per_class: bool = False
    skeleton_fallback: bool = True

    @classmethod
    def skeleton_transform(cls, ignore_label: int | None) -> SkeletonTransform:
        return SkeletonTransform(tube_radius=cls.skeleton_tube_radius, per_class=cls.skeleton_per_class,
                                 fallback=cls.skeleton_fallback, ignore_label=ignore_label)

    @classmethod
    def region_skeleton_transform(cls, num_regions: int) -> RegionSkeletonTransform:
        return RegionSkeletonTransform(num_regions, tube_radius=cls.skeleton_tube_radius,
                                       fallback=cls.skeleton_fallback)

    @classmethod
    def extra_target_transforms(cls, context: TargetContext) -> list[ExtraTargetTransform]:
        skeleton = (cls.skeleton_transform(context.ignore_label) if context.regions is None
                    else cls.region_skeleton_transform(len(context.regions)))
        return [*super().extra_target_transforms(context), skeleton]

    def initialize(self) -> None:
        super().initialize()
        self.print_to_log_file(
            f"nnunet_ext skeleton target: tube_radius={self.skeleton_tube_radius}, "
            f"per_class={self.skeleton_per_class}, fallback={self.skeleton_fallback}")
