"""Hard synthetic images: every ingredient checked on its own with the others switched off."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnunet_ext.data.synthetic import vessel_tree
from nnunet_ext.data.synthetic_image import ImageParams, gap_mask, smooth_field, thin_structure_image

CLEAN = ImageParams(contrast=1.0, noise=0.0, bias=0.0, clutter=0.0, partial_volume_sigma=0.0, gaps_per_case=0)


def _tree(ndim: int, n_classes: int = 1) -> np.ndarray:
    return vessel_tree((96, 96) if ndim == 2 else (40, 40, 40), seed=2, n_classes=n_classes)


@pytest.mark.parametrize("ndim", [2, 3])
def test_clean_image_is_the_label_times_class_brightness(ndim):
    labels = _tree(ndim, n_classes=2)
    image, gaps = thin_structure_image(labels, seed=0, params=dataclasses.replace(CLEAN, contrast=0.8), n_classes=2)
    assert image.dtype == np.float32 and image.shape == labels.shape and not gaps.any()
    expected = np.select([labels == 1, labels == 2], [0.8 * 0.75, 0.8 * 1.0], 0.0)
    np.testing.assert_allclose(image, expected, rtol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_gaps_remove_the_signal_where_the_label_continues(ndim):
    labels = _tree(ndim)
    params = dataclasses.replace(CLEAN, gaps_per_case=3, gap_radius=2.0)
    image, gaps = thin_structure_image(labels, seed=1, params=params)
    occluded = gaps & (labels > 0)
    assert occluded.any(), "gaps lie on vessels"
    assert np.all(image[occluded] == 0), "no vessel signal inside a gap"
    assert np.all(image[(labels > 0) & ~gaps] == 1.0), "full signal elsewhere on the vessels"
    # each gap is a ball around a centreline voxel: at most 3 balls of radius 2
    ball = 13 if ndim == 2 else 33
    assert gaps.sum() <= 3 * ball


def test_gap_centres_are_on_the_foreground():
    labels = np.zeros((40, 40), dtype=np.uint8)
    labels[20, 5:35] = 1  # a one-pixel line: its skeleton is itself
    mask = gap_mask(labels, np.random.default_rng(0), n_gaps=1, radius=0.0)
    assert mask.sum() == 1 and labels[mask].item() == 1
    assert not gap_mask(np.zeros((10, 10), np.uint8), np.random.default_rng(0), 4, 2.0).any()


def test_noise_bias_clutter_and_blur_each_change_the_image_as_defined():
    labels = _tree(2)
    clean, _ = thin_structure_image(labels, seed=3, params=CLEAN)
    noisy, _ = thin_structure_image(labels, seed=3, params=dataclasses.replace(CLEAN, noise=0.5))
    assert np.std(noisy - clean) == pytest.approx(0.5, rel=0.05)
    biased, _ = thin_structure_image(labels, seed=3, params=dataclasses.replace(CLEAN, bias=0.4))
    ratio = biased[labels > 0] / clean[labels > 0]
    assert ratio.min() >= 0.6 - 1e-6 and ratio.max() <= 1.4 + 1e-6 and ratio.std() > 0.01
    cluttered, _ = thin_structure_image(labels, seed=3, params=dataclasses.replace(CLEAN, clutter=0.3))
    extra = cluttered - clean
    assert extra.min() >= 0 and 0 < extra.max() <= 0.3 + 1e-6
    blurred, _ = thin_structure_image(labels, seed=3, params=dataclasses.replace(CLEAN, partial_volume_sigma=1.0))
    assert blurred.sum() == pytest.approx(clean.sum(), rel=0.02)  # blurring keeps the signal's total
    assert blurred[labels > 0].mean() < clean[labels > 0].mean()  # but thin vessels get fainter


def test_default_images_are_hard_but_the_vessels_are_brighter_on_average():
    labels = _tree(2)
    image, gaps = thin_structure_image(labels, seed=4)
    assert gaps.any()
    vessels, background = image[(labels > 0) & ~gaps], image[labels == 0]
    assert vessels.mean() > background.mean() + 0.2
    assert np.mean(background > np.percentile(vessels, 25)) > 0.05, "many background pixels look like vessel"


def test_images_are_deterministic_per_seed():
    labels = _tree(3)
    a, ga = thin_structure_image(labels, seed=7)
    b, gb = thin_structure_image(labels, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ga, gb)
    assert not np.array_equal(a, thin_structure_image(labels, seed=8)[0])


def test_smooth_field_range_and_shape():
    field = smooth_field((50, 70), np.random.default_rng(0), scale=10)
    assert field.shape == (50, 70) and np.abs(field).max() == pytest.approx(1.0)
    assert np.abs(np.diff(field, axis=0)).max() < 0.5, "smooth"


@pytest.mark.parametrize("bad", [dict(noise=-1), dict(bias=1.0), dict(gaps_per_case=-1), dict(contrast=-0.1)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ImageParams(**bad)


def test_class_brightness_follows_the_dataset_class_count():
    labels = _tree(2)  # class 1 only
    alone, _ = thin_structure_image(labels, params=CLEAN)
    of_three, _ = thin_structure_image(labels, params=CLEAN, n_classes=3)
    assert alone.max() == pytest.approx(1.0) and of_three.max() == pytest.approx(0.5 + 0.5 / 3)
    with pytest.raises(ValueError, match="n_classes"):
        thin_structure_image(labels * 2, params=CLEAN, n_classes=1)


def test_only_2d_and_3d():
    with pytest.raises(ValueError, match="2D or 3D"):
        thin_structure_image(np.zeros((4, 4, 4, 4), np.uint8))
