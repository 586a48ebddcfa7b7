"""Tests of the UNet 3+ hybrid loss (focal + MS-SSIM + IoU) and its parts on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_ext.losses.hybrid import HybridLoss, focal_loss, ms_ssim_loss, soft_iou_loss
from nnunet_ext.losses.ms_ssim import MS_SSIM_WEIGHTS, gaussian_window, ms_ssim, ms_ssim_plan

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def perfect_logits(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Logits (B, C, *spatial): +60 for the label's class, -60 elsewhere."""
    onehot = F.one_hot(labels[:, 0].long(), num_classes).movedim(-1, 1)
    return (onehot.to(dtype) * 120 - 60)


def logits_from_probs(probs: list[list[float]], shape: tuple[int, ...]) -> torch.Tensor:
    """float64 logits (1, C, *shape) whose softmax is ``probs`` (one row of C probabilities per voxel)."""
    p = torch.tensor(probs, dtype=torch.float64)
    return p.log().T.reshape(1, p.shape[1], *shape)


def reference_ssim_and_cs(x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5,
                          data_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-scale SSIM and cs of 2D maps (B, K, H, W) with a full 2D Gaussian window via conv2d; (B, K) each."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    window = torch.outer(g, g)
    window = (window / window.sum()).to(x.dtype)[None, None]
    b, k, h, w = x.shape

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t.reshape(b * k, 1, h, w), window)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean((1, 2, 3)).reshape(b, k), cs_map.mean((1, 2, 3)).reshape(b, k)


