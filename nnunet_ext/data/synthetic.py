"""Synthetic thin-structure data: random branching tubes in 2D or 3D.

Used by the benchmarks, the tests and the demo. A tree grows from a root by a
random walk with smooth curvature; every walker may split into two, and its
radius shrinks along the way down to ``min_radius`` (one voxel by default).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_ext.data.synthetic_image import ImageParams, thin_structure_image


@dataclass(frozen=True)
class TreeParams:
    """How a vessel tree grows (lengths and radii in voxels).

    ``class_per_tree``: every root's whole tree is one class (root r: class ``r % n_classes + 1``), so trees of
    different classes touch and cross like arteries and veins; False: the branches of a tree take the classes in
    turn. ``start_range``: roots start in this fraction of each axis (narrow: the trees meet).
    """

    n_roots: int = 1
    root_radius: float = 4.0
    min_radius: float = 1.0
    step: float = 1.0
    radius_decay: float = 0.994
    branch_probability: float = 0.02
    turn_sigma: float = 0.12
    max_points: int = 6000
    class_per_tree: bool = False
    start_range: tuple[float, float] = (0.15, 0.85)

    def __post_init__(self) -> None:
        if self.n_roots < 1 or self.max_points < 1:
            raise ValueError(f"TreeParams needs n_roots >= 1 and max_points >= 1, got {self.n_roots} and "
                             f"{self.max_points}")
        if not 0 < self.min_radius <= self.root_radius:
            raise ValueError(f"TreeParams needs 0 < min_radius <= root_radius, got {self.min_radius} and "
                             f"{self.root_radius}")
        low, high = self.start_range
        if not 0 <= low <= high <= 1:
            raise ValueError(f"TreeParams.start_range must be (low, high) with 0 <= low <= high <= 1 (roots start "
                             f"in that fraction of each axis), got {self.start_range}")


# Artery/vein-like: one tree per root, class per tree (roots 1, 3 -> class 1; 2, 4 -> class 2 of two), starting near
# the middle so that trees of different classes touch and cross; radius 4 -> 1 voxel along the way.
CROSSING_TREES = TreeParams(n_roots=4, root_radius=4.0, min_radius=1.0, radius_decay=0.99, branch_probability=0.04,
                            max_points=3000, class_per_tree=True, start_range=(0.35, 0.65))


def _random_unit_vectors(rng: np.random.Generator, ndim: int) -> np.ndarray:
    v = rng.normal(size=ndim)
    return v / np.linalg.norm(v)


def _grow_centreline(shape: tuple[int, ...], params: TreeParams,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random branching walk. Returns points (n, ndim), radii (n,), branch ids (n,) and root ids (n,)."""
    ndim = len(shape)
    extent = np.asarray(shape, dtype=float)
    walkers = []
    for _ in range(params.n_roots):
        start = extent * rng.uniform(*params.start_range, size=ndim)
        walkers.append([start, _random_unit_vectors(rng, ndim), params.root_radius, len(walkers), len(walkers)])
    points, radii, branch, roots = [], [], [], []
    n_branches = len(walkers)
    while walkers and len(points) < params.max_points:
        pos, direction, radius, bid, root = walkers.pop()
        while len(points) < params.max_points:
            inside = np.all(pos >= 0) and np.all(pos <= extent - 1)
            if not inside or radius < params.min_radius * 0.999:
                break
            points.append(pos.copy())
            radii.append(radius)
            branch.append(bid)
            roots.append(root)
            direction = direction + rng.normal(scale=params.turn_sigma, size=ndim)
            direction /= np.linalg.norm(direction)
            pos = pos + params.step * direction
            radius = max(radius * params.radius_decay, params.min_radius)
            if radius <= params.min_radius and rng.uniform() < 0.01:
                break  # thinnest vessels end after a while
            if rng.uniform() < params.branch_probability:
                side = _random_unit_vectors(rng, ndim)
                side -= side.dot(direction) * direction
                side /= max(np.linalg.norm(side), 1e-6)
                child_dir = direction + 0.8 * side
                walkers.append([pos.copy(), child_dir / np.linalg.norm(child_dir),
                                max(radius * 0.7, params.min_radius), n_branches, root])
                n_branches += 1
    if not points:
        return np.zeros((0, ndim)), np.zeros(0), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return np.asarray(points), np.asarray(radii), np.asarray(branch), np.asarray(roots)


