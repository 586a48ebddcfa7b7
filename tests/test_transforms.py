"""Tests of SkeletonTransform (batchgeneratorsv2) and ClassicSkeletonTransform (batchgenerators v1).

Includes real multi-process loading (torch DataLoader and batchgenerators' MultiThreadedAugmenter)
with both the fork and the spawn start method.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from nnunet_ext.data.synthetic import TreeParams, vessel_tree
from nnunet_ext.skeleton import tubed_skeleton
from nnunet_ext.transforms import ClassicSkeletonTransform, SkeletonTransform

SHAPE_2D = (48, 48)
SHAPE_3D = (24, 24, 24)
THIN_3D = TreeParams(root_radius=2.5, branch_probability=0.05)  # a few branches fit into 24^3
IGNORE = 4
START_METHODS = ["fork", "spawn"]


def vessel_labels(ndim: int, seed: int, n_classes: int = 3) -> np.ndarray:
    """uint8 (X, Y) or (X, Y, Z) multi-class vessel tree."""
    if ndim == 2:
        return vessel_tree(SHAPE_2D, seed=seed, n_classes=n_classes)
    return vessel_tree(SHAPE_3D, seed=seed, n_classes=n_classes, params=THIN_3D)


def labels_with_extras(ndim: int, seed: int, negative: bool) -> np.ndarray:
    """int16 vessel tree with an ignore-label block (and a -1 block if ``negative``) over the vessels."""
    labels = vessel_labels(ndim, seed).astype(np.int16)
    fg = np.argwhere(labels > 0)
    centre = fg[len(fg) // 2]
    labels[tuple(slice(max(c - 3, 0), c + 3) for c in centre)] = IGNORE
    if negative:
        labels[(slice(0, 6),) * ndim] = -1
    return labels


def loader_labels(index: int) -> np.ndarray:
    """Label map of sample ``index`` of the loader tests: pairs of 2D and 3D samples alternate."""
    return vessel_labels(2 if (index // 2) % 2 == 0 else 3, seed=index, n_classes=2)


class VesselSkeletonDataset(torch.utils.data.Dataset):
    """Synthetic vessel trees run through SkeletonTransform in ``__getitem__`` (top level: picklable)."""

    def __init__(self, n: int, transform: SkeletonTransform) -> None:
        self.n = n
        self.transform = transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, int]:
        seg = torch.from_numpy(loader_labels(index)[None].astype(np.int16))
        out = self.transform(segmentation=seg)["segmentation"]
        return index, out, os.getpid()


# --------------------------------------------------------------------------- SkeletonTransform


TORCH_DTYPES = {"int16": torch.int16, "uint8": torch.uint8, "float32": torch.float32}
KWARGS = [
    {},
    {"per_class": True},
    {"tube_radius": 1, "fallback": False},
    {"tube_radius": 0, "ignore_label": IGNORE},
]
KWARG_IDS = [",".join(f"{k}={v}" for k, v in kwargs.items()) or "default" for kwargs in KWARGS]


@pytest.mark.parametrize("kwargs", KWARGS, ids=KWARG_IDS)
@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
@pytest.mark.parametrize("ndim", [2, 3])
def test_skeleton_transform_matches_tubed_skeleton(ndim: int, dtype: str, kwargs: dict) -> None:
    labels = labels_with_extras(ndim, seed=1, negative=dtype != "uint8")
    seg = torch.from_numpy(labels[None]).to(TORCH_DTYPES[dtype])
    seg_before = seg.clone()
    image = torch.rand((2, *labels.shape))
    out = SkeletonTransform(**kwargs)(image=image, segmentation=seg)
    result = out["segmentation"]
    assert out["image"] is image
    assert isinstance(result, torch.Tensor)
    assert result.shape == (2, *labels.shape)
    assert result.dtype == seg.dtype
    assert torch.equal(seg, seg_before)  # input not modified in place
    assert torch.equal(result[0], seg_before[0])
    expected = tubed_skeleton(labels, **kwargs)
    assert expected.any() or not kwargs.get("fallback", True)  # without fallback, 3D thin tubes may vanish
    np.testing.assert_array_equal(result[1].numpy(), expected.astype(seg.numpy().dtype))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
@pytest.mark.parametrize("ndim", [2, 3])
def test_skeleton_transform_accepts_numpy(ndim: int, dtype: type) -> None:
    labels = vessel_labels(ndim, seed=2)
    seg = labels[None].astype(dtype)
    result = SkeletonTransform(per_class=True)(segmentation=seg)["segmentation"]
    assert isinstance(result, np.ndarray)
    assert result.dtype == dtype
    assert result.shape == (2, *labels.shape)
    np.testing.assert_array_equal(result[0], seg[0])
    np.testing.assert_array_equal(result[1], tubed_skeleton(labels, per_class=True))


def test_options_are_passed_through() -> None:
    """per_class and ignore_label change the output, so they must reach tubed_skeleton."""
    seg = np.zeros((1, 20, 20), dtype=np.int16)
    seg[0, 4:16, 3:10] = 1
    seg[0, 4:16, 10:17] = 2  # two touching classes: one joint skeleton vs. one per class
    joint = SkeletonTransform()(segmentation=seg)["segmentation"][1]
    separate = SkeletonTransform(per_class=True)(segmentation=seg)["segmentation"][1]
    assert not np.array_equal(joint, separate)
    np.testing.assert_array_equal(separate, tubed_skeleton(seg[0], per_class=True))

    ignored = SkeletonTransform(ignore_label=2)(segmentation=seg)["segmentation"][1]
    assert not np.any(ignored == 2) and np.any(ignored == 1)
    np.testing.assert_array_equal(ignored, tubed_skeleton(seg[0], ignore_label=2))


def test_skeleton_reaches_every_deep_supervision_scale() -> None:
    """Channel 1 is carried through DownsampleSegForDSTransform like the labels."""
    labels = vessel_labels(3, seed=3)
    pipeline = ComposeTransforms([SkeletonTransform(), DownsampleSegForDSTransform([1, 0.5, 0.25])])
    scales = pipeline(segmentation=torch.from_numpy(labels[None].astype(np.int16)))["segmentation"]
    full = scales[0]
    assert [tuple(s.shape) for s in scales] == [(2, 24, 24, 24), (2, 12, 12, 12), (2, 6, 6, 6)]
    for s in scales[1:]:
        expected = torch.nn.functional.interpolate(full[None].float(), s.shape[1:], mode="nearest-exact")[0]
        assert torch.equal(s, expected.to(s.dtype))
    assert torch.equal(full[1], torch.from_numpy(tubed_skeleton(labels)))


# --------------------------------------------------------------------------- ClassicSkeletonTransform


@pytest.mark.parametrize("kwargs", KWARGS, ids=KWARG_IDS)
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
@pytest.mark.parametrize("ndim", [2, 3])
def test_classic_transform_matches_tubed_skeleton(ndim: int, dtype: type, kwargs: dict) -> None:
    seg = np.stack([labels_with_extras(ndim, seed=s, negative=dtype != np.uint8)[None] for s in (4, 5, 6)])
    seg = seg.astype(dtype)
    seg_before = seg.copy()
    data = np.random.default_rng(0).random(seg.shape, dtype=np.float32)
    out = ClassicSkeletonTransform(**kwargs)(data=data, seg=seg)
    assert out["data"] is data
    np.testing.assert_array_equal(out["seg"], seg_before)
    skel = out["skel"]
    assert skel.shape == seg.shape and skel.dtype == np.int16
    for b in range(seg.shape[0]):
        np.testing.assert_array_equal(skel[b, 0], tubed_skeleton(seg_before[b, 0], **kwargs))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
@pytest.mark.parametrize("ndim", [2, 3])
def test_classic_transform_appends_channel_when_output_is_seg(ndim: int, dtype: type) -> None:
    seg = np.stack([vessel_labels(ndim, seed=s)[None] for s in (7, 8)]).astype(dtype)
    out = ClassicSkeletonTransform(per_class=True, seg_key="target", output_key="target")(target=seg.copy())
    result = out["target"]
    assert result.shape == (2, 2, *seg.shape[2:]) and result.dtype == dtype
    assert "skel" not in out
    np.testing.assert_array_equal(result[:, 0], seg[:, 0])
    for b in range(2):
        np.testing.assert_array_equal(result[b, 1], tubed_skeleton(seg[b, 0], per_class=True))


# --------------------------------------------------------------------------- pickling, repr, bad input


@pytest.mark.parametrize("transform", [
    SkeletonTransform(tube_radius=1, per_class=True, fallback=False, ignore_label=IGNORE),
    ClassicSkeletonTransform(tube_radius=3, ignore_label=IGNORE, seg_key="target", output_key="skeleton"),
], ids=["SkeletonTransform", "ClassicSkeletonTransform"])
def test_pickle_round_trip_and_repr(transform: SkeletonTransform | ClassicSkeletonTransform) -> None:
    clone = pickle.loads(pickle.dumps(transform))
    assert type(clone) is type(transform)
    assert vars(clone) == vars(transform)
    assert repr(clone) == repr(transform)
    text = repr(transform)
    assert text.startswith(type(transform).__name__ + "(")
    assert f"ignore_label={IGNORE}" in text and f"tube_radius={transform.tube_radius}" in text

    labels = vessel_labels(2, seed=9)
    if isinstance(transform, SkeletonTransform):
        a = transform(segmentation=torch.from_numpy(labels[None].astype(np.int16)))["segmentation"]
        b = clone(segmentation=torch.from_numpy(labels[None].astype(np.int16)))["segmentation"]
        assert torch.equal(a, b)
    else:
        a = transform(target=labels[None, None])["skeleton"]
        b = clone(target=labels[None, None])["skeleton"]
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_tube_radius(bad: object) -> None:
    with pytest.raises(ValueError, match="tube_radius"):
        SkeletonTransform(tube_radius=bad)
    with pytest.raises(ValueError, match="tube_radius"):
        ClassicSkeletonTransform(tube_radius=bad)


def test_skeleton_transform_rejects_two_channels() -> None:
    seg = torch.zeros((2, 16, 16), dtype=torch.int16)
    with pytest.raises(ValueError, match="single-channel") as info:
        SkeletonTransform()(segmentation=seg)
    message = str(info.value)
    assert "plain label map" in message and "RegionSkeletonTransform" in message
    assert "ConvertSegmentationToRegionsTransform" in message and "DownsampleSegForDSTransform" in message


@pytest.mark.parametrize("shape", [(16, 16), (1, 1, 8, 8, 8), (5,)])
def test_skeleton_transform_rejects_wrong_ndim(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(C, X, Y\)"):
        SkeletonTransform()(segmentation=torch.zeros(shape, dtype=torch.int16))


def test_skeleton_transform_rejects_non_integer_values() -> None:
    seg = torch.zeros((1, 16, 16))
    seg[0, 4:8, 4:8] = 0.5
    with pytest.raises(ValueError, match="SkeletonTransform: .*integer"):
        SkeletonTransform()(segmentation=seg)


def test_classic_transform_rejects_bad_input() -> None:
    transform = ClassicSkeletonTransform()
    with pytest.raises(ValueError, match="'seg'.*missing.*seg_key"):
        transform(data=np.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="single-channel.*Region-based"):
        transform(seg=np.zeros((2, 2, 8, 8), dtype=np.int16))
    with pytest.raises(ValueError, match=r"\(B, C, X, Y\)"):
        transform(seg=np.zeros((8, 8, 8), dtype=np.int16))
    seg = np.zeros((2, 1, 8, 8), dtype=np.float32)
    seg[1, 0, 2:4, 2:4] = 0.5
    with pytest.raises(ValueError, match="sample 1.*integer"):
        transform(seg=seg)


# --------------------------------------------------------------------------- multi-process loading


@pytest.mark.full
@pytest.mark.parametrize("method", START_METHODS)
def test_torch_dataloader_workers(method: str) -> None:
    transform = SkeletonTransform(per_class=True)
    dataset = VesselSkeletonDataset(8, transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False,
                                         multiprocessing_context=method, timeout=120)
    seen, pids = [], set()
    for indices, segs, worker_pids in loader:
        pids.update(worker_pids.tolist())
        for index, seg in zip(indices.tolist(), segs):
            labels = loader_labels(index)
            assert seg.shape == (2, *labels.shape) and seg.dtype == torch.int16
            np.testing.assert_array_equal(seg[0].numpy(), labels)
            np.testing.assert_array_equal(seg[1].numpy(), tubed_skeleton(labels, per_class=True))
            seen.append(index)
    assert seen == list(range(8))
    assert len(pids) == 2 and os.getpid() not in pids


MTA_SCRIPT = textwrap.dedent('''
    import multiprocessing
    import os
    import sys

    import numpy as np
    from batchgenerators.dataloading.data_loader import SlimDataLoaderBase
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

    from nnunet_ext.skeleton import tubed_skeleton
    from nnunet_ext.data.synthetic import TreeParams, vessel_tree
    from nnunet_ext.transforms import ClassicSkeletonTransform

    SHAPES = [(48, 48), (24, 24, 24)]
    PARAMS = TreeParams(root_radius=2.5, branch_probability=0.05)
    BATCHES_PER_WORKER = 3


    def labels_for(seed, ndim):
        shape = SHAPES[ndim - 2]
        return vessel_tree(shape, seed=seed, n_classes=2, params=PARAMS if ndim == 3 else None)


    class VesselBatches(SlimDataLoaderBase):
        """Finite loader: each worker makes BATCHES_PER_WORKER batches, alternating 2D and 3D."""

        def __init__(self, batch_size):
            super().__init__(None, batch_size, 2)
            self.count = 0

        def generate_train_batch(self):
            if self.count >= BATCHES_PER_WORKER:
                raise StopIteration
            ndim = 2 + self.count % 2
            seeds = [100 * self.thread_id + 10 * self.count + i for i in range(self.batch_size)]
            seg = np.stack([labels_for(s, ndim)[None] for s in seeds]).astype(np.int16)
            self.count += 1
            return {"data": seg.astype(np.float32), "seg": seg, "seeds": seeds, "ndim": ndim,
                    "pid": os.getpid(), "method": multiprocessing.get_start_method(allow_none=True)}


    def main(method):
        multiprocessing.set_start_method(method, force=True)
        transform = ClassicSkeletonTransform(per_class=True)
        mta = MultiThreadedAugmenter(VesselBatches(2), transform, num_processes=2, num_cached_per_queue=2,
                                     seeds=[0, 1])
        try:
            batches = list(mta)
        finally:
            mta._finish()
        errors = []
        if len(batches) != 2 * BATCHES_PER_WORKER:
            errors.append(f"expected {2 * BATCHES_PER_WORKER} batches, got {len(batches)}")
        pids = {b["pid"] for b in batches}
        if len(pids) != 2 or os.getpid() in pids:
            errors.append(f"batches not made by 2 worker processes: {pids}")
        for batch in batches:
            if batch["method"] != method:
                errors.append(f"worker ran with start method {batch['method']!r}, not {method!r}")
            skel = batch["skel"]
            if skel.dtype != np.int16 or skel.shape != batch["seg"].shape:
                errors.append(f"bad skel {skel.dtype} {skel.shape}")
                continue
            for b, seed in enumerate(batch["seeds"]):
                labels = labels_for(seed, batch["ndim"])
                if not np.array_equal(batch["seg"][b, 0], labels):
                    errors.append(f"seg of seed {seed} changed")
                if not np.array_equal(skel[b, 0], tubed_skeleton(labels, per_class=True)):
                    errors.append(f"skeleton of seed {seed} ({batch['ndim']}D) differs from tubed_skeleton")
        if errors:
            print("\\n".join(errors))
            sys.exit(1)
        print(f"OK {method}: {len(batches)} batches from workers {sorted(pids)}")


    if __name__ == "__main__":
        main(sys.argv[1])
''')


@pytest.mark.full
@pytest.mark.parametrize("method", START_METHODS)
def test_multithreaded_augmenter_workers(method: str, tmp_path) -> None:
    script = tmp_path / "mta_check.py"
    script.write_text(MTA_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert f"OK {method}: 6 batches" in proc.stdout