def correlated_maps(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float64
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random map in [0, 1] and a noisy copy of it (positively correlated: cs > 0 at all scales)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(shape[0], shape[1], *(max(s // 4, 1) for s in shape[2:]), generator=gen, dtype=dtype)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape) - 2]
    x = F.interpolate(coarse, size=shape[2:], mode=mode, align_corners=False)
    y = (x + 0.1 * torch.randn(shape, generator=gen, dtype=dtype)).clamp(0, 1)
    return x, y


# ---------------------------------------------------------------------------------------------------
# Perfect predictions


@pytest.mark.parametrize("spatial", [(24, 24), (6, 12, 12)])
def test_perfect_prediction_gives_zero_for_every_term(spatial: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (2, 1, *spatial), generator=gen)
    logits = perfect_logits(labels, 3)
    assert focal_loss(logits, labels).item() == pytest.approx(0, abs=1e-6)
    assert focal_loss(logits, labels, gamma=0).item() == pytest.approx(0, abs=1e-6)
    assert soft_iou_loss(logits, labels).item() == pytest.approx(0, abs=1e-6)
    assert ms_ssim_loss(logits, labels).item() == pytest.approx(0, abs=1e-5)
    assert HybridLoss()(logits, labels).item() == pytest.approx(0, abs=1e-5)


def test_a_wrong_prediction_gives_a_positive_loss_in_every_term() -> None:
    labels = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    labels[..., 4:12, 4:12] = 1
    logits = perfect_logits(1 - labels, 2)  # everything swapped
    assert focal_loss(logits, labels).item() > 10
    assert soft_iou_loss(logits, labels).item() == pytest.approx(1, abs=1e-6)
    assert ms_ssim_loss(logits, labels).item() == pytest.approx(1, abs=1e-6)  # anti-correlated: clamped to 0


# ---------------------------------------------------------------------------------------------------
# Focal loss


@pytest.mark.parametrize("ignore_label", [None, 3, 7])
def test_focal_with_gamma_zero_is_cross_entropy(ignore_label: int | None) -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 3, (2, 1, 5, 6), generator=gen)
    if ignore_label is not None:
        labels[0, 0, :2] = ignore_label
    expected = F.cross_entropy(logits, labels[:, 0], ignore_index=-100 if ignore_label is None else ignore_label)
    actual = focal_loss(logits, labels, gamma=0, ignore_label=ignore_label)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-12)
    hybrid = HybridLoss(ms_ssim_weight=0, iou_weight=0, gamma=0, ignore_label=ignore_label)(logits, labels)
    assert hybrid.item() == pytest.approx(expected.item(), rel=1e-12)


def test_focal_down_weights_well_classified_voxels() -> None:
    # Two voxels, two classes: the true class has p = 0.9 (easy) and p = 0.3 (hard).
    logits = logits_from_probs([[0.1, 0.9], [0.7, 0.3]], (2,))
    labels = torch.tensor([1, 1]).reshape(1, 1, 2)
    easy, hard = -math.log(0.9), -math.log(0.3)
    for gamma in (0.5, 1.0, 2.0, 3.0):
        expected = (0.1**gamma * easy + 0.7**gamma * hard) / 2
        assert focal_loss(logits, labels, gamma=gamma).item() == pytest.approx(expected, rel=1e-12)
    # The easy voxel's share drops from 8% of the cross entropy to under 0.2% with gamma = 2.
    assert easy / (easy + hard) > 0.08
    assert 0.01 * easy / (0.01 * easy + 0.49 * hard) < 0.002


def test_focal_mean_runs_over_valid_voxels_only() -> None:
    logits = logits_from_probs([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]], (3,))
    labels = torch.tensor([1, 1, 4]).reshape(1, 1, 3)
    expected = (0.1**2 * -math.log(0.9) + 0.7**2 * -math.log(0.3)) / 2
    assert focal_loss(logits, labels, ignore_label=4).item() == pytest.approx(expected, rel=1e-12)
    all_ignored = torch.full_like(labels, 4)
    assert focal_loss(logits, all_ignored, ignore_label=4).item() == 0


# ---------------------------------------------------------------------------------------------------
# Soft IoU


def test_soft_iou_on_a_hand_made_case() -> None:
    # p(foreground) = 0.5 on 4 voxels, foreground on 2: I = 1, sum p = 2, |t| = 2, union = 2 + 2 - 1 = 3.
    logits = logits_from_probs([[0.5, 0.5]] * 4, (2, 2))
    labels = torch.tensor([1, 1, 0, 0]).reshape(1, 1, 2, 2)
    s = 1e-5
    assert soft_iou_loss(logits, labels).item() == pytest.approx(1 - (1 + s) / (3 + s), rel=1e-12)
    assert soft_iou_loss(logits, labels, smooth=0).item() == pytest.approx(2 / 3, rel=1e-12)


def test_soft_iou_excludes_background_and_averages_classes() -> None:
    # Class 1: p = (0.6, 0.2), t = (1, 0) -> I = 0.6, U = 0.8 + 1 - 0.6 = 1.2.
    # Class 2: p = (0.1, 0.5), t = (0, 1) -> I = 0.5, U = 0.6 + 1 - 0.5 = 1.1.
    logits = logits_from_probs([[0.3, 0.6, 0.1], [0.3, 0.2, 0.5]], (2,))
    labels = torch.tensor([1, 2]).reshape(1, 1, 2)
    expected = 1 - (0.6 / 1.2 + 0.5 / 1.1) / 2
    assert soft_iou_loss(logits, labels, smooth=0).item() == pytest.approx(expected, rel=1e-12)


def test_batch_dice_pools_the_iou_over_the_batch() -> None:
    # Hard predictions. Sample 0: t = (1, 0), p = (1, 0) -> IoU 1. Sample 1: t = (1, 1), p = (1, 0) -> IoU 1/2.
    labels = torch.tensor([[1, 0], [1, 1]]).reshape(2, 1, 1, 2)
    prediction = torch.tensor([[1, 0], [1, 0]]).reshape(2, 1, 1, 2)
    logits = perfect_logits(prediction, 2, torch.float64)
    per_sample = soft_iou_loss(logits, labels, smooth=0).item()
    batch = soft_iou_loss(logits, labels, batch_dice=True, smooth=0).item()
    assert per_sample == pytest.approx(1 - (1 + 0.5) / 2, abs=1e-12)
    assert batch == pytest.approx(1 - 2 / 3, abs=1e-12)  # I = 2, sum p = 2, |t| = 3
    hybrid = HybridLoss(focal_weight=0, ms_ssim_weight=0, batch_dice=True, smooth=0)(logits, labels)
    assert hybrid.item() == pytest.approx(batch, abs=1e-12)


# ---------------------------------------------------------------------------------------------------
# Ignore label


def test_logits_in_ignored_voxels_change_neither_focal_nor_iou() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 8, 8), generator=gen)
    ignored = torch.zeros_like(labels, dtype=torch.bool)
    ignored[:, :, 2:5, 3:7] = True
    labels[ignored] = 5
    changed = logits + torch.where(ignored, torch.randn(logits.shape, generator=gen, dtype=torch.float64) * 10, 0)
    assert not torch.equal(changed, logits)
    for fn in (focal_loss, soft_iou_loss, ms_ssim_loss):
        assert fn(changed, labels, ignore_label=5).item() == pytest.approx(fn(logits, labels, ignore_label=5).item(),
                                                                           rel=1e-12)
    loss = HybridLoss(ignore_label=5)
    assert loss(changed, labels).item() == pytest.approx(loss(logits, labels).item(), rel=1e-12)
    # Without the ignore label (label 5 would be out of range) the same logits must matter.
    labels[ignored] = 0
    assert focal_loss(changed, labels).item() != pytest.approx(focal_loss(logits, labels).item(), rel=1e-6)