def _rasterize_balls(shape: tuple[int, ...], points: np.ndarray, radii: np.ndarray,
                     values: np.ndarray) -> np.ndarray:
    """Stamp a ball of each radius and value at each point; later points win."""
    out = np.zeros(shape, dtype=np.uint8)
    for p, r, v in zip(points, radii, values):
        lo = np.maximum(np.floor(p - r).astype(int), 0)
        hi = np.minimum(np.ceil(p + r).astype(int) + 1, shape)
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        d2 = sum((g - c) ** 2 for g, c in zip(grids, p))
        # radius r covers voxels within r - 0.5 of the point, and always the nearest voxel,
        # so a radius-1 tube is a connected one-voxel line
        ball = d2 <= (r - 0.5) ** 2
        region = out[tuple(slice(a, b) for a, b in zip(lo, hi))]
        region[ball] = v
        out[tuple(np.clip(np.round(p).astype(int), 0, np.array(shape) - 1))] = v
    return out


def vessel_tree(shape: tuple[int, ...], seed: int = 0, n_classes: int = 1,
                params: TreeParams | None = None) -> np.ndarray:
    """Label map of a random vessel tree.

    Args:
        shape: (X, Y) or (X, Y, Z).
        seed: random seed; the same seed gives the same tree.
        n_classes: number of foreground classes; branches are assigned classes
            1..n_classes in turn (class 1 for the trunk), or whole trees with ``params.class_per_tree``.
        params: growth parameters (``TreeParams()`` by default).

    Returns:
        uint8 array of ``shape`` with values in 0..n_classes.
    """
    if len(shape) not in (2, 3):
        raise ValueError(f"vessel_tree makes 2D or 3D maps, got shape {shape}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    params = params or TreeParams()
    rng = np.random.default_rng(seed)
    points, radii, branch, roots = _grow_centreline(tuple(shape), params, rng)
    values = ((roots if params.class_per_tree else branch) % n_classes) + 1
    return _rasterize_balls(tuple(shape), points, radii, values)


def vessel_image(labels: np.ndarray, seed: int = 0, contrast: float = 1.0,
                 noise: float = 0.3) -> np.ndarray:
    """A float32 image in which the vessels of ``labels`` are brighter than background."""
    rng = np.random.default_rng(seed)
    img = contrast * (labels > 0).astype(np.float32)
    img += rng.normal(scale=noise, size=labels.shape).astype(np.float32)
    return img


def existing_dataset_folder(root: Path, dataset_id: int) -> Path | None:
    """The ``DatasetXXX_*`` folder of ``dataset_id`` in an nnU-Net root folder (raw, preprocessed or results)."""
    matches = sorted(root.glob(f"Dataset{dataset_id:03d}_*")) if root.is_dir() else []
    return matches[0] if matches else None


def _write_image(array: np.ndarray, path: Path, spacing: tuple[float, ...] | None = None) -> None:
    import SimpleITK as sitk  # imported here: only dataset writing needs it

    # nnU-Net reads arrays as (z, y, x) from SimpleITK; we store our (X, Y[, Z]) arrays transposed
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T))
    if spacing is not None:
        image.SetSpacing([float(s) for s in spacing])  # SimpleITK's (x, y, z) order = our array's axes
    sitk.WriteImage(image, str(path))


