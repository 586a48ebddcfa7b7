"""Tests of the soft skeleton and the clDice loss against the straightforward definition and known answers.

``tests.reference_cldice`` (max_pool2d/3d, every channel) is the definition; the fast
``soft_skeletonize`` and ``soft_cldice`` / ``SoftClDiceLoss`` must compute the same values and gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnunet_ext.losses import SoftClDiceLoss, soft_cldice, soft_skeletonize
from nnunet_ext.losses.soft_skeleton import soft_dilate, soft_erode
from tests.reference_cldice import (
    reference_cldice_loss,
    reference_soft_dilate,
    reference_soft_erode,
    reference_soft_skeleton,
)

BIG = 60.0  # softmax of +-BIG logits is exactly 1/0 in float32 (exp(-120) underflows)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def onehot_of(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot (B, C, *spatial) of integer labels (B, 1, *spatial) or (B, *spatial)."""
    if labels.ndim >= 3 and labels.shape[1] == 1:
        labels = labels[:, 0]
    return F.one_hot(labels.long(), num_classes).movedim(-1, 1).to(dtype)


def random_case(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits (B, C, *spatial) and labels (B, 1, *spatial) in [0, C)."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(shape, generator=gen, dtype=dtype)
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=gen)
    return logits, labels


# ---------------------------------------------------------------------------------------------------
# soft_erode / soft_dilate / soft_skeletonize == the pooling definition

SKELETON_SHAPES = [
    (2, 1, 9, 11),
    (1, 3, 16, 7),
    (3, 2, 1, 8),   # size 1 along an axis
    (2, 4, 2, 5),   # size 2 along an axis
    (1, 2, 2, 2),
    (1, 1, 1, 1),
    (2, 1, 6, 7, 5),
    (1, 3, 8, 8, 8),
    (1, 2, 1, 6, 5),
    (2, 2, 4, 2, 3),
    (1, 5, 3, 1, 2),
]


def _shape_id(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _cross_min(x: torch.Tensor) -> torch.Tensor:
    """Min over the voxel and its face neighbours, written with +inf padding (independent of pooling)."""
    spatial = x.ndim - 2
    padded = F.pad(x, (1, 1) * spatial, value=float("inf"))
    centre = tuple(slice(1, 1 + n) for n in x.shape[2:])
    out = padded[(..., *centre)]
    for axis in range(spatial):
        for shift in (0, 2):
            window = list(centre)
            window[axis] = slice(shift, shift + x.shape[2 + axis])
            out = torch.minimum(out, padded[(..., *window)])
    return out


def _box_max(x: torch.Tensor) -> torch.Tensor:
    """Max over the full 3x...x3 window, with -inf padding, by direct enumeration of the offsets."""
    spatial = x.ndim - 2
    padded = F.pad(x, (1, 1) * spatial, value=float("-inf"))
    out = torch.full_like(x, float("-inf"))
    for offset in torch.cartesian_prod(*[torch.arange(3)] * spatial).reshape(-1, spatial).tolist():
        window = tuple(slice(o, o + n) for o, n in zip(offset, x.shape[2:]))
        out = torch.maximum(out, padded[(..., *window)])
    return out


@pytest.mark.parametrize("shape", SKELETON_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_erode_dilate_equal_pooling_definition(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape) * 100 + sum(shape)), dtype=dtype)
    erode, dilate = soft_erode(x), soft_dilate(x)
    assert erode.shape == x.shape and dilate.shape == x.shape and erode.dtype == dtype
    assert torch.equal(erode, reference_soft_erode(x))
    assert torch.equal(dilate, reference_soft_dilate(x))
    assert torch.equal(erode, _cross_min(x))
    assert torch.equal(dilate, _box_max(x))