def test_ignored_voxels_are_zero_in_both_ms_ssim_maps() -> None:
    labels = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    labels[..., 2:10, 2:10] = 1
    logits = perfect_logits(labels, 2)
    labels_ignored = labels.clone()
    labels_ignored[..., 6:14, 6:14] = 9  # partly over the object, partly over background
    logits_wrong_there = logits.clone()
    logits_wrong_there[..., 6:14, 6:14] = logits_wrong_there[..., 6:14, 6:14].flip(1)
    assert ms_ssim_loss(logits_wrong_there, labels_ignored, ignore_label=9).item() == pytest.approx(0, abs=1e-6)
    assert ms_ssim_loss(logits_wrong_there, labels).item() > 0.1


# ---------------------------------------------------------------------------------------------------
# (MS-)SSIM


def test_ssim_of_a_map_with_itself_is_one_and_with_its_complement_less() -> None:
    x, _ = correlated_maps((2, 2, 40, 40))
    assert torch.allclose(ms_ssim(x, x), torch.ones(2, 2, dtype=torch.float64), atol=1e-12)
    complement = ms_ssim(x, 1 - x)
    assert (complement < 0.99).all() and (complement >= 0).all()
    # A single 5-scale run (176 = 11 * 16 is the smallest size that fits 5 scales).
    big, _ = correlated_maps((1, 1, 176, 176), seed=1, dtype=torch.float32)
    assert ms_ssim_plan(big.shape[2:]).num_scales == 5
    assert ms_ssim(big, big).item() == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("shape", [(1, 2, 16, 16), (2, 1, 20, 13)])
def test_single_scale_agrees_with_a_full_2d_window_reference(shape: tuple[int, ...]) -> None:
    x, y = correlated_maps(shape, seed=4)
    assert ms_ssim_plan(shape[2:]).num_scales == 1
    expected, _ = reference_ssim_and_cs(x, y)
    assert torch.allclose(ms_ssim(x, y), expected.clamp(min=0), atol=1e-12)
    # weights=(1,) forces a single scale on any size.
    x, y = correlated_maps((1, 2, 40, 40), seed=5)
    expected, _ = reference_ssim_and_cs(x, y)
    assert torch.allclose(ms_ssim(x, y, weights=(1.0,)), expected, atol=1e-12)


def test_two_scales_combine_cs_and_coarse_ssim_with_renormalised_weights() -> None:
    x, y = correlated_maps((2, 1, 32, 32), seed=6)
    plan = ms_ssim_plan((32, 32))
    assert plan.num_scales == 2 and plan.pooled_axes == ((0, 1),)
    w0, w1 = MS_SSIM_WEIGHTS[0], MS_SSIM_WEIGHTS[1]
    assert plan.weights == pytest.approx((w0 / (w0 + w1), w1 / (w0 + w1)))
    _, cs0 = reference_ssim_and_cs(x, y)
    ssim1, _ = reference_ssim_and_cs(F.avg_pool2d(x, 2), F.avg_pool2d(y, 2))
    assert (cs0 > 0).all() and (ssim1 > 0).all()
    expected = cs0 ** plan.weights[0] * ssim1 ** plan.weights[1]
    assert torch.allclose(ms_ssim(x, y), expected, atol=1e-12)


