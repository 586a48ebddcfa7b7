"""Multi-class tubed skeletons: the Skeleton Recall target.

Recipe (Kirchhoff et al., ECCV 2024): binarize the labels, skeletonize (2D:
Zhang–Suen thinning, 3D: Lee's thinning), dilate ``tube_radius`` times with the
1-step cross (a city-block diamond of radius ``tube_radius``), multiply by the
labels.

The work is sparse: the thinning visits only the foreground of its bounding box,
the tube is stamped around the skeleton voxels and only the tube's labels are read,
so a sample costs little beyond two passes over the label map (``> 0``, nonzero).

Differences from the straightforward recipe, all documented on ``tubed_skeleton``:
- fallback (default on): scikit-image's 3D thinning makes some objects vanish
  (rods of 2x2, 4x4, 6x6 cross-section, a 2x2x2 blob). Each such object gets a
  principal-axis centreline instead (see ``principal_axis_centreline``). Everything
  else is bit-identical to the recipe; ``fallback=False`` reproduces it exactly.
- negative labels (nnU-Net's -1 outside the nonzero mask) and the ignore label are
  background, and never appear in the output.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from nnunet_ext.skeleton.thinning import thin_2d, thin_padded_3d


def _integer_labels(seg: np.ndarray) -> np.ndarray:
    """``seg`` as an integer array (integer input is returned as is); ValueError for anything else."""
    seg = np.asarray(seg)
    if seg.ndim not in (2, 3):
        raise ValueError(
            f"tubed_skeleton expects a 2D (X, Y) or 3D (X, Y, Z) label map, got shape {seg.shape}. "
            "For a (C, X, Y[, Z]) segmentation with one channel pass seg[0].")
    if seg.dtype == bool:
        return seg.astype(np.int16)
    if np.issubdtype(seg.dtype, np.floating):
        if not np.all(np.isfinite(seg)) or not np.array_equal(seg, np.round(seg)):
            raise ValueError(
                "tubed_skeleton expects integer class labels, but the segmentation holds non-integer or "
                "non-finite values. Pass the label map (e.g. argmax of probabilities), not probabilities.")
        return seg.astype(np.int64)
    if not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"tubed_skeleton expects an integer label map, got dtype {seg.dtype}.")
    return seg


def _foreground(labels: np.ndarray, ignore_label: int | None) -> np.ndarray:
    """bool mask of the voxels with a positive label other than ``ignore_label``."""
    foreground = labels > 0
    if ignore_label is not None:
        foreground &= labels != ignore_label
    return foreground


def _nonzero_points(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Coordinates of the nonzero voxels of ``mask`` in raster (C) order: ndim int64 arrays of length n."""
    return np.unravel_index(np.flatnonzero(mask), mask.shape)


def _bounding_box(points: tuple[np.ndarray, ...]) -> tuple[slice, ...]:
    """Smallest box holding a non-empty set of raster-ordered points."""
    first = slice(int(points[0][0]), int(points[0][-1]) + 1)  # raster order sorts the first axis
    return (first,) + tuple(slice(int(p.min()), int(p.max()) + 1) for p in points[1:])


def principal_axis_centreline(obj: np.ndarray) -> np.ndarray:
    """A one-voxel centreline of an object along its longest principal axis.

    The object's voxels are binned by their (rounded) coordinate along the first
    principal axis of their positions; in each bin, the voxel nearest the bin's
    centre of mass is kept (ties: the first in raster order). For a straight rod
    this is the central line over its whole length; every kept voxel lies inside
    the object, and a non-empty object always gets at least one.

    Args:
        obj: (X, Y[, Z]) bool array.

    Returns:
        bool array of ``obj.shape``.
    """
    coords = np.argwhere(obj)
    out = np.zeros(obj.shape, dtype=bool)
    if len(coords) == 0:
        return out
    centred = coords - coords.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    position = centred @ axis
    bins = np.round(position - position.min()).astype(np.int64)
    counts = np.bincount(bins)
    centres = np.stack([np.bincount(bins, weights=coords[:, d]) for d in range(obj.ndim)], axis=1)
    centres /= np.maximum(counts, 1)[:, None]
    distance = np.linalg.norm(coords - centres[bins], axis=1)
    order = np.lexsort((np.arange(len(coords)), distance, bins))  # by bin, then distance, then raster
    first_in_bin = order[np.r_[True, np.diff(bins[order]) != 0]]
    out[tuple(coords[first_in_bin].T)] = True
    return out