@pytest.mark.parametrize("shape", SKELETON_SHAPES, ids=_shape_id)
def test_skeleton_equals_reference(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    for iterations in range(1, 6):
        x64 = torch.rand(shape, generator=gen, dtype=torch.float64)
        assert torch.equal(soft_skeletonize(x64, iterations), reference_soft_skeleton(x64, iterations))
        x32 = x64.float()
        torch.testing.assert_close(soft_skeletonize(x32, iterations), reference_soft_skeleton(x32, iterations),
                                   atol=1e-6, rtol=0)
        # quantised values (many ties) and binary maps too
        binary = (x64 > 0.5).double()
        assert torch.equal(soft_skeletonize(binary, iterations), reference_soft_skeleton(binary, iterations))
        coarse = torch.round(x64 * 4) / 4
        assert torch.equal(soft_skeletonize(coarse, iterations), reference_soft_skeleton(coarse, iterations))


def test_skeleton_without_grad_and_recompute_flag_give_same_values() -> None:
    x = torch.rand(2, 3, 9, 8, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = reference_soft_skeleton(x, 3)
    for recompute in (None, True, False):
        assert torch.equal(soft_skeletonize(x, 3, recompute=recompute), expected)
        assert torch.equal(soft_skeletonize(x.clone().requires_grad_(True), 3, recompute=recompute).detach(),
                           expected)


# ---------------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (1, 2, 1, 7), (2, 1, 2, 5), (1, 2, 6, 5, 7), (2, 1, 2, 1, 4)],
                         ids=_shape_id)
@pytest.mark.parametrize("recompute", [True, False])
def test_skeleton_gradient_equals_reference(shape: tuple[int, ...], recompute: bool) -> None:
    gen = torch.Generator().manual_seed(7 + sum(shape))
    for iterations in (1, 3, 4):
        x = torch.rand(shape, generator=gen, dtype=torch.float64, requires_grad=True)
        weight = torch.rand(shape, generator=gen, dtype=torch.float64)  # a generic upstream gradient
        (ours,) = torch.autograd.grad((soft_skeletonize(x, iterations, recompute=recompute) * weight).sum(), x)
        (ref,) = torch.autograd.grad((reference_soft_skeleton(x, iterations) * weight).sum(), x)
        torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
        assert ours.abs().sum() > 0


@pytest.mark.parametrize("shape", [(1, 2, 4, 5), (1, 1, 3, 4, 3)], ids=_shape_id)
@pytest.mark.parametrize("recompute", [True, False])
def test_skeleton_gradcheck(shape: tuple[int, ...], recompute: bool) -> None:
    # continuous random values: no ties, so the function is differentiable at the point
    x = torch.rand(shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: soft_skeletonize(t, 2, recompute=recompute), (x,))


def test_erode_dilate_gradient_equals_reference() -> None:
    gen = torch.Generator().manual_seed(12)
    for shape in [(2, 2, 7, 6), (1, 2, 4, 5, 3)]:
        x = torch.rand(shape, generator=gen, dtype=torch.float64, requires_grad=True)
        weight = torch.rand(shape, generator=gen, dtype=torch.float64)
        for ours_fn, ref_fn in ((soft_erode, reference_soft_erode), (soft_dilate, reference_soft_dilate)):
            (ours,) = torch.autograd.grad((ours_fn(x) * weight).sum(), x)
            (ref,) = torch.autograd.grad((ref_fn(x) * weight).sum(), x)
            torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("batch_dice", [False, True])
def test_soft_cldice_gradient_equals_reference(batch_dice: bool) -> None:
    logits, labels = random_case((2, 4, 9, 8), seed=13, dtype=torch.float64)
    probs = torch.softmax(logits, 1).requires_grad_(True)
    onehot = onehot_of(labels, 4, torch.float64)
    (ours,) = torch.autograd.grad(soft_cldice(probs, onehot, batch_dice=batch_dice), probs)
    (ref,) = torch.autograd.grad(reference_cldice_loss(probs, onehot, batch_dice=batch_dice), probs)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    assert (ours[:, 0] == 0).all()  # background channel takes no part


# ---------------------------------------------------------------------------------------------------
# soft skeleton: known answers


@pytest.mark.parametrize("ndim", [2, 3])
def test_one_voxel_wide_line_is_its_own_skeleton(ndim: int) -> None:
    shape = (1, 1, *(9,) * ndim)
    lines = []
    straight = torch.zeros(shape, dtype=torch.float64)
    straight[(0, 0, 4, slice(1, 8), *(3,) * (ndim - 2))] = 1
    lines.append(straight)
    diagonal = torch.zeros(shape, dtype=torch.float64)  # diagonal neighbours only: still 1 voxel wide
    for i in range(1, 8):
        diagonal[(0, 0, *(i,) * ndim)] = 1
    lines.append(diagonal)
    bent = torch.zeros(shape, dtype=torch.float64)  # an L plus a line along the image border
    bent[(0, 0, slice(0, 6), 2, *(4,) * (ndim - 2))] = 1
    bent[(0, 0, 5, slice(2, 9), *(4,) * (ndim - 2))] = 1
    bent[(0, 0, 8, slice(0, 9), *(0,) * (ndim - 2))] = 1
    lines.append(bent)
    for line in lines:
        for iterations in (1, 3, 5):
            assert torch.equal(soft_skeletonize(line, iterations), line)
            assert torch.equal(soft_skeletonize(line.float(), iterations), line.float())


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_filled_square_or_cube_skeleton_is_its_centre(ndim: int, m: int) -> None:
    side, margin = 2 * m + 1, 2
    x = torch.zeros((1, 1, *(side + 2 * margin,) * ndim), dtype=torch.float64)
    inside = (0, 0, *(slice(margin, margin + side),) * ndim)
    x[inside] = 1
    centre = (0, 0, *(margin + m,) * ndim)
    for iterations in (m, m + 1, m + 3):
        skel = soft_skeletonize(x, iterations)
        assert skel.sum() > 0  # non-empty
        assert (skel[x == 0] == 0).all()  # inside the object
        assert skel[centre] == 1  # contains the centre
        # By construction: cross erosion shrinks the box by one voxel per side and the 3x..x3 dilation
        # restores it, so no ridge appears before the box has shrunk to its centre voxel.
        expected = torch.zeros_like(x)
        expected[centre] = 1
        assert torch.equal(skel, expected)
        assert torch.equal(skel, reference_soft_skeleton(x, iterations))
    if m > 1:  # fewer iterations than the half-width: the ridge is never reached
        assert (soft_skeletonize(x, m - 1) == 0).all()


@pytest.mark.parametrize("shape", [(2, 3, 7, 6), (1, 2, 4, 5, 3), (1, 1, 1, 1)], ids=_shape_id)
def test_constant_inputs(shape: tuple[int, ...]) -> None:
    # Outside the array does not count as background: a constant map has no ridge, whatever its value.
    for value in (0.0, 1.0, 0.37):
        x = torch.full(shape, value, dtype=torch.float64)
        for iterations in (1, 3):
            skel = soft_skeletonize(x, iterations)
            assert torch.equal(skel, torch.zeros_like(x))
            assert torch.equal(skel, reference_soft_skeleton(x, iterations))


def test_output_range_and_shape() -> None:
    gen = torch.Generator().manual_seed(21)
    for shape in [(3, 4, 12, 10), (2, 2, 6, 7, 8)]:
        for x in (torch.rand(shape, generator=gen), (torch.rand(shape, generator=gen) > 0.4).float(),
                  torch.rand(shape, generator=gen) ** 4):
            for iterations in (1, 2, 5):
                skel = soft_skeletonize(x, iterations)
                assert skel.shape == x.shape and skel.dtype == x.dtype
                assert skel.min() >= 0 and skel.max() <= 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, False, None, "3"])
