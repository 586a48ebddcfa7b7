"""The workers' ground-truth distance fields (``edt`` package, one multi-label pass for the inside distances)
against the straightforward scipy definition, on random label maps: 2D and 3D, anisotropic spacing, absent and
full classes, nnU-Net's -1 outside label, an ignore label present or not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from nnunet_ext.distance import boundary_distance_field, class_boundary_distances


def scipy_field(mask: np.ndarray, spacing: tuple[float, ...], unknown: np.ndarray | None) -> np.ndarray:
    """``edt(mask) + edt(~mask)`` with scipy; unknown voxels count as inside for the inside distances, get 0."""
    known_outside = ~mask if unknown is None else ~(mask | unknown)
    if unknown is not None:
        mask = mask & ~unknown
    if not mask.any() or not known_outside.any():
        return np.zeros(mask.shape)
    inside = np.where(mask, distance_transform_edt(~known_outside, sampling=spacing), 0.0)
    return inside + np.where(known_outside, distance_transform_edt(~mask, sampling=spacing), 0.0)


@pytest.mark.parametrize("seed", range(40))
def test_fields_equal_the_scipy_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ndim = 2 + seed % 2
    shape = tuple(int(n) for n in rng.integers(2, 40 if ndim == 2 else 18, ndim))
    if seed % 4 == 0:  # sparse objects: most voxels far from every class
        labels = (rng.random(shape) < 0.05) * rng.integers(1, 3, shape)
    else:
        labels = rng.integers(-1, 4, shape)
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, ndim))
    ignore_label = 3 if seed % 3 == 0 else None
    fields = class_boundary_distances(labels, [1, 2, 4], spacing, ignore_label)  # class 4: never present
    assert fields.dtype == np.float32 and fields.shape == (3, *shape)
    unknown = None if ignore_label is None else labels == ignore_label
    for k, c in enumerate([1, 2, 4]):
        expected = scipy_field(labels == c, spacing, unknown)
        np.testing.assert_allclose(fields[k], expected, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(boundary_distance_field(labels == c, spacing, unknown), expected,
                                   rtol=1e-6, atol=1e-5)


def test_a_class_filling_the_patch_and_touching_classes() -> None:
    labels = np.ones((6, 7), dtype=np.int16)
    assert not class_boundary_distances(labels, [1], (1.0, 2.0)).any()  # full: no boundary
    labels[:, 4:] = 2  # two classes touching along a line: each one's inside distance runs to the other
    fields = class_boundary_distances(labels, [1, 2], (1.0, 2.0))
    np.testing.assert_allclose(fields[0, 0], [8, 6, 4, 2, 2, 4, 6])
    np.testing.assert_allclose(fields[1, 0], [8, 6, 4, 2, 2, 4, 6])