def test_scale_count_and_windows_adapt_to_the_shape() -> None:
    assert ms_ssim_plan((256, 256)).num_scales == 5
    assert ms_ssim_plan((256, 256)).weights == pytest.approx([w / sum(MS_SSIM_WEIGHTS) for w in MS_SSIM_WEIGHTS])
    assert ms_ssim_plan((175, 175)).num_scales == 4
    cube = ms_ssim_plan((16, 16, 16))
    assert cube.num_scales == 1 and cube.window_sizes == (11, 11, 11) and cube.weights == (1.0,)
    assert ms_ssim_plan((32, 32, 32)).num_scales == 2
    thin = ms_ssim_plan((4, 32, 32))
    assert thin.window_sizes == (3, 11, 11)
    assert thin.num_scales == 2 and thin.pooled_axes == ((1, 2),)  # the 4-voxel axis is never pooled
    assert thin.shapes == ((4, 32, 32), (4, 16, 16))
    anisotropic = ms_ssim_plan((32, 256, 256))
    assert anisotropic.num_scales == 5
    assert anisotropic.pooled_axes == ((0, 1, 2), (1, 2), (1, 2), (1, 2))
    assert anisotropic.shapes[-1] == (16, 16, 16)
    assert ms_ssim_plan((2, 4, 4)).window_sizes == (1, 3, 3)
    assert ms_ssim_plan((1, 10, 5, 3)).window_sizes == (1, 9, 5, 3)
    # Every axis at the coarsest scale is at least as large as its window.
    for shape in [(256, 256), (16, 16, 16), (4, 32, 32), (32, 256, 256), (7, 100, 45), (2, 4, 4)]:
        plan = ms_ssim_plan(shape)
        assert all(s >= w for s, w in zip(plan.shapes[-1], plan.window_sizes))
        assert len(plan.shapes) == plan.num_scales and sum(plan.weights) == pytest.approx(1)


def test_gaussian_window() -> None:
    g = gaussian_window(11, 1.5, torch.float64)
    assert g.sum().item() == pytest.approx(1)
    assert torch.equal(g, g.flip(0)) and g.argmax().item() == 5
    assert g[6].item() / g[5].item() == pytest.approx(math.exp(-1 / (2 * 1.5**2)))
    assert torch.equal(gaussian_window(1), torch.ones(1))


@pytest.mark.parametrize("spatial", [(16, 16, 16), (4, 32, 32), (2, 4, 4), (1, 12, 12)])
def test_ms_ssim_in_3d_lies_in_the_unit_interval(spatial: tuple[int, ...]) -> None:
    x, y = correlated_maps((1, 2, *spatial), seed=7, dtype=torch.float32)
    value = ms_ssim(x, y)
    assert value.shape == (1, 2)
    assert ((value >= 0) & (value <= 1)).all()
    assert torch.allclose(ms_ssim(x, x), torch.ones(1, 2), atol=1e-5)
    assert (value < 1 - 1e-3).all()
    labels = torch.randint(0, 3, (1, 1, *spatial), generator=torch.Generator().manual_seed(8))
    loss = ms_ssim_loss(torch.randn(1, 3, *spatial), labels)
    assert 0 <= loss.item() <= 1