def _object_at(mask: np.ndarray, seed: np.ndarray, margin: int = 8) -> tuple[tuple[slice, ...], np.ndarray]:
    """The 26-connected object of ``mask`` holding ``seed``: (box, object mask inside the box).

    Labels a box around the seed and widens it until the object does not touch a
    box face that lies inside the array (vanishing objects are small: cheap).
    """
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    while True:
        box = tuple(slice(max(int(c) - margin, 0), min(int(c) + margin + 1, n)) for c, n in zip(seed, mask.shape))
        components, _ = ndimage.label(mask[box], structure=structure)
        obj = components == components[tuple(int(c) - b.start for c, b in zip(seed, box))]
        inner_faces_touched = any(
            (b.start > 0 and obj.take(0, axis=a).any()) or (b.stop < n and obj.take(-1, axis=a).any())
            for a, (b, n) in enumerate(zip(box, mask.shape)))
        if not inner_faces_touched:
            return box, obj
        margin *= 2


def _restore_vanished(mask: np.ndarray, skeleton: np.ndarray, vanished: np.ndarray) -> None:
    """Give every object that lost all its voxels a principal-axis centreline (in place)."""
    for seed in vanished:  # one voxel per vanished object
        box, obj = _object_at(mask, seed)
        skeleton[box] |= principal_axis_centreline(obj)


def _thinned_3d(mask: np.ndarray, points: tuple[np.ndarray, ...], box: tuple[slice, ...],
                fallback: bool) -> tuple[np.ndarray, ...]:
    """Lee thinning of ``mask`` (X, Y, Z) on its foreground box; ``points``: its foreground voxels in raster
    order. Returns the skeleton voxels' coordinates relative to ``box``."""
    shape = tuple(b.stop - b.start + 2 for b in box)  # the box with a zero border of 1
    padded = np.zeros(shape, dtype=np.uint8)
    active = np.ravel_multi_index(tuple(p - (b.start - 1) for p, b in zip(points, box)), shape)
    padded.reshape(-1)[active] = 1
    skeleton, vanished = thin_padded_3d(padded, active, planar=mask.shape[0] == 1)
    skeleton_points = tuple(p - 1 for p in np.unravel_index(skeleton, shape))
    if not (fallback and len(vanished)):
        return skeleton_points
    thin = np.zeros(tuple(s - 2 for s in shape), dtype=bool)
    thin[skeleton_points] = True
    vanished_points = np.stack(np.unravel_index(vanished, shape), axis=1) - 1
    _restore_vanished(mask[box], thin, vanished_points)
    return np.nonzero(thin)


def _skeleton_points(mask: np.ndarray, fallback: bool) -> tuple[np.ndarray, ...]:
    """Coordinates of the skeleton voxels of a binary (X, Y[, Z]) mask: ndim int arrays (may be empty)."""
    points = _nonzero_points(mask)
    if len(points[0]) == 0:
        return points
    box = _bounding_box(points)
    if mask.ndim == 2:
        local = np.nonzero(thin_2d(mask[box]))  # 2D thinning never deletes a whole object
    else:
        local = _thinned_3d(mask, points, box, fallback)
    return tuple(p + b.start for p, b in zip(local, box))


def skeletonize_mask(mask: np.ndarray, fallback: bool = True) -> np.ndarray:
    """Skeleton of a binary mask, computed on its foreground box.

    Args:
        mask: (X, Y) or (X, Y, Z) bool array.
        fallback: repair objects that scikit-image's 3D thinning deletes entirely.

    Returns:
        bool array of ``mask.shape``; equals ``skimage.morphology.skeletonize(mask)``
        when ``fallback`` is False (or nothing vanished).
    """
    skeleton = np.zeros(mask.shape, dtype=bool)
    skeleton[_skeleton_points(mask, fallback)] = True
    return skeleton


