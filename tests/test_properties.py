"""Property-based tests (hypothesis): random label maps through the skeleton, transforms, losses and metrics.

Random 2D/3D maps with random classes, -1 padding, an ignore label, empty and tiny shapes. No crash, and
the invariants hold: the tube lies on the labels and carries their class, every connected object keeps
tube voxels (the fallback), region tubes lie in their regions, recall lies in [0, 1], identical maps have
perfect metrics, isolated extra components count exactly in the Betti-0 error. 1400 examples.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from nnunet_ext.losses import RegionComboLoss, RegionSkeletonRecallLoss, SoftSkeletonRecallLoss
from nnunet_ext.metrics import topology_metrics
from nnunet_ext.skeleton import tubed_skeleton
from nnunet_ext.transforms import ClassicSkeletonTransform, RegionSkeletonTransform, SkeletonTransform

IGNORE = 9


def examples(n: int) -> settings:
    """n derandomized examples (reproducible in CI), no per-example deadline (a 3D map may take 50 ms); the
    hypothesis profile of the tier (tests/conftest.py) caps n: ``make test`` runs fewer, ``make test-all`` all n."""
    return settings(max_examples=min(n, settings.default.max_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@st.composite
def label_maps(draw, max_classes: int = 3, padding: bool = True, ignore: bool = True) -> np.ndarray:
    """int16 (X, Y) or (X, Y, Z) maps: blocky random classes, sometimes -1 padding and ignore-label voxels."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 20 if ndim == 2 else 10)) for _ in range(ndim))
    n_classes = draw(st.integers(0, max_classes))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    labels = np.where(rng.random(shape) < density, rng.integers(1, n_classes + 1, shape), 0) if n_classes else \
        np.zeros(shape, dtype=np.int64)
    if draw(st.booleans()):  # smooth blobs (more like anatomy than salt and pepper)
        labels = ndimage.median_filter(labels, size=3, mode="nearest")
    labels = labels.astype(np.int16)
    if padding and draw(st.booleans()):
        labels[(slice(0, 1),) + (slice(None),) * (ndim - 1)] = -1  # nnU-Net's outside-the-image padding
    if ignore and draw(st.booleans()):
        labels[rng.random(shape) < 0.1] = IGNORE
    return labels


def _foreground(labels: np.ndarray) -> np.ndarray:
    return (labels > 0) & (labels != IGNORE)


@examples(300)
@given(labels=label_maps(), tube_radius=st.integers(0, 3), per_class=st.booleans())
def test_tube_lies_on_the_labels_and_reaches_every_object(labels, tube_radius, per_class):
    tube = tubed_skeleton(labels, tube_radius=tube_radius, per_class=per_class, ignore_label=IGNORE)
    foreground = _foreground(labels)
    assert tube.shape == labels.shape
    assert np.all(foreground[tube > 0]), "tube voxels lie on the foreground"
    assert np.array_equal(tube[tube > 0], labels[tube > 0]), "and carry their class"
    masks = [labels == c for c in np.unique(labels[foreground])] if per_class else [foreground]
    structure = np.ones((3,) * labels.ndim)
    for mask in masks:
        objects, n = ndimage.label(mask, structure)
        touched = np.unique(objects[(tube > 0) & mask])
        assert set(range(1, n + 1)) <= set(touched.tolist()), "no connected object without tube voxels"


@examples(200)
@given(labels=label_maps(), tube_radius=st.integers(0, 2))
def test_transforms_append_exactly_the_tubed_skeleton(labels, tube_radius):
    expected = tubed_skeleton(labels, tube_radius=tube_radius, ignore_label=IGNORE)
    bgv2 = SkeletonTransform(tube_radius=tube_radius, ignore_label=IGNORE)
    out = bgv2(image=torch.zeros((1, *labels.shape)), segmentation=torch.from_numpy(labels[None]))["segmentation"]
    assert out.shape == (2, *labels.shape)
    np.testing.assert_array_equal(out[0].numpy(), labels)
    np.testing.assert_array_equal(out[1].numpy(), expected)
    classic = ClassicSkeletonTransform(tube_radius=tube_radius, ignore_label=IGNORE)
    batch = classic(data=np.zeros((1, 1, *labels.shape), np.float32), seg=labels[None, None].astype(np.float32))
    np.testing.assert_array_equal(batch["seg"][0, 0], labels)
    np.testing.assert_array_equal(batch["skel"][0, 0], expected)


