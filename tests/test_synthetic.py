"""Synthetic vessel trees: deterministic, in range, 2D and 3D, and validated arguments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from nnunet_ext.data.synthetic import TreeParams, vessel_image, vessel_tree

BUSY = TreeParams(n_roots=2, root_radius=3.0, branch_probability=0.08, max_points=1200)
SHAPES = [(64, 64), (48, 80), (32, 32, 32), (24, 40, 36)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_classes", [1, 2, 3])
def test_vessel_tree_basic(shape, n_classes):
    tree = vessel_tree(shape, seed=0, n_classes=n_classes, params=BUSY)
    assert tree.shape == shape
    assert tree.dtype == np.uint8
    assert tree.min() >= 0 and tree.max() <= n_classes
    assert (tree > 0).any(), "a tree must have foreground"
    assert (tree == 0).any(), "and background"
    assert (tree == 1).any(), "the first root is class 1"


@pytest.mark.parametrize("shape", SHAPES)
def test_vessel_tree_is_deterministic_per_seed(shape):
    for seed in (0, 1, 17):
        a = vessel_tree(shape, seed=seed, n_classes=3, params=BUSY)
        b = vessel_tree(shape, seed=seed, n_classes=3, params=BUSY)
        np.testing.assert_array_equal(a, b)
    other = vessel_tree(shape, seed=1, n_classes=3, params=BUSY)
    assert not np.array_equal(vessel_tree(shape, seed=0, n_classes=3, params=BUSY), other)


@pytest.mark.parametrize("ndim", [2, 3])
def test_vessel_tree_default_params(ndim):
    shape = (96, 96) if ndim == 2 else (48, 48, 48)
    for seed in range(3):
        tree = vessel_tree(shape, seed=seed)
        assert tree.shape == shape and tree.dtype == np.uint8
        assert set(np.unique(tree)) == {0, 1}
        assert 0 < (tree > 0).mean() < 0.5, "a sparse tree"


@pytest.mark.parametrize("ndim", [2, 3])
def test_vessel_tree_uses_all_classes_with_enough_branches(ndim):
    shape = (96, 96) if ndim == 2 else (40, 40, 40)
    tree = vessel_tree(shape, seed=3, n_classes=3, params=dataclasses.replace(BUSY, n_roots=3))
    assert set(np.unique(tree)) == {0, 1, 2, 3}


def test_vessel_tree_classes_only_relabel():
    """The class count changes the labels, not the geometry."""
    one = vessel_tree((64, 64), seed=5, n_classes=1, params=BUSY)
    three = vessel_tree((64, 64), seed=5, n_classes=3, params=BUSY)
    np.testing.assert_array_equal(one > 0, three > 0)


def test_vessel_tree_accepts_list_shape():
    np.testing.assert_array_equal(vessel_tree([40, 50], seed=2), vessel_tree((40, 50), seed=2))


def test_vessel_tree_more_points_more_foreground():
    small = vessel_tree((64, 64, 64), seed=0, params=dataclasses.replace(BUSY, max_points=100))
    large = vessel_tree((64, 64, 64), seed=0, params=dataclasses.replace(BUSY, max_points=1000))
    assert 0 < (small > 0).sum() < (large > 0).sum()


def n_objects(tree: np.ndarray) -> int:
    """Connected foreground components, 8-connected (2D) / 26-connected (3D)."""
    return ndimage.label(tree > 0, structure=np.ones((3,) * tree.ndim, dtype=bool))[1]


@pytest.mark.parametrize("ndim", [2, 3])
def test_radius_one_tube_is_connected(ndim):
    """BUG: a radius-1 tube comes out as a dotted line.

    ``_rasterize_balls`` stamps ``d2 <= max(r - 0.5, 0.5) ** 2``; its comment says r == 1
    "stamps the nearest voxel", but d2 <= 0.25 stamps nothing when the centreline point is
    more than 0.5 from every voxel centre (about half the points in 3D). E.g. 3D (40^3),
    seed 0, TreeParams(n_roots=1, root_radius=1, branch_probability=0): 29 centreline points,
    17 voxels, 5 separate objects. Consecutive points are 1 apart, so stamping at least the
    nearest voxel would make the line one 8/26-connected object.
    """
    shape = (64, 64) if ndim == 2 else (40, 40, 40)
    line = TreeParams(n_roots=1, root_radius=1.0, branch_probability=0.0, max_points=60)
    counts = [n_objects(vessel_tree(shape, seed=seed, params=line)) for seed in range(5)]
    assert counts == [1] * 5, f"objects per radius-1 tube (seeds 0-4): {counts}"


@pytest.mark.parametrize("ndim", [2, 3])
def test_single_root_tree_is_connected(ndim):
    """BUG (same cause): one root should give one connected tree; its thin ends fall apart
    (e.g. 2D 96x96 seed 0 with n_roots=1, root_radius=3, branch_probability=0.05: 32 objects)."""
    shape = (96, 96) if ndim == 2 else (48, 48, 48)
    tree = TreeParams(n_roots=1, root_radius=3.0, branch_probability=0.05, max_points=1500)
    counts = [n_objects(vessel_tree(shape, seed=seed, params=tree)) for seed in range(2)]
    assert counts == [1] * 2, f"objects per single-root tree (seeds 0-1): {counts}"


def test_tree_params_are_frozen():
    params = TreeParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.n_roots = 3  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(), (64,), (8, 8, 8, 8), (1, 8, 8, 8)])
def test_vessel_tree_bad_shape_raises(shape):
    with pytest.raises(ValueError, match="2D or 3D"):
        vessel_tree(shape)


@pytest.mark.parametrize("n_classes", [0, -1])
def test_vessel_tree_bad_n_classes_raises(n_classes):
    with pytest.raises(ValueError, match="n_classes"):
        vessel_tree((32, 32), n_classes=n_classes)


@pytest.mark.parametrize("ndim", [2, 3])
def test_vessel_image(ndim):
    labels = vessel_tree((64, 64) if ndim == 2 else (32, 32, 32), seed=1, n_classes=2, params=BUSY)
    image = vessel_image(labels, seed=4)
    assert image.shape == labels.shape and image.dtype == np.float32
    np.testing.assert_array_equal(image, vessel_image(labels, seed=4))
    assert not np.array_equal(image, vessel_image(labels, seed=5))
    assert image[labels > 0].mean() > image[labels == 0].mean() + 0.5
    clean = vessel_image(labels, contrast=2.0, noise=0.0)
    np.testing.assert_array_equal(clean, 2.0 * (labels > 0))


def test_thick_slices_keep_every_kth_slice_and_only_in_3d(tmp_path):
    from nnunet_ext.data.image_io import read_labels
    from nnunet_ext.data.synthetic import write_raw_dataset

    thick_folder = write_raw_dataset(tmp_path, 5, "Thick", dim=3, n_train=1, n_test=0, size=32, slice_step=4)
    full_folder = write_raw_dataset(tmp_path, 7, "Thick", dim=3, n_train=1, n_test=0, size=32)
    thick = read_labels(thick_folder / "labelsTr" / "Thick_000.nii.gz")  # nnU-Net's (Z, Y, X)
    full = read_labels(full_folder / "labelsTr" / "Thick_000.nii.gz")
    assert thick.shape == (8, 32, 32) and full.shape == (32, 32, 32)
    np.testing.assert_array_equal(thick, full[::4])  # every 4th slice along Z, the same tree
    with pytest.raises(ValueError, match="slice_step"):
        write_raw_dataset(tmp_path, 6, "Flat", dim=2, slice_step=2)


# --- the 3D study benchmark: artery/vein-like trees, one class per tree (issue 21) --------------------------------

def _touching_voxels(tree: np.ndarray, a: int, b: int) -> int:
    """Voxels of class ``a`` with a 26-neighbour of class ``b``."""
    return int(((tree == a) & ndimage.binary_dilation(tree == b, np.ones((3,) * tree.ndim, dtype=bool))).sum())


def test_crossing_trees_touch_thin_out_and_keep_one_class_per_tree():
    from nnunet_ext.data.synthetic import CROSSING_TREES

    trees = [vessel_tree((48, 48, 48), seed=2026 + i, n_classes=2, params=CROSSING_TREES) for i in range(6)]
    for tree in trees:
        assert set(np.unique(tree)) == {0, 1, 2}
        assert 0.005 < (tree > 0).mean() < 0.1, "sparse vessels"
    assert sum(_touching_voxels(tree, 1, 2) > 0 for tree in trees) >= 5, "the classes touch and cross"
    # radii 4 -> 1: the thickest vessels hold a ball of radius 3, the thinnest are one voxel wide
    thick = [ndimage.distance_transform_edt(tree > 0).max() for tree in trees]
    assert min(thick) >= 3
    one_voxel = [(ndimage.binary_erosion(tree > 0) == 0)[tree > 0].mean() for tree in trees]
    assert min(one_voxel) > 0.3, "most voxels lie at a border (partial volume there)"


def test_class_per_tree_labels_whole_trees_without_changing_the_geometry():
    per_branch = dataclasses.replace(BUSY, n_roots=2)
    per_tree = dataclasses.replace(per_branch, class_per_tree=True)
    a = vessel_tree((40, 40, 40), seed=4, n_classes=2, params=per_branch)
    b = vessel_tree((40, 40, 40), seed=4, n_classes=2, params=per_tree)
    np.testing.assert_array_equal(a > 0, b > 0)
    single = vessel_tree((40, 40, 40), seed=4, n_classes=2, params=dataclasses.replace(per_tree, n_roots=1))
    assert set(np.unique(single)) == {0, 1}, "one tree, one class"


@pytest.mark.parametrize("bad", [dict(n_roots=0), dict(min_radius=0.0), dict(min_radius=5.0, root_radius=4.0),
                                 dict(start_range=(0.6, 0.4)), dict(max_points=0)])
def test_bad_tree_params_are_refused(bad):
    with pytest.raises(ValueError, match="TreeParams"):
        TreeParams(**bad)


def test_the_default_3d_study_benchmark(tmp_path):
    """At least 12 test cases, two touching classes, hard images; anisotropic with slice_step."""
    from nnunet_ext.commands.study import BENCHMARKS
    from nnunet_ext.data.image_io import read_labels
    from nnunet_ext.data.synthetic import write_raw_dataset
    from nnunet_ext.data.synthetic_image import ImageParams

    b = BENCHMARKS[3]
    assert b.n_test >= 12 and b.n_classes in (2, 3) and b.crossing_trees
    folder = write_raw_dataset(tmp_path, 950, "Study3D", 3, n_train=2, n_test=2, size=b.size, n_classes=b.n_classes,
                               seed=b.seed, params=b.tree_params(), image_params=ImageParams(), slice_step=2)
    labels = read_labels(folder / "labelsTs" / "Study3D_002.nii.gz")
    assert labels.shape == (b.size // 2, b.size, b.size) and set(np.unique(labels)) == {0, 1, 2}