@functools.lru_cache(maxsize=16)
def _diamond_offsets(ndim: int, radius: int) -> np.ndarray:
    """(m, ndim) int64 offsets of the city-block diamond of ``radius`` (all o with sum |o| <= radius)."""
    axis = np.arange(-radius, radius + 1)
    grid = np.stack(np.meshgrid(*([axis] * ndim), indexing="ij"), axis=-1).reshape(-1, ndim)
    offsets = grid[np.abs(grid).sum(axis=1) <= radius].astype(np.int64)
    offsets.flags.writeable = False
    return offsets


def _tube_indices(points: tuple[np.ndarray, ...], shape: tuple[int, ...], radius: int) -> np.ndarray:
    """Flat (C-order) indices of the diamond dilation of ``points`` inside an array of ``shape``.

    The dilation is the union of the diamond placed on every point (indices may repeat).
    Near the array faces the diamond's coordinates are clipped to the array: a clipped
    voxel is still within ``radius`` of its point, so this gives the same set as
    ``radius`` 1-step cross dilations clipped at the faces.
    """
    coords = np.stack(points, axis=1).astype(np.int64)  # (n, ndim)
    offsets = _diamond_offsets(len(shape), radius)
    upper = np.array(shape, dtype=np.int64) - 1
    strides = np.array([int(np.prod(shape[d + 1:])) for d in range(len(shape))], dtype=np.int64)
    near_face = np.any((coords < radius) | (coords > upper - radius), axis=1)
    inner = (coords[~near_face] @ strides)[:, None] + (offsets @ strides)[None, :]
    edge = np.clip(coords[near_face][:, None, :] + offsets[None], 0, upper) @ strides
    return np.concatenate([inner.reshape(-1), edge.reshape(-1)])


def dilate_diamond(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the city-block diamond of ``radius`` (= ``radius`` 1-step crosses).

    Args:
        mask: (X, Y) or (X, Y, Z) bool array.
        radius: >= 0.

    Returns:
        bool array of ``mask.shape``.
    """
    out = np.zeros(mask.shape, dtype=bool)
    out.reshape(-1)[_tube_indices(_nonzero_points(mask), mask.shape, radius)] = True
    return out


def _class_skeleton_points(labels: np.ndarray, foreground: np.ndarray, fallback: bool) -> tuple[np.ndarray, ...]:
    """Skeleton voxels of every foreground class skeletonized on its own (a voxel may repeat)."""
    per_class = [_skeleton_points(labels == c, fallback) for c in np.unique(labels[foreground])]
    if not per_class:
        return _nonzero_points(foreground)  # empty
    return tuple(np.concatenate(axis_points) for axis_points in zip(*per_class))


def tubed_skeleton(seg: np.ndarray, tube_radius: int = 2, per_class: bool = False, fallback: bool = True,
                   ignore_label: int | None = None) -> np.ndarray:
    """Multi-class tubed skeleton of a label map.

    Args:
        seg: integer label map (X, Y) or (X, Y, Z); bool, or float with integral values,
            is accepted. Values <= 0 and ``ignore_label`` are background.
        tube_radius: number of dilations with the 1-step cross (2 = the paper's tube).
        per_class: skeletonize each class on its own, so that touching classes keep
            their own centrelines; the default skeletonizes the binarized foreground.
        fallback: True (default) gives every 3D object (26-connected) that scikit-image's
            thinning deletes entirely (2x2/4x4/6x6 rods, 2x2x2 blobs) the centreline of
            ``principal_axis_centreline``, so no connected foreground object is left
            without tube voxels. False reproduces the published recipe exactly.
        ignore_label: nnU-Net's ignore label, treated as background.

    Returns:
        int16 array of ``seg.shape``: the class label on the tube, 0 elsewhere. Tube
        voxels always lie inside the foreground.
    """
    if isinstance(tube_radius, bool) or not isinstance(tube_radius, (int, np.integer)) or tube_radius < 0:
        raise ValueError(f"tube_radius must be an integer >= 0, got {tube_radius!r}")
    labels = _integer_labels(seg)
    foreground = _foreground(labels, ignore_label)
    if per_class:
        points = _class_skeleton_points(labels, foreground, fallback)
    else:
        points = _skeleton_points(foreground, fallback)
    tube = _tube_indices(points, labels.shape, int(tube_radius))
    out = np.zeros(labels.shape, dtype=np.int16)
    values = labels.reshape(-1)[tube]
    out.reshape(-1)[tube] = np.where(_foreground(values, ignore_label), values, 0).astype(np.int16)
    return out