@examples(300)
@given(labels=label_maps(padding=False), batch_dice=st.booleans(), seed=st.integers(0, 1000),
       scale=st.sampled_from([0.0, 1.0, 30.0]))
def test_skeleton_recall_lies_in_its_range_with_finite_gradients(labels, batch_dice, seed, scale):
    n_classes = 4
    labels = np.where(labels == IGNORE, IGNORE, np.clip(labels, 0, n_classes - 1))
    skeleton = torch.from_numpy(tubed_skeleton(labels, ignore_label=IGNORE)).long()
    skeleton = torch.where(torch.from_numpy(labels == IGNORE), IGNORE, skeleton)[None, None]
    generator = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn((1, n_classes, *labels.shape), generator=generator)).requires_grad_()
    loss = SoftSkeletonRecallLoss(batch_dice=batch_dice, ignore_label=IGNORE)(logits, skeleton)
    assert -1 - 1e-6 <= loss.item() <= 1e-6, "loss = -recall, recall in [0, 1]"
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@examples(150)
@given(labels=label_maps(ignore=False, padding=False))
def test_identical_maps_have_perfect_metrics(labels):
    classes = [1, 2, 3]
    for c, values in topology_metrics(labels, labels, classes).items():
        present = bool((labels == c).any())
        for name in ("Dice", "clDice"):
            assert values[name] == 1 if present else math.isnan(values[name])
        assert values["rand_error"] == 0 if present else math.isnan(values["rand_error"])
        for name, value in values.items():
            if name.endswith("_error") and name != "rand_error":
                assert value == 0, name


@examples(150)
@given(pred=label_maps(ignore=False, padding=False), seed=st.integers(0, 1000))
def test_metrics_of_different_maps_stay_in_range(pred, seed):
    gt = np.random.default_rng(seed).permutation(pred.ravel()).reshape(pred.shape)
    for values in topology_metrics(pred, gt, [1, 2, 3], ignore_label=None).values():
        for name in ("Dice", "clDice", "rand_error", "pixel_error", "warping_error"):
            assert math.isnan(values[name]) or 0 <= values[name] <= 1, name


@examples(150)
@given(labels=label_maps(ignore=False, padding=False), c=st.integers(1, 3), k=st.integers(1, 4))
def test_isolated_components_add_exactly_their_number_to_the_betti0_error(labels, c, k):
    """k single voxels of class c, apart from each other and from the target (a background row between), added to
    a prediction equal to the target: class c's Betti-0 error goes from 0 to exactly k, nothing else changes."""
    gt = np.zeros((labels.shape[0] + 1 + 2 * k, *labels.shape[1:]), dtype=labels.dtype)
    gt[: labels.shape[0]] = labels
    pred = gt.copy()
    for j in range(k):
        pred[(labels.shape[0] + 1 + 2 * j,) + (0,) * (labels.ndim - 1)] = c
    classes = [1, 2, 3]
    before, after = topology_metrics(gt, gt, classes), topology_metrics(pred, gt, classes)
    assert all(value == 0 for values in before.values() for name, value in values.items() if name.startswith("Betti"))
    for d, values in after.items():
        for name, value in values.items():
            if name.startswith("Betti"):
                assert value == (k if (d, name) == (c, "Betti0_error") else 0), (d, name)


@examples(150)
@given(labels=label_maps(ignore=False, padding=False), seed=st.integers(0, 1000),
       scale=st.sampled_from([0.0, 1.0, 30.0]))
def test_region_skeletons_lie_in_their_regions_and_region_losses_stay_in_range(labels, seed, scale):
    regions = torch.from_numpy(np.stack([labels >= 1, labels == 2]))  # overlapping: all classes, class 2
    out = RegionSkeletonTransform(2)(segmentation=regions)["segmentation"]
    assert out.shape == (4, *labels.shape) and out.dtype == torch.bool
    assert torch.equal(out[:2], regions) and not (out[2:] & ~out[:2]).any(), "each tube inside its region"
    generator = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn((1, 2, *labels.shape), generator=generator)).requires_grad_()
    recall = RegionSkeletonRecallLoss()(logits, out[None, 2:])
    combo = RegionComboLoss()(logits, out[None, :2])
    assert -1 - 1e-6 <= recall.item() <= 1e-6 and combo.item() >= 0
    (recall + combo).backward()
    assert torch.isfinite(logits.grad).all()