def test_skeleton_bad_iterations(bad: object) -> None:
    with pytest.raises(ValueError, match="iterations"):
        soft_skeletonize(torch.rand(1, 1, 4, 4), bad)


@pytest.mark.parametrize("shape", [(4, 4), (1, 4, 4), (1, 1, 2, 2, 2, 2)], ids=_shape_id)
def test_skeleton_bad_ndim(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expects"):
        soft_skeletonize(torch.rand(shape))


# ---------------------------------------------------------------------------------------------------
# soft_cldice / SoftClDiceLoss == the reference


CLDICE_SHAPES = [(3, 2, 10, 9), (2, 3, 12, 7), (2, 5, 8, 8), (2, 15, 9, 10), (2, 2, 5, 6, 7), (1, 3, 6, 6, 6),
                 (2, 5, 4, 7, 5), (2, 15, 5, 5, 6), (2, 3, 1, 9)]


@pytest.mark.parametrize("shape", CLDICE_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("batch_dice", [False, True])
def test_cldice_equals_reference(shape: tuple[int, ...], batch_dice: bool) -> None:
    logits, labels = random_case(shape, seed=sum(shape) + batch_dice)
    num_classes = shape[1]
    probs, onehot = torch.softmax(logits, 1), onehot_of(labels, num_classes)
    for iterations, smooth in ((3, 1.0), (1, 1e-5), (5, 0.5)):
        ref = reference_cldice_loss(probs, onehot, iterations, smooth, batch_dice)
        ours = soft_cldice(probs, onehot, iterations, smooth, batch_dice)
        module = SoftClDiceLoss(iterations, smooth, batch_dice)(logits, labels)
        assert ours.shape == () and module.shape == ()
        assert ours.item() == pytest.approx(ref.item(), abs=1e-5)
        assert module.item() == pytest.approx(ref.item(), abs=1e-5)
        assert 0 <= module.item() <= 1
    # and not trivially: the value depends on the prediction
    assert SoftClDiceLoss(batch_dice=batch_dice)(logits, labels).item() > 0.05


def test_cldice_float64_and_integer_onehot() -> None:
    logits, labels = random_case((2, 3, 9, 9), seed=5, dtype=torch.float64)
    probs, onehot = torch.softmax(logits, 1), onehot_of(labels, 3, torch.float64)
    ref = reference_cldice_loss(probs, onehot)
    ours = soft_cldice(probs, onehot)
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(ref.item(), abs=1e-12)
    for target in (onehot.long(), onehot.bool(), onehot.to(torch.uint8)):  # F.one_hot gives int64
        assert soft_cldice(probs, target).item() == pytest.approx(ref.item(), abs=1e-12)
    # SoftClDiceLoss works in float32 for half-precision logits (as the other losses), float64 for float64
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        loss = SoftClDiceLoss()(logits.to(dtype), labels)
        assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        expected = reference_cldice_loss(torch.softmax(logits.to(dtype).float(), 1), onehot.float())
        assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_perfect_prediction_gives_zero(ndim: int, num_classes: int) -> None:
    _, labels = random_case((2, num_classes, *(7,) * ndim), seed=ndim * 10 + num_classes)
    labels[1] = 0  # a sample with background only: every class absent, Tprec = Tsens = 1 by the smoothing
    onehot = onehot_of(labels, num_classes)
    for batch_dice in (False, True):
        for smooth in (1.0, 1e-5):
            assert soft_cldice(onehot, onehot, smooth=smooth, batch_dice=batch_dice).item() == 0.0
            assert reference_cldice_loss(onehot, onehot, smooth=smooth, batch_dice=batch_dice).item() == 0.0
            logits = (2 * onehot - 1) * BIG
            loss = SoftClDiceLoss(smooth=smooth, batch_dice=batch_dice)(logits, labels)
            assert loss.item() == pytest.approx(0.0, abs=1e-6)


def _t_shape_vessel() -> torch.Tensor:
    """A 3-voxel-wide T: a vertical trunk and a branch to the right, class 1 in a 32x32 image."""
    vessel = torch.zeros(32, 32)
    vessel[2:30, 14:17] = 1  # trunk: 28 x 3
    vessel[14:17, 17:30] = 1  # branch: 3 x 13 = 39 voxels
    return vessel


def _two_class_map(fg: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - fg, fg])[None]


def test_missing_branch_costs_more_than_thinner_vessel() -> None:
    true = _t_shape_vessel()
    missing_branch = true.clone()
    missing_branch[14:17, 17:30] = 0  # the whole branch: 39 voxels
    thinner = true.clone()  # the trunk thinned to its centre line: still connected, more voxels lost
    thinner[2:30, 14] = 0
    thinner[2:14, 16] = 0
    thinner[17:30, 16] = 0
    lost_branch, lost_thin = (true - missing_branch).sum().item(), (true - thinner).sum().item()
    assert lost_thin > lost_branch  # the thinner vessel misses more volume ...
    onehot = _two_class_map(true)
    loss_branch = soft_cldice(_two_class_map(missing_branch), onehot)
    loss_thin = soft_cldice(_two_class_map(thinner), onehot)
    assert loss_thin.item() < 0.01  # ... but keeps the topology: the true centre line is covered
    assert loss_branch.item() > 0.1  # the missing branch is not
    assert loss_branch.item() > loss_thin.item() + 0.1
    # soft predictions (probabilities, not binary) and the module on logits agree
    for soft in (0.9, 0.7):
        probs = lambda fg, s=soft: _two_class_map(fg * s + (1 - fg) * (1 - s))  # noqa: E731
        assert soft_cldice(probs(missing_branch), onehot) > soft_cldice(probs(thinner), onehot)
    labels = true[None, None].long()
    module = SoftClDiceLoss()
    logits = lambda fg: (2 * _two_class_map(fg) - 1) * 4  # noqa: E731
    assert module(logits(missing_branch), labels) > module(logits(thinner), labels) + 0.05


# ---------------------------------------------------------------------------------------------------
# ignore_label


def _ignore_case(ignore_label: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, labels = random_case((2, 3, 12, 11), seed=31)
    labels[0, 0, 2:6, 3:8] = ignore_label
    labels[1, 0, 9:, :] = ignore_label
    labels[1, 0, 0, 0] = ignore_label
    return logits, labels, labels == ignore_label


@pytest.mark.parametrize("ignore_label", [3, 255, 2])
@pytest.mark.parametrize("batch_dice", [False, True])
def test_ignore_label_logits_in_ignored_region_do_not_matter(ignore_label: int, batch_dice: bool) -> None:
    logits, labels, ignored = _ignore_case(ignore_label)
    loss_fn = SoftClDiceLoss(batch_dice=batch_dice, ignore_label=ignore_label)
    logits.requires_grad_(True)
    loss = loss_fn(logits, labels)
    assert torch.isfinite(loss) and 0 < loss.item() < 1
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad * ignored == 0).all()  # no gradient into ignored voxels
    assert (grad * ~ignored != 0).any()
    other = torch.where(ignored, 10 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(3)),
                        logits.detach())
    assert loss_fn(other, labels).item() == loss.item()


