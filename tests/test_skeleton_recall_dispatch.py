"""Skeleton Recall's sum formulations: the dispatch (``sum_formulation``), every formulation against the one-hot
definition (values and gradients, also under CPU autocast and with ignore labels), and the memory bound of the
CUDA formulation."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nnunet_ext.losses import SoftSkeletonRecallLoss
from nnunet_ext.losses import skeleton_recall as sr

pytestmark = pytest.mark.usefixtures("single_torch_thread")

MB = 10**6


def one_hot_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition: softmax (float32 at least), one-hot of the labels (classes 0..C-1 only), masked sums."""
    num_classes = logits.shape[1]
    probs = torch.softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, 1)
    onehot = torch.stack([labels[:, 0] == c for c in range(num_classes)], 1).to(probs.dtype)
    axes = tuple(range(2, logits.ndim))
    return (probs * onehot).sum(axes)[:, 1:], onehot.sum(axes)[:, 1:]


def _inputs(shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``shape`` (B, C, *spatial) and labels (B, 1, *spatial) with some values outside [0, C)."""
    gen = torch.Generator().manual_seed(seed + sum(shape))
    logits = (4 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
    labels = torch.randint(-1, shape[1] + 2, (shape[0], 1, *shape[2:]), generator=gen)
    return logits, labels


def _forced(monkeypatch: pytest.MonkeyPatch, formulation: str) -> None:
    monkeypatch.setattr(sr, "sum_formulation", lambda _channels, _device_type: formulation)


# ---------------------------------------------------------------------------------------------------
# the dispatch


def test_the_cpu_takes_the_skeleton_voxels_and_while_compiling_the_dense_formulations_by_class_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    crossover = sr.CPU_OWN_CLASS_MIN_CHANNELS
    assert [sr.sum_formulation(c, "cpu") for c in (2, crossover, 64)] == ["skeleton_voxels"] * 3
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert sr.sum_formulation(2, "cpu") == "masked_product"
    assert sr.sum_formulation(crossover - 1, "cpu") == "masked_product"
    assert sr.sum_formulation(crossover, "cpu") == "own_class_binned"
    assert sr.sum_formulation(64, "cpu") == "own_class_binned"
    assert sr.sum_formulation(4, "cuda") == "own_class_compared"


@pytest.mark.parametrize("device_type", ["cuda", "meta", "mps"])
@pytest.mark.parametrize("channels", [2, 4, 15, 64])
def test_other_devices_take_the_chunked_comparison(device_type: str, channels: int) -> None:
    assert sr.sum_formulation(channels, device_type) == "own_class_compared"


@pytest.mark.parametrize("channels", [3, 20])
def test_own_class_sums_follow_the_dispatch(channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    for name, function in sr.FORMULATIONS.items():
        monkeypatch.setitem(sr.FORMULATIONS, name,
                            lambda z, y, name=name, function=function: called.append(name) or function(z, y))
    sr.own_class_sums(*_inputs((1, channels, 4, 3)))
    assert called == [sr.sum_formulation(channels, "cpu")]


# ---------------------------------------------------------------------------------------------------
# every formulation equals the one-hot definition


@pytest.mark.parametrize("formulation", sr.FORMULATIONS)
@pytest.mark.parametrize("shape", [(2, 4, 9, 7), (3, 15, 5, 6, 4), (1, 2, 11, 3), (2, 9, 4, 4, 3)])
def test_formulations_equal_the_one_hot_definition(formulation: str, shape: tuple[int, ...]) -> None:
    logits, labels = _inputs(shape)
    weights = torch.randn(shape[0], shape[1] - 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z_ref, z = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ref_sums, ref_counts = one_hot_sums(z_ref, labels)
    sums, counts = sr.own_class_sums(z, labels.to(torch.int16), formulation)
    torch.testing.assert_close(sums, ref_sums, rtol=0, atol=1e-12)
    torch.testing.assert_close(counts, ref_counts, rtol=0, atol=0)
    (ref_sums * weights).sum().backward()
    (sums * weights).sum().backward()
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=0, atol=1e-12)
    assert z_ref.grad.abs().max() > 1e-3


@pytest.mark.parametrize("formulation", sr.FORMULATIONS)
def test_formulations_pass_gradcheck(formulation: str) -> None:
    logits, labels = _inputs((2, 4, 5, 3))
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: sr.own_class_sums(z, labels, formulation)[0], (logits,))


# one class per chunk; two: a float64 class costs B N (1 + 8) bytes, B N = 2 * 15
@pytest.mark.parametrize("chunk_bytes", [1, 2 * 2 * 15 * 9])
def test_the_comparison_in_chunks_of_classes_equals_the_definition(chunk_bytes: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sr, "COMPARE_CHUNK_BYTES", chunk_bytes)
    logits, labels = _inputs((2, 6, 5, 3))
    assert sr.compare_chunk(2, 15, 8) == (1 if chunk_bytes == 1 else 2)
    z_ref, z = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ref_sums, ref_counts = one_hot_sums(z_ref, labels)
    sums, counts = sr.own_class_sums(z, labels, "own_class_compared")
    torch.testing.assert_close((sums, counts), (ref_sums, ref_counts), rtol=0, atol=1e-12)
    ref_sums.sum().backward()
    sums.sum().backward()
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("formulation", sr.FORMULATIONS)
@pytest.mark.parametrize("logits_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ignore_label", [None, 2, 9])
def test_the_loss_under_cpu_autocast_with_ignore_labels_equals_the_one_hot_loss(
        formulation: str, logits_dtype: torch.dtype, ignore_label: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (2, 5, 6, 5, 4)
    logits, labels = _inputs(shape, torch.float32)
    labels = labels.clamp(0, 4)
    labels[0, 0, :2] = 9 if ignore_label == 9 else 2  # ignore-label voxels (class 2 itself when it is ignored)
    logits = logits.to(logits_dtype)
    _forced(monkeypatch, formulation)
    loss = SoftSkeletonRecallLoss(ignore_label=ignore_label)
    z_ref, z = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    kept = labels if ignore_label is None else labels.masked_fill(labels == ignore_label, 0)
    ref_sums, ref_counts = one_hot_sums(z_ref, kept)
    expected = -((ref_sums + loss.smooth) / (ref_counts + loss.smooth)).mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(z, labels)
    assert value.dtype == torch.float32
    expected.backward()
    value.backward()
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(z.grad.float(), z_ref.grad.float(), rtol=1e-5, atol=1e-7)
    assert z.grad.dtype == logits_dtype


@pytest.mark.parametrize("formulation", [None, "masked_product", "own_class_binned", "own_class_compared"])
def test_the_loss_compiles_without_graph_breaks(formulation: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """As dispatched (on the CPU: a dense formulation while compiling), and each dense formulation."""
    if formulation is not None:
        _forced(monkeypatch, formulation)
    loss = SoftSkeletonRecallLoss()
    logits, labels = _inputs((2, 4, 6, 5), torch.float32)
    labels = labels.clamp(0, 3)
    loss(logits, labels)  # the first call checks the label values (host reads; not compiled)
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    z_ref, z = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    value, expected = compiled(z, labels), loss(z_ref, labels)
    torch.testing.assert_close(value, expected)
    value.backward()
    expected.backward()
    torch.testing.assert_close(z.grad, z_ref.grad)


# ---------------------------------------------------------------------------------------------------
# memory of the CUDA formulation


def test_the_cuda_formulation_holds_at_most_160_mb_besides_the_probabilities_at_2x128_cubed_14_classes() -> None:
    """2x128^3, 14 classes + background, float32 (B N = 4,194,304; 64 MiB chunks: 3 classes each):
    class index 16 B N = 67.1 MB; forward 8 B N + 4 B N + 5 * 3 B N = 113.2 MB; backward 16 B N = 67.1 MB.
    Unchunked, the (B, 14, N) maps alone held 5 * 14 B N = 293.6 MB (343.9 MB with index and own)."""
    batch, channels, voxels = 2, 15, 128**3
    assert sr.compare_chunk(batch, voxels, 4) == 3
    extra = sr.compared_sums_extra_bytes(batch, channels, voxels, torch.float32)
    assert extra == (8 + 4 + 5 * 3) * batch * voxels
    assert extra <= 160 * MB
    # the bound holds for larger patches too: the chunk shrinks, the per-voxel terms stay
    assert sr.compared_sums_extra_bytes(2, 15, 160**3) <= 16 * 2 * 160**3 + sr.COMPARE_CHUNK_BYTES


class _LargestOutputs(TorchDispatchMode):
    """Records the bytes of every op's tensor outputs (on meta: nothing is allocated)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[tuple[str, tuple[int, ...], int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.outputs.append((str(func), tuple(t.shape), t.numel() * t.element_size()))
        return out


def test_the_cuda_formulation_makes_no_temporary_larger_than_a_chunk_but_probabilities_and_gradient() -> None:
    """Forward and backward at 2x128^3, 14 classes on the meta device (the non-CPU path, no memory used)."""
    batch, channels, voxels = 2, 15, 128**3
    logits = torch.empty(batch, channels, 128, 128, 128, device="meta", requires_grad=True)
    labels = torch.empty(batch, 1, 128, 128, 128, device="meta", dtype=torch.int16)
    assert sr.sum_formulation(channels, "meta") == "own_class_compared"
    with _LargestOutputs() as seen:
        sums, _ = sr.own_class_sums(logits, labels)
        sums.sum().backward()
    full = batch * channels * voxels * 4  # the probabilities and the gradient
    large = [o for o in seen.outputs if o[2] > max(sr.COMPARE_CHUNK_BYTES, 8 * batch * voxels)]
    assert large and all(size == full for _, _, size in large), large
