"""The U-Net border weight map (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015), numpy, for the data-loader workers.

Per voxel x of a label map::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

* ``w_c(x) = N / (K * N_c)`` for the class c of x: N the voxels that count (all but the ignore label's), K the
  classes present among them, N_c the voxels of class c. Every class then weighs the same in total (N / K).
* The border term only on background voxels: d1, d2 the Euclidean distances (in voxels) to the nearest and the
  second-nearest foreground *object* (connected component of all foreground classes together, full
  connectivity: 8 neighbours in 2D, 26 in 3D). With fewer than two objects there is no border term. It is large
  in the thin background gaps between touching objects (cells, glands), which the network must learn to keep.
* Ignore-label voxels get weight 0 and count in no class; negative labels (nnU-Net's -1 outside the image) are
  background.

Fast with many objects: each object's distance field is computed only inside its bounding box grown by
``r = sigma * sqrt(2 ln(1 / truncation))``, and the two smallest distances are tracked per voxel. An object
farther than r from a voxel only matters there through a border term ``<= w0 * exp(-r^2 / (2 sigma^2)) =
w0 * truncation``; the map differs from the exact one by at most ``w0 * truncation`` (1e-3 with the defaults).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from nnunet_ext.distance.label_fields import euclidean_distances
from nnunet_ext.losses.input_checks import check_non_negative, check_positive


def border_radius(sigma: float, truncation: float) -> float:
    """Distance beyond which an object's border term is below ``truncation * w0``: ``sigma sqrt(2 ln(1/t))``."""
    return sigma * math.sqrt(2.0 * math.log(1.0 / truncation))


def _check_arguments(labels: np.ndarray, w0: float, sigma: float, truncation: float) -> None:
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be one label map shaped (X, Y) or (X, Y, Z), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        if not np.issubdtype(labels.dtype, np.floating) or not np.array_equal(labels, np.round(labels)):
            raise ValueError("labels must hold integer class labels (0 = background); found non-integer values. "
                             "Make sure the label map is not interpolated (nearest-neighbour resampling)")
    check_non_negative("w0", w0, "the paper: 10")
    check_positive("sigma", sigma, "in voxels; the paper: about 5")
    if not 0 < truncation < 1:
        raise ValueError(f"truncation must lie in (0, 1), got {truncation!r}")


def class_weights(classes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``N / (K * N_c)`` on every known voxel of class c, 0 on the others; float64, ``classes``' shape.

    ``classes``: non-negative integer classes."""
    all_known = bool(known.all())
    counts = np.bincount((classes if all_known else classes[known]).ravel())
    present = np.count_nonzero(counts)
    if not present:
        return np.zeros(classes.shape, dtype=np.float64)
    per_class = np.divide(known.sum(), present * counts, out=np.zeros(len(counts)), where=counts > 0)
    if all_known:  # (no copy of the patch through a mask, no clipping: the common case is fast)
        return per_class[classes]
    return np.where(known, per_class[np.minimum(classes, len(counts) - 1)], 0.0)


def two_nearest_object_distances(objects: np.ndarray, count: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances (in voxels) of every voxel to its nearest and second-nearest object, each object's distances
    computed inside its bounding box grown by ``radius`` (inf where fewer objects lie that close).

    ``objects``: connected-component labels 1..count (0 elsewhere), as ``scipy.ndimage.label`` returns them.
    """
    nearest = np.full(objects.shape, np.inf, dtype=np.float32)
    second = np.full(objects.shape, np.inf, dtype=np.float32)
    margin = math.ceil(radius)
    unit = (1.0,) * objects.ndim
    for index, box in enumerate(ndimage.find_objects(objects, count), start=1):
        grown = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, objects.shape))
        distance = euclidean_distances(objects[grown] != index, unit)
        first, other = nearest[grown], second[grown]  # views: updated in place
        np.minimum(other, np.maximum(first, distance), out=other)
        np.minimum(first, distance, out=first)
    return nearest, second


def unet_weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0, ignore_label: int | None = None,
                    truncation: float = 1e-4) -> np.ndarray:
    """The U-Net weight map of one label map (X, Y) or (X, Y, Z); float32, same shape (see the module docstring).

    Args:
        labels: integer class labels (0 = background).
        w0: height of the border term (the paper: 10).
        sigma: width of the border term in voxels (the paper: about 5).
        ignore_label: voxels with this label get weight 0 and count in no class.
        truncation: objects farther than ``sigma sqrt(2 ln(1/truncation))`` from a voxel are not looked at there;
            the border term is then off by at most ``w0 * truncation``.
    """
    labels = np.asarray(labels)
    _check_arguments(labels, w0, sigma, truncation)
    known = np.ones(labels.shape, dtype=bool) if ignore_label is None else labels != ignore_label
    classes = np.maximum(labels, 0)  # (negative labels are background)
    if classes.dtype.kind not in "iu":  # integer-valued floats, bools
        classes = classes.astype(np.intp)
    weights = class_weights(classes, known)
    foreground = known & (classes > 0)
    objects, count = ndimage.label(foreground, structure=np.ones((3,) * labels.ndim, dtype=bool))
    if count >= 2 and w0 > 0:
        nearest, second = two_nearest_object_distances(objects, count, border_radius(sigma, truncation))
        background = known & ~foreground & np.isfinite(second)
        weights[background] += w0 * np.exp(-((nearest[background] + second[background]) ** 2) / (2 * sigma ** 2))
    return weights.astype(np.float32)