@pytest.mark.parametrize("ignore_label", [3, 255])
@pytest.mark.parametrize("batch_dice", [False, True])
def test_ignore_label_equals_reference_on_masked_inputs(ignore_label: int, batch_dice: bool) -> None:
    logits, labels, ignored = _ignore_case(ignore_label)
    valid = (~ignored).float()
    probs = torch.softmax(logits, 1)
    onehot = onehot_of(torch.where(ignored, 0, labels), 3)
    expected = reference_cldice_loss(probs * valid, onehot * valid, batch_dice=batch_dice)
    loss = SoftClDiceLoss(batch_dice=batch_dice, ignore_label=ignore_label)(logits, labels)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert soft_cldice(probs, onehot, batch_dice=batch_dice, valid=valid).item() == pytest.approx(
        expected.item(), abs=1e-5)
    # the ignored voxels really were left out
    assert abs(loss.item() - SoftClDiceLoss(batch_dice=batch_dice)(logits, torch.where(ignored, 0, labels)).item()
               ) > 1e-3


def test_ignore_label_equal_to_num_classes_is_accepted() -> None:
    logits, labels = random_case((1, 3, 6, 6), seed=1)
    labels[0, 0, 0, :] = 3  # == C: nnU-Net puts the ignore label after the last class
    assert torch.isfinite(SoftClDiceLoss(ignore_label=3)(logits, labels))
    with pytest.raises(ValueError, match="label 3"):
        SoftClDiceLoss()(logits, labels)
    labels[0, 0, 1, 1] = 4  # other out-of-range labels are still errors
    with pytest.raises(ValueError, match="label 4"):
        SoftClDiceLoss(ignore_label=3)(logits, labels)
    everything_ignored = torch.full_like(labels, 3)
    assert SoftClDiceLoss(ignore_label=3)(logits, everything_ignored).item() == 0.0


