"""The losses on the training hot path: no device-to-host sync after the first call, label values checked
once, non-finite logits give a non-finite loss (as nnU-Net's own loss), and Skeleton Recall's own-class
formulation equals its one-hot definition (values and gradients).

A host sync on a GPU is any read of a tensor's value into Python: ``.item()``, ``.tolist()``,
``bool(t)``, ``int(t)``, ``float(t)``, ``.numpy()``, ``.cpu()``. On the CPU nothing syncs, so the
tests make each of those raise while a loss runs forward and backward.

A host-to-device copy (a constant built on the host each step) stalls the GPU like a sync and is invisible on
the CPU: the losses also run on the ``meta`` device, where every copy of CPU data onto meta is recorded, and none
may happen after the first call there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nnunet_ext.distance import boundary_distance
from nnunet_ext.losses import (
    CbDiceLoss,
    ClassificationGuidedLoss,
    ClCELoss,
    ComboLoss,
    HausdorffDTLoss,
    HybridLoss,
    RegionCbDiceLoss,
    RegionClCELoss,
    RegionClDiceLoss,
    RegionComboLoss,
    RegionHausdorffDTLoss,
    RegionSkeletonRecallLoss,
    SoftClDiceLoss,
    SoftSkeletonRecallLoss,
    WeightedCrossEntropyLoss,
)
from nnunet_ext.losses.skeleton_recall import own_class_sums

HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")


@contextmanager
def no_host_sync() -> Iterator[None]:
    """Make every read of a tensor value into Python raise inside the block."""
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def forbidden(name: str) -> Callable:
        def read(*_args, **_kwargs):
            raise AssertionError(f"host sync on the hot path: Tensor.{name}")
        return read

    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, forbidden(name))
        yield
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)


def _labels(shape: tuple[int, ...], classes: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))


class OnRegions(nn.Module):
    """A region loss fed from a label batch: regions (labels >= 1, labels == 2) and logits channels 1, 2."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits[:, 1:], torch.cat([labels >= 1, labels == 2], 1).to(labels.dtype))


class WithCGM(nn.Module):
    """ClassificationGuidedLoss around the hybrid loss, with fixed classification logits."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.cls_logits = nn.Parameter(torch.zeros(2, 2))  # a parameter: moves with .to(device)
        self.loss = ClassificationGuidedLoss(HybridLoss(**kwargs), lambda: self.cls_logits,
                                             ignore_label=kwargs.get("ignore_label"))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, labels)


class WithWeights(nn.Module):
    """The weighted cross entropy with a fixed weight map made from the labels (as the data pipeline delivers one)."""

    def __init__(self, ignore_label: int | None = None, **_kwargs) -> None:
        super().__init__()
        self.loss = WeightedCrossEntropyLoss(ignore_label=ignore_label)

    @property
    def _values_checked(self) -> bool:
        return self.loss._values_checked

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, labels, 1.0 + labels.float().abs())


class WithDistanceFields(nn.Module):
    """HD_DT with the ground-truth fields handed in (the trainer's path), here from the device EDT."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.loss = HausdorffDTLoss(**kwargs)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        classes = torch.arange(1, logits.shape[1], device=labels.device).view(1, -1, 1, 1)
        fields = boundary_distance(labels == classes)
        return self.loss(logits, labels, fields)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "skeleton_recall": SoftSkeletonRecallLoss,
    "cldice": SoftClDiceLoss,
    "combo": lambda **kw: ComboLoss(alpha=0.3, beta=0.7, **kw),
    "hybrid": HybridLoss,
    "cgm_hybrid": WithCGM,
    "cbdice": CbDiceLoss,
    "clce": ClCELoss,
    "region_skeleton_recall": lambda ignore_label=None, **kw: OnRegions(RegionSkeletonRecallLoss(**kw)),
    "region_cldice": lambda ignore_label=None, **kw: OnRegions(RegionClDiceLoss(**kw)),
    "region_combo": lambda ignore_label=None, **kw: OnRegions(RegionComboLoss(**kw)),
    "region_cbdice": lambda ignore_label=None, **kw: OnRegions(RegionCbDiceLoss(**kw)),
    "region_clce": lambda ignore_label=None, **kw: OnRegions(RegionClCELoss(**kw)),
    "hausdorff_dt": lambda **kw: HausdorffDTLoss(spacing=(1.0, 2.0), **kw),
    "hausdorff_dt_fields": WithDistanceFields,
    "region_hausdorff_dt": lambda ignore_label=None, **kw: OnRegions(RegionHausdorffDTLoss(**kw)),
    "unet_weighted_ce": WithWeights,
}