def write_raw_dataset(raw_root: str | Path, dataset_id: int, name: str, dim: int, n_train: int = 8,
                      n_test: int = 2, size: int | None = None, n_classes: int = 1, ignore_label: bool = False,
                      seed: int = 0, params: TreeParams | None = None,
                      image_params: ImageParams | None = None, slice_step: int = 1, regions: bool = False) -> Path:
    """Write a synthetic vessel dataset in nnU-Net's raw format (``DatasetXXX_name``).

    Args:
        raw_root: the ``nnUNet_raw`` folder.
        dataset_id: nnU-Net dataset id; refused if a dataset with this id exists.
        name: dataset name (letters, digits, underscores).
        dim: 2 or 3.
        n_train, n_test: number of training cases (with labels) and test images.
        size: edge length (default 96 in 2D, 40 in 3D).
        n_classes: foreground classes.
        ignore_label: add an ``ignore`` label (a band of unknown labels in each training case).
        seed: base seed; case i uses seed + i.
        params: tree growth parameters.
        image_params: make hard images (low contrast, inhomogeneity, clutter, occluded gaps) with
            these parameters; ``None`` (default) makes easy ones (bright vessels plus noise).
        slice_step: 3D only: keep every ``slice_step``-th slice along Z, written with spacing
            (1, 1, slice_step): thick-slice, anisotropic data (nnU-Net then uses its dummy-2D augmentation).
        regions: declare overlapping regions for nnU-Net's region-based training (needs n_classes >= 2):
            ``vessels`` = every class (the whole tree), then each class c >= 2 (its branches) on its own;
            ``regions_class_order`` exports them as 1, 2, ..., n_classes.

    Test cases get their labels too, in ``labelsTs`` (nnU-Net ignores that folder; it is there to
    evaluate predictions of ``imagesTs``).

    Returns:
        The dataset folder.
    """
    raw_root = Path(raw_root)
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"dataset name must be letters, digits and underscores, got {name!r}")
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    if slice_step < 1 or (slice_step > 1 and dim != 3):
        raise ValueError(f"slice_step must be >= 1, and > 1 only for 3D data; got {slice_step} for {dim}D")
    if regions and n_classes < 2:
        raise ValueError(f"regions need n_classes >= 2 (the tree and its branches), got n_classes={n_classes}")
    if size is not None and size < 16:
        raise ValueError(f"size must be >= 16 voxels (nnU-Net needs room for its patches), got {size}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1 (foreground classes), got {n_classes}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (case i uses seed + i), got {seed}")
    existing = existing_dataset_folder(raw_root, dataset_id)
    if existing is not None:
        raise FileExistsError(f"a dataset with id {dataset_id} already exists: {existing}. Pick another id; "
                              "nothing was written.")
    size = size or (96 if dim == 2 else 40)
    shape = (size,) * dim
    params = params or TreeParams(n_roots=2, root_radius=3.0 if dim == 2 else 2.5, radius_decay=0.995,
                                  branch_probability=0.04, max_points=4000)
    folder = raw_root / f"Dataset{dataset_id:03d}_{name}"
    staging = raw_root / f".{folder.name}.partial"  # written aside, moved into place whole
    if staging.exists():
        shutil.rmtree(staging)  # what an interrupted earlier call of this function left
    try:
        _write_cases(staging, name, shape, n_train, n_test, n_classes, ignore_label, seed, params, image_params,
                     slice_step, regions)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _write_cases(folder: Path, name: str, shape: tuple[int, ...], n_train: int, n_test: int, n_classes: int,
                 ignore_label: bool, seed: int, params: TreeParams, image_params: ImageParams | None,
                 slice_step: int, regions: bool) -> None:
    """The images, labels and dataset.json of ``write_raw_dataset`` into ``folder``."""
    dim, size = len(shape), shape[0]
    label_dtype = np.uint8 if n_classes + 1 <= np.iinfo(np.uint8).max else np.uint16
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    spacing = (1.0, 1.0, float(slice_step)) if dim == 3 else None
    thick_slices = (slice(None), slice(None), slice(None, None, slice_step))[:dim]
    for i in range(n_train + n_test):
        labels = vessel_tree(shape, seed=seed + i, n_classes=n_classes, params=params)
        if image_params is None:
            image = vessel_image(labels, seed=seed + i)
        else:
            image = thin_structure_image(labels, seed=seed + i, params=image_params, n_classes=n_classes)[0]
        labels, image = labels[thick_slices], image[thick_slices]
        case = f"{name}_{i:03d}"
        if i < n_train:
            _write_image(image, folder / "imagesTr" / f"{case}_0000.nii.gz", spacing)
            if ignore_label:
                labels = labels.copy()
                band = slice(size // 2 - 3, size // 2 + 3)
                labels[band] = n_classes + 1
            _write_image(labels.astype(label_dtype), folder / "labelsTr" / f"{case}.nii.gz", spacing)
        else:
            _write_image(image, folder / "imagesTs" / f"{case}_0000.nii.gz", spacing)
            _write_image(labels.astype(label_dtype), folder / "labelsTs" / f"{case}.nii.gz", spacing)
    label_names = {"background": 0, **{f"vessel{c}" if n_classes > 1 else "vessel": c
                                       for c in range(1, n_classes + 1)}}
    if regions:
        label_names = {"background": 0, "vessels": list(range(1, n_classes + 1)),
                       **{f"vessel{c}": c for c in range(2, n_classes + 1)}}
    if ignore_label:
        label_names["ignore"] = n_classes + 1
    dataset_json = {"channel_names": {"0": "synthetic"}, "labels": label_names, "numTraining": n_train,
                    "file_ending": ".nii.gz", "name": name,
                    "description": "synthetic branching tubes made by nnunet_ext"}
    if regions:
        dataset_json["regions_class_order"] = list(range(1, n_classes + 1))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))


def classes_in_training_cases(folder: Path) -> set[int]:
    """The label values that occur in the training labels of a dataset written by ``write_raw_dataset``."""
    from nnunet_ext.data.image_io import read_labels

    return {int(v) for path in sorted((folder / "labelsTr").glob("*.nii.gz")) for v in np.unique(read_labels(path))}