# ---------------------------------------------------------------------------------------------------
# bad inputs


def _ok_probs() -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = random_case((2, 3, 6, 6), seed=2)
    return torch.softmax(logits, 1), onehot_of(labels, 3)


def test_error_logits_passed_to_soft_cldice() -> None:
    probs, onehot = _ok_probs()
    logits = torch.log(probs)  # all <= 0
    for bad in (logits, probs * 2, probs - 0.5, 3 * torch.randn_like(probs)):
        with pytest.raises(ValueError, match=r"(?s)probabilities.*logits.*softmax"):
            soft_cldice(bad, onehot)


def test_error_onehot_values_out_of_range() -> None:
    probs, onehot = _ok_probs()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_cldice(probs, onehot * 2)


def test_error_shape_mismatch() -> None:
    probs, onehot = _ok_probs()
    for target in (onehot[:, :, :5], onehot[:1], onehot[..., None]):
        with pytest.raises(ValueError, match="shape"):
            soft_cldice(probs, target)


def test_error_onehot_channel_count() -> None:
    probs, onehot = _ok_probs()
    labels = onehot.argmax(1, keepdim=True).float()
    for target in (onehot[:, 1:], labels, torch.cat([onehot, onehot[:, :1]], 1)):  # no background / labels / C+1
        with pytest.raises(ValueError, match="channel count"):
            soft_cldice(probs, target)