def _after_the_first_call(name: str, batch_dice: bool) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(loss, logits (2, 3, 12, 10), labels (2, 1, 12, 10) with ignore-label voxels) after the loss's first call,
    which checks the label values once on the host."""
    logits = torch.randn(2, 3, 12, 10)
    labels = _labels((2, 1, 12, 10), 3)
    labels[0, 0, 0, :3] = 3  # the ignore label
    loss = LOSSES[name](batch_dice=batch_dice, ignore_label=3)
    loss(logits, labels)
    return loss, logits, labels


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("name", LOSSES)
def test_no_host_sync_after_the_first_call(name: str, batch_dice: bool) -> None:
    loss, logits, labels = _after_the_first_call(name, batch_dice)
    z = logits.clone().requires_grad_(True)
    with no_host_sync():
        value = loss(z, labels)
        value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_the_detector_catches_a_sync() -> None:
    with no_host_sync(), pytest.raises(AssertionError, match="Tensor.item"):
        torch.ones(1).sum().item()


COPY_OPS = (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)
# they copy host data onto the device below the dispatcher, unseen by a dispatch mode: wrapped instead
CONSTRUCTORS = ((torch, "tensor"), (torch, "as_tensor"), (torch, "asarray"), (torch.Tensor, "new_tensor"))


class _CopiesOntoMeta(TorchDispatchMode):
    """Records the ``aten._to_copy`` / ``aten.copy_`` from a CPU tensor onto the meta device (forward and backward)."""

    def __init__(self, copies: list[str]) -> None:
        super().__init__()
        self.copies = copies

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sources = [a for a in args if isinstance(a, torch.Tensor) and a.device.type == "cpu"]
        if func in COPY_OPS and isinstance(out, torch.Tensor) and out.is_meta and sources:
            self.copies.append(f"{func} of a CPU tensor {tuple(sources[0].shape)} onto meta")
        return out


@contextmanager
def host_to_meta_copies() -> Iterator[list[str]]:
    """Record every copy of host data onto the ``meta`` device inside the block (on a GPU: a host-to-device copy):
    ``.to``/``copy_`` of CPU tensors, and ``torch.tensor``/``as_tensor``/``asarray``/``Tensor.new_tensor`` of
    host data onto meta."""
    copies: list[str] = []
    originals = [(owner, name, getattr(owner, name)) for owner, name in CONSTRUCTORS]

    def recording(name: str, construct: Callable) -> Callable:
        data_at = 1 if name == "new_tensor" else 0  # new_tensor(self, data, ...)

        def wrapped(*args, **kwargs):
            out = construct(*args, **kwargs)
            data = args[data_at] if len(args) > data_at else kwargs.get("data", kwargs.get("obj"))
            if out.is_meta and not (isinstance(data, torch.Tensor) and data.is_meta):
                copies.append(f"{name} of host data onto meta")
            return out
        return wrapped

    try:
        for owner, name, construct in originals:
            setattr(owner, name, recording(name, construct))
        with _CopiesOntoMeta(copies):
            yield copies
    finally:
        for owner, name, construct in originals:
            setattr(owner, name, construct)


def test_the_copy_detector_catches_host_to_device_copies() -> None:
    on_meta = torch.zeros(3, device="meta")
    with host_to_meta_copies() as copies:
        torch.ones(3).to("meta")
        on_meta.copy_(torch.ones(3))
        torch.tensor([1.0, 2.0], device="meta")
        torch.as_tensor([1.0], device=on_meta.device)
        on_meta.new_tensor(2.0)
        # on the device already: no copy
        torch.full((2,), 3.0, device="meta"), torch.arange(3, device="meta"), on_meta.to(torch.float64)
        torch.as_tensor(on_meta, device="meta"), (on_meta * torch.tensor(2.0)).sum()
    assert len(copies) == 5, copies
    x = torch.zeros(3, device="meta", requires_grad=True)
    with host_to_meta_copies() as copies:
        _CopyInBackward.apply(x).sum().backward()  # backward passes are watched too
    assert len(copies) == 2, copies


class _CopyInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * torch.full(grad.shape, 2.0).to(grad.device) + torch.tensor(0.0, device=grad.device)


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("name", LOSSES)
def test_no_host_to_device_copy_after_the_first_call(name: str, batch_dice: bool) -> None:
    # the label values are checked on the host first: meta tensors hold no values
    loss, logits, labels = _after_the_first_call(name, batch_dice)
    loss.to("meta")
    logits, labels = logits.to("meta"), labels.to("meta")
    loss(logits, labels)  # a first call on the device may set up its constants
    z = logits.detach().requires_grad_(True)
    with host_to_meta_copies() as copies:
        value = loss(z, labels)
        value.backward()
    assert copies == [], f"{len(copies)} host-to-device copies in one call: {copies}"
    assert value.is_meta and value.shape == () and z.grad.is_meta


@pytest.mark.parametrize("name", ["skeleton_recall", "cldice", "combo", "hybrid", "cbdice", "clce", "hausdorff_dt",
                                  "unet_weighted_ce"])
def test_label_values_are_checked_on_the_first_call_until_they_pass(name: str) -> None:
    logits, labels = torch.randn(1, 3, 6, 6), _labels((1, 1, 6, 6), 3)
    bad = labels.clone()
    bad[0, 0, 2, 2] = 5
    loss = LOSSES[name]()
    for _ in range(2):  # a failed check is repeated on the next call
        with pytest.raises(ValueError, match="contains label 5 but the network has C=3"):
            loss(logits, bad)
    loss(logits, labels)
    assert loss._values_checked


@pytest.mark.parametrize("name", LOSSES)
def test_labels_outside_the_classes_after_the_first_call_do_not_crash(name: str) -> None:
    # nnU-Net's data pipeline checks every batch (LabelCheckTransform); unchecked later batches
    # must still not index out of range deep in torch.
    logits, labels = torch.randn(2, 3, 6, 6), _labels((2, 1, 6, 6), 3)
    loss = LOSSES[name]()
    loss(logits, labels)
    labels[1, 0, 1, 1], labels[0, 0, 2, 2] = 9, -4
    assert torch.isfinite(loss(logits, labels))


# (+inf in a sigmoid region output and -inf anywhere are saturated probabilities, 1 and 0: finite)
@pytest.mark.parametrize(("name", "bad"), [(name, bad) for name in ("cldice", "combo", "hybrid", "cgm_hybrid", "cbdice",
                                                                    "clce", "hausdorff_dt", "unet_weighted_ce")
                                           for bad in (float("nan"), float("inf"))]
                         + [(name, float("nan")) for name in ("region_cldice", "region_combo", "region_cbdice",
                                                              "region_clce", "region_hausdorff_dt")])
def test_non_finite_logits_give_a_non_finite_loss_without_an_exception(name: str, bad: float) -> None:
    logits, labels = torch.randn(2, 3, 8, 8), _labels((2, 1, 8, 8), 3)
    logits[1, 1, 4, 4] = bad
    assert not torch.isfinite(LOSSES[name]()(logits, labels))


@pytest.mark.parametrize(("name", "bad"), [("skeleton_recall", float("nan")), ("skeleton_recall", float("inf")),
                                           ("region_skeleton_recall", float("nan"))])
def test_non_finite_logits_on_the_skeleton_give_a_non_finite_loss(name: str, bad: float) -> None:
    logits, labels = torch.randn(2, 3, 8, 8), _labels((2, 1, 8, 8), 3)
    labels[1, 0, 4, 4] = 2
    logits[1, 2, 4, 4] = bad
    assert not torch.isfinite(LOSSES[name]()(logits, labels))


# own_class_sums against the one-hot definition, every formulation: tests/test_skeleton_recall_dispatch.py


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_summed_in_float32(dtype: torch.dtype) -> None:
    logits = 3 * torch.randn(1, 3, 64, 64)
    labels = torch.ones(1, 1, 64, 64, dtype=torch.long)  # 4096 voxels: beyond fp16's exact integers
    sums, counts = own_class_sums(logits.to(dtype), labels)
    assert sums.dtype == counts.dtype == torch.float32
    assert counts[0, 0].item() == 4096
    ref, _ = own_class_sums(logits.to(dtype).float(), labels)
    torch.testing.assert_close(sums, ref)
