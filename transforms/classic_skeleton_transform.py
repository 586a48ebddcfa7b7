"""Skeleton Recall target for classic batchgenerators (v1) pipelines.

``ClassicSkeletonTransform`` works on whole batches (B, C, X, Y[, Z]) of numpy
arrays, as v1 transforms do, and computes the tubed skeleton sample by sample.
"""

from __future__ import annotations

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform

from nnunet_ext.skeleton import tubed_skeleton
from nnunet_ext.transforms.skeleton_transform import check_ignore_label, check_tube_radius


class ClassicSkeletonTransform(AbstractTransform):
    """Tubed skeletons of a batch of single-channel label maps.

    ``data_dict[seg_key]``: (B, 1, X, Y[, Z]) label maps (numpy). Writes
    ``data_dict[output_key]`` = (B, 1, X, Y[, Z]) int16 tubed skeletons (class label on
    the tube, 0 elsewhere). If ``output_key == seg_key`` the skeleton is appended to the
    segmentation as channel 1 instead: (B, 2, X, Y[, Z]) with the segmentation's dtype.

    Args:
        tube_radius: dilations of the skeleton with the 1-step cross (2 = the paper's tube).
        per_class: skeletonize each class separately (see ``tubed_skeleton``).
        fallback: repair objects that 3D thinning deletes entirely (see ``tubed_skeleton``).
        ignore_label: ignore label; treated as background, never on the skeleton.
        seg_key: key of the segmentation in the data dict.
        output_key: key the skeletons are written to.
    """

    def __init__(self, tube_radius: int = 2, per_class: bool = False, fallback: bool = True,
                 ignore_label: int | None = None, seg_key: str = "seg", output_key: str = "skel") -> None:
        self.tube_radius = check_tube_radius(tube_radius)
        self.per_class = bool(per_class)
        self.fallback = bool(fallback)
        self.ignore_label = check_ignore_label(ignore_label)
        self.seg_key = seg_key
        self.output_key = output_key

    def _skeletons(self, seg: np.ndarray) -> np.ndarray:
        """(B, 1, X, Y[, Z]) label maps -> (B, 1, X, Y[, Z]) int16 tubed skeletons."""
        out = np.zeros(seg.shape, dtype=np.int16)
        for b in range(seg.shape[0]):
            try:
                out[b, 0] = tubed_skeleton(seg[b, 0], tube_radius=self.tube_radius, per_class=self.per_class,
                                           fallback=self.fallback, ignore_label=self.ignore_label)
            except ValueError as e:
                raise ValueError(
                    f"ClassicSkeletonTransform (sample {b} of data_dict[{self.seg_key!r}]): {e}") from e
        return out

    def __call__(self, **data_dict) -> dict:
        """Add the skeletons to ``data_dict`` (see the class docstring) and return it."""
        if data_dict.get(self.seg_key) is None:
            raise ValueError(
                f"ClassicSkeletonTransform needs the segmentation in data_dict[{self.seg_key!r}], but that "
                f"key is missing or None (keys: {sorted(data_dict)}). Set seg_key to the key of your "
                "label maps.")
        seg = np.asarray(data_dict[self.seg_key])
        if seg.ndim not in (4, 5):
            raise ValueError(
                f"ClassicSkeletonTransform expects data_dict[{self.seg_key!r}] as a batch of shape "
                f"(B, C, X, Y) or (B, C, X, Y, Z) with C == 1, got shape {seg.shape}.")
        if seg.shape[1] != 1:
            raise ValueError(
                "ClassicSkeletonTransform needs a single-channel label map (C == 1), got "
                f"{seg.shape[1]} channels in data_dict[{self.seg_key!r}] (shape {seg.shape}). Region-based "
                "(overlapping) targets are not supported by this classic transform (RegionSkeletonTransform "
                "handles them in batchgeneratorsv2 pipelines); apply it to the plain label map, before any "
                "conversion to regions and before deep-supervision downsampling.")
        skeletons = self._skeletons(seg)
        if self.output_key == self.seg_key:
            data_dict[self.seg_key] = np.concatenate([seg, skeletons.astype(seg.dtype, copy=False)], axis=1)
        else:
            data_dict[self.output_key] = skeletons
        return data_dict

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(tube_radius={self.tube_radius}, per_class={self.per_class}, "
                f"fallback={self.fallback}, ignore_label={self.ignore_label}, seg_key={self.seg_key!r}, "
                f"output_key={self.output_key!r})")