def test_error_probs_bad_shape() -> None:
    probs, onehot = _ok_probs()
    with pytest.raises(ValueError, match="C >= 2"):
        soft_cldice(probs[:, :1], onehot[:, :1])
    with pytest.raises(ValueError, match="C >= 2"):
        soft_cldice(probs[:, :, 0], onehot[:, :, 0])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_error_bad_iterations(bad: object) -> None:
    probs, onehot = _ok_probs()
    with pytest.raises(ValueError, match="iterations"):
        soft_cldice(probs, onehot, iterations=bad)
    with pytest.raises(ValueError, match="iterations"):
        SoftClDiceLoss(iterations=bad)


@pytest.mark.parametrize("bad", [3, 7, -1])
def test_error_label_out_of_range(bad: int) -> None:
    logits, labels = random_case((2, 3, 5, 5), seed=4)
    labels[1, 0, 2, 2] = bad
    with pytest.raises(ValueError, match=rf"label {bad}.*C=3"):
        SoftClDiceLoss()(logits, labels)


@pytest.mark.parametrize("bad", [0.5, 1.25, float("nan")])
def test_error_non_integer_labels(bad: float) -> None:
    logits, labels = random_case((2, 3, 5, 5), seed=4)
    labels = labels.float()
    labels[0, 0, 1, 1] = bad
    with pytest.raises(ValueError, match="non-integer"):
        SoftClDiceLoss()(logits, labels)


def test_float_integer_labels_are_accepted() -> None:
    logits, labels = random_case((2, 3, 5, 5), seed=4)
    assert SoftClDiceLoss()(logits, labels.float()).item() == SoftClDiceLoss()(logits, labels).item()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])  # (-inf: a probability of 0, finite)
def test_non_finite_logits_give_a_non_finite_loss(bad: float) -> None:
    logits, labels = random_case((2, 3, 5, 5), seed=4)
    logits[1, 2, 0, 3] = bad
    assert not torch.isfinite(SoftClDiceLoss()(logits, labels))  # as nnU-Net's loss: no exception


def test_error_label_shape() -> None:
    logits, labels = random_case((2, 3, 5, 5), seed=4)
    for target in (labels[:, 0], labels[:, :, :4], onehot_of(labels, 3)):
        with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
            SoftClDiceLoss()(logits, target)


def test_repr() -> None:
    assert "iterations=4" in repr(SoftClDiceLoss(iterations=4, batch_dice=True))
