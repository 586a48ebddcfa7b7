"""Multi-class tubed skeletons: the Skeleton Recall target.

Recipe (Kirchhoff et al., ECCV 2024): binarize the labels, skeletonize (2D:
Zhang–Suen thinning, 3D: Lee's thinning), dilate ``tube_radius`` times with the
1-step cross (a city-block diamond of radius ``tube_radius``), multiply by the
labels.

Differences from the straightforward recipe, all documented on ``tubed_skeleton``:
- fallback (default on): scikit-image's 3D thinning makes some objects vanish
  (rods of 2x2, 4x4, 6x6 cross-section, a 2x2x2 blob). Each such object gets a
  principal-axis centreline instead (see ``principal_axis_centreline``). Everything
  else is bit-identical to the recipe; ``fallback=False`` reproduces it exactly.
- negative labels (nnU-Net's -1 outside the nonzero mask) and the ignore label are
  background, and never appear in the output.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nnunet_ext.skeleton.thinning import thin_2d, thin_3d


def _validated_labels(seg: np.ndarray, ignore_label: int | None) -> np.ndarray:
    """Integer label map with negative and ignore-label voxels set to 0."""
    seg = np.asarray(seg)
    if seg.ndim not in (2, 3):
        raise ValueError(
            f"tubed_skeleton expects a 2D (X, Y) or 3D (X, Y, Z) label map, got shape {seg.shape}. "
            "For a (C, X, Y[, Z]) segmentation with one channel pass seg[0].")
    if seg.dtype == bool:
        seg = seg.astype(np.int16)
    elif np.issubdtype(seg.dtype, np.floating):
        if not np.all(np.isfinite(seg)) or not np.array_equal(seg, np.round(seg)):
            raise ValueError(
                "tubed_skeleton expects integer class labels, but the segmentation holds non-integer or "
                "non-finite values. Pass the label map (e.g. argmax of probabilities), not probabilities.")
        seg = seg.astype(np.int64)
    elif not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"tubed_skeleton expects an integer label map, got dtype {seg.dtype}.")
    labels = np.where(seg > 0, seg, 0)
    if ignore_label is not None:
        labels[labels == ignore_label] = 0
    return labels


def _foreground_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Smallest box holding all nonzero voxels of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nonzero = np.flatnonzero(mask.any(axis=other))
        box.append(slice(nonzero[0], nonzero[-1] + 1))
    return tuple(box)


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
    if not mask.any():
        return skeleton
    box = _foreground_box(mask)
    crop = mask[box]
    if mask.ndim == 2:
        skeleton[box] = thin_2d(crop)  # 2D thinning never deletes a whole object
        return skeleton
    thin, vanished = thin_3d(crop, planar=mask.shape[0] == 1)
    if fallback and len(vanished):
        _restore_vanished(crop, thin, vanished)
    skeleton[box] = thin
    return skeleton


def dilate_diamond(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the city-block diamond of ``radius`` (= ``radius`` 1-step crosses).

    Args:
        mask: (X, Y) or (X, Y, Z) bool array.
        radius: >= 0.

    Returns:
        bool array of ``mask.shape``.
    """
    out = mask.copy()
    if radius == 0 or not mask.any():
        return out
    box = tuple(slice(max(s.start - radius, 0), min(s.stop + radius, n))
                for s, n in zip(_foreground_box(mask), mask.shape))
    grown = out[box]
    for _ in range(radius):
        previous = grown.copy()
        for axis in range(mask.ndim):
            lo = [slice(None)] * mask.ndim
            hi = [slice(None)] * mask.ndim
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            grown[tuple(lo)] |= previous[tuple(hi)]
            grown[tuple(hi)] |= previous[tuple(lo)]
    return out


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
    labels = _validated_labels(seg, ignore_label)
    if per_class:
        skeleton = np.zeros(labels.shape, dtype=bool)
        for c in np.unique(labels):
            if c > 0:
                skeleton |= skeletonize_mask(labels == c, fallback)
    else:
        skeleton = skeletonize_mask(labels > 0, fallback)
    tube = dilate_diamond(skeleton, int(tube_radius))
    return (tube * labels).astype(np.int16)