def test_ms_ssim_ignores_autocast() -> None:
    x, y = correlated_maps((1, 2, 24, 24), seed=9, dtype=torch.float32)
    expected = ms_ssim(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = ms_ssim(x, y)
    assert actual.dtype == torch.float32
    assert torch.allclose(actual, expected, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------------
# Gradients, dtypes, the combination


@pytest.mark.parametrize("spatial,kind", [((12, 12), "random"), ((12, 12), "background"), ((2, 4, 4), "random"),
                                          ((2, 4, 4), "background"), ((4, 16, 16), "random"), ((10, 10), "perfect"),
                                          ((10, 10), "swapped")])
def test_gradients_are_finite(spatial: tuple[int, ...], kind: str) -> None:
    gen = torch.Generator().manual_seed(10)
    labels = torch.randint(0, 3, (2, 1, *spatial), generator=gen)
    if kind == "background":
        labels.zero_()
    if kind == "perfect":
        logits = perfect_logits(labels, 3)
    elif kind == "swapped":
        logits = perfect_logits((labels + 1) % 3, 3)
    else:
        logits = torch.randn(2, 3, *spatial, generator=gen) * 3
    logits.requires_grad_(True)
    for gamma in (2.0, 0.5):
        logits.grad = None
        loss = HybridLoss(gamma=gamma)(logits, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
        if kind in ("random", "background"):
            assert logits.grad.abs().sum() > 0


def test_hybrid_is_the_weighted_sum_of_its_terms() -> None:
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 3, 20, 20, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 20, 20), generator=gen)
    labels[1, 0, :3] = 6
    loss = HybridLoss(focal_weight=0.5, ms_ssim_weight=2, iou_weight=1.5, gamma=1.5, batch_dice=True,
                      ignore_label=6)(logits, labels)
    expected = (0.5 * focal_loss(logits, labels, gamma=1.5, ignore_label=6)
                + 2 * ms_ssim_loss(logits, labels, ignore_label=6)
                + 1.5 * soft_iou_loss(logits, labels, batch_dice=True, ignore_label=6))
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    only_ms_ssim = HybridLoss(focal_weight=0, iou_weight=0)(logits.float(), labels.clamp(max=2))
    assert only_ms_ssim.dtype == torch.float32
    assert only_ms_ssim.item() == pytest.approx(ms_ssim_loss(logits, labels.clamp(max=2)).item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("kwargs,match", [
    ({"focal_weight": -1}, "focal_weight must be a finite number >= 0"),
    ({"ms_ssim_weight": -0.1}, "ms_ssim_weight must be a finite number >= 0"),
    ({"iou_weight": float("nan")}, "iou_weight must be a finite number >= 0"),
    ({"iou_weight": float("inf")}, "iou_weight must be a finite number >= 0"),
    ({"focal_weight": True}, "focal_weight must be a finite number >= 0"),
    ({"gamma": -0.5}, "gamma must be a finite number >= 0"),
    ({"focal_weight": 0, "ms_ssim_weight": 0, "iou_weight": 0}, "all 0"),
])
def test_bad_arguments_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HybridLoss(**kwargs)


def test_focal_rejects_negative_gamma() -> None:
    with pytest.raises(ValueError, match="gamma must be"):
        focal_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4), gamma=-1)


@pytest.mark.parametrize("logits_shape,labels_shape,match", [
    ((1, 3, 8, 8), (1, 8, 8), r"target must be shaped \(B, 1, \*spatial\)"),
    ((1, 3, 8, 8), (1, 1, 8, 7), r"target must be shaped \(B, 1, \*spatial\)"),
    ((1, 1, 8, 8), (1, 1, 8, 8), "C >= 2"),
])
def test_bad_shapes_are_rejected(logits_shape: tuple, labels_shape: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HybridLoss()(torch.zeros(logits_shape), torch.zeros(labels_shape, dtype=torch.long))


@pytest.mark.parametrize("bad_label", [3, -1])
def test_labels_out_of_range_are_rejected(bad_label: int) -> None:
    labels = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    labels[0, 0, 0, 0] = bad_label
    for fn in (HybridLoss(), focal_loss, soft_iou_loss, ms_ssim_loss):
        with pytest.raises(ValueError, match=f"contains label {bad_label} but the network has C=3"):
            fn(torch.zeros(1, 3, 8, 8), labels)
    # The ignore label itself may lie outside 0..C-1.
    labels[0, 0, 0, 0] = 7
    HybridLoss(ignore_label=7)(torch.zeros(1, 3, 8, 8), labels)


def test_ms_ssim_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match="1 to 3 spatial axes"):
        ms_ssim(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="floating point"):
        ms_ssim(torch.zeros(1, 1, 8, 8, dtype=torch.long), torch.zeros(1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="window_size must be a positive odd integer"):
        ms_ssim_plan((32, 32), window_size=10)
    with pytest.raises(ValueError, match="positive size"):
        ms_ssim_plan((0, 32))
    with pytest.raises(ValueError, match="weights must be"):
        ms_ssim_plan((32, 32), weights=(-1.0, 2.0))
