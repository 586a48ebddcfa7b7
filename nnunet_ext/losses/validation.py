"""Input checks shared by the losses that take nnU-Net's (logits, integer labels) pair."""

from __future__ import annotations

import math

import torch


def _fmt(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else repr(value)


def check_logits_and_labels(net_output: torch.Tensor, labels: torch.Tensor, ignore_label: int | None = None,
                            name: str = "target") -> torch.Tensor | None:
    """Validate logits (B, C, *spatial) and integer labels (B, 1, *spatial), with one host sync.

    Returns the valid-voxel mask (labels != ignore_label), (B, 1, *spatial), or None without an
    ignore label. Raises ValueError (shapes, non-integer or out-of-range labels) or
    FloatingPointError (NaN/Inf logits) with a message that names the problem and the fix.
    """
    if net_output.ndim < 3 or net_output.shape[1] < 2:
        raise ValueError(
            f"net_output must be logits shaped (B, C, *spatial) with at least 3 dims and C >= 2 "
            f"(channel 0 = background), got shape {tuple(net_output.shape)}; pass the raw network "
            f"output of one deep-supervision scale")
    expected = (net_output.shape[0], 1, *net_output.shape[2:])
    if tuple(labels.shape) != expected:
        raise ValueError(
            f"{name} must be shaped (B, 1, *spatial) = {expected} to match net_output "
            f"{tuple(net_output.shape)}, got {tuple(labels.shape)}; pass one channel of integer labels "
            f"at the same deep-supervision scale as net_output")

    valid = None if ignore_label is None else labels != ignore_label
    values = labels if valid is None else torch.where(valid, labels, torch.zeros_like(labels))
    lo, hi = torch.aminmax(values)
    stats = [lo.double(), hi.double(), torch.isfinite(net_output).all().double()]
    if labels.is_floating_point():
        # NaN also fails this test.
        stats.append((labels != torch.round(labels)).any().double())
    # One host sync for all checks.
    lo_v, hi_v, finite, *non_integer = torch.stack(stats).tolist()

    if non_integer and non_integer[0]:
        raise ValueError(
            f"{name} contains non-integer values; it must hold integer class labels (0 = background). "
            f"Make sure it is not interpolated (use nearest-neighbour resampling / downsampling)")
    num_classes = net_output.shape[1]
    if lo_v < 0 or hi_v >= num_classes:
        bad = lo_v if lo_v < 0 else hi_v
        raise ValueError(
            f"{name} contains label {_fmt(bad)} but the network has C={num_classes} outputs: labels "
            f"must be >= 0 and < {num_classes} (other than ignore_label={ignore_label}). Check "
            f"that the labels in dataset.json and the plans match the data")
    if not finite:
        raise FloatingPointError(
            "the network output (net_output) contains NaN/Inf values: training diverged; lower the "
            "learning rate and check the input normalisation")
    return valid



def check_logits_and_regions(net_output: torch.Tensor, regions: torch.Tensor, name: str = "target") -> None:
    """Validate region logits (B, R, *spatial) and binary region masks (B, R, *spatial), one host sync.

    Region-based nnU-Net (dataset.json ``regions``) has one sigmoid output per (possibly
    overlapping) region and no background channel. Raises ValueError (shapes, values other than
    0/1) or FloatingPointError (NaN/Inf logits) with a message that names the problem and the fix.
    """
    if net_output.ndim < 3 or net_output.shape[1] < 1:
        raise ValueError(
            f"net_output must be region logits shaped (B, R, *spatial) with at least 3 dims, got shape "
            f"{tuple(net_output.shape)}; pass the raw network output of one deep-supervision scale")
    if tuple(regions.shape) != tuple(net_output.shape):
        raise ValueError(
            f"{name} must hold one binary mask per region output, shaped {tuple(net_output.shape)} like "
            f"net_output, got {tuple(regions.shape)}; pass the region channels of nnU-Net's target (after "
            f"ConvertSegmentationToRegionsTransform) at the same deep-supervision scale as net_output")
    stats = [torch.isfinite(net_output).all().double()]
    if regions.dtype != torch.bool:
        stats.append(((regions != 0) & (regions != 1)).any().double())
    finite, *not_binary = torch.stack(stats).tolist()
    if not_binary and not_binary[0]:
        raise ValueError(
            f"{name} must hold binary region masks (0/1 or bool), found other values; region targets come "
            f"from ConvertSegmentationToRegionsTransform, not from integer label maps")
    if not finite:
        raise FloatingPointError(
            "the network output (net_output) contains NaN/Inf values: training diverged; lower the "
            "learning rate and check the input normalisation")
