"""Input and argument checks shared by the losses, one place for each (the same message wherever it is raised).

Arguments (a loss's settings, checked once when it is built): ``check_iterations`` (the soft and binary skeletons'
erosion steps), ``check_non_negative``, ``check_positive`` and ``check_unit_interval`` (weights, exponents, scales,
spacings), each returning the checked value. Shapes of spatial maps: ``check_spatial_2d_3d``.

Inputs of the losses that take nnU-Net's (logits, labels) pair, two kinds, split by what they cost on an
accelerator:

* shape checks read tensor metadata only: free, run on every call;
* value checks (integer labels in range, binary region masks) must read the data, which is one
  device-to-host sync. The loss modules run them on their first call only (``ValueCheckOnce``);
  in nnU-Net training the data pipeline checks every batch on the CPU instead
  (``nnunet_ext.transforms.LabelCheckTransform``).

Non-finite logits are not an error: as with nnU-Net's own loss, they give a non-finite loss, which
the mixed-precision GradScaler skips (an fp16 overflow) and nnU-Net's logs show (a divergence).
"""

from __future__ import annotations

import math

import torch


def _fmt(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else repr(value)


# ---------------------------------------------------------------------------------------------- arguments


def check_iterations(iterations: int) -> int:
    """The number of erosion steps of a soft or binary skeleton: an integer >= 1 (not a bool)."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    return iterations


def _as_number(value: object) -> float:
    """``value`` as a float; NaN for what is not a number (a bool, a string, None)."""
    if isinstance(value, bool) or not hasattr(type(value), "__float__"):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _number_error(name: str, requirement: str, meaning: str, value: object) -> ValueError:
    return ValueError(f"{name} must be {requirement}{f' ({meaning})' if meaning else ''}, got {value!r}")


def check_non_negative(name: str, value: object, meaning: str = "") -> float:
    """``value`` as a float; ValueError ("<name> must be a finite number >= 0 (<meaning>), got ...") otherwise."""
    number = _as_number(value)
    if not (math.isfinite(number) and number >= 0):
        raise _number_error(name, "a finite number >= 0", meaning, value)
    return number


def check_positive(name: str, value: object, meaning: str = "") -> float:
    """``value`` as a float; ValueError ("<name> must be a finite number > 0 (<meaning>), got ...") otherwise."""
    number = _as_number(value)
    if not (math.isfinite(number) and number > 0):
        raise _number_error(name, "a finite number > 0", meaning, value)
    return number


def check_unit_interval(name: str, value: object, meaning: str = "") -> float:
    """``value`` as a float; ValueError ("<name> must be a finite number in [0, 1] (<meaning>), got ...") otherwise."""
    number = _as_number(value)
    if not 0.0 <= number <= 1.0:  # False for NaN
        raise _number_error(name, "a finite number in [0, 1]", meaning, value)
    return number


def check_spatial_2d_3d(x: torch.Tensor, expected: str) -> None:
    """``x`` is (B, C, X, Y) or (B, C, X, Y, Z); ValueError "<expected>, got shape ..." otherwise."""
    if x.ndim not in (4, 5):
        raise ValueError(f"{expected}, got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------- inputs


def check_logits_and_labels(net_output: torch.Tensor, labels: torch.Tensor, name: str = "target") -> None:
    """Shapes of logits (B, C, *spatial), C >= 2, and labels (B, 1, *spatial); no device sync.

    Raises ValueError with a message that names the problem and the fix.
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


def check_label_values(labels: torch.Tensor, num_classes: int, ignore_label: int | None = None,
                       name: str = "target") -> None:
    """Integer labels in [0, num_classes) (or the ignore label); one host sync.

    Raises ValueError naming the offending value and the fix.
    """
    values = labels if ignore_label is None else labels.masked_fill(labels == ignore_label, 0)
    stats = [*torch.aminmax(values)]
    if labels.is_floating_point():
        stats.append((labels != torch.round(labels)).any())  # NaN fails this test too
    lo, hi, *non_integer = torch.stack([s.double() for s in stats]).tolist()
    if non_integer and non_integer[0]:
        raise ValueError(
            f"{name} contains non-integer values; it must hold integer class labels (0 = background). "
            f"Make sure it is not interpolated (use nearest-neighbour resampling / downsampling)")
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} contains label {_fmt(bad)} but the network has C={num_classes} outputs: labels "
            f"must be >= 0 and < {num_classes} (other than ignore_label={ignore_label}). Check "
            f"that the labels in dataset.json and the plans match the data")


def check_logits_and_regions(net_output: torch.Tensor, regions: torch.Tensor, name: str = "target") -> None:
    """Shapes of region logits (B, R, *spatial) and region masks of the same shape; no device sync.

    Region-based nnU-Net (dataset.json ``regions``) has one sigmoid output per (possibly
    overlapping) region and no background channel.
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


def check_region_values(regions: torch.Tensor, name: str = "target") -> None:
    """Region masks hold only 0 and 1 (or are bool); one host sync. Raises ValueError otherwise."""
    if regions.dtype == torch.bool:
        return
    if ((regions != 0) & (regions != 1)).any().item():
        raise ValueError(
            f"{name} must hold binary region masks (0/1 or bool), found other values; region targets come "
            f"from ConvertSegmentationToRegionsTransform, not from integer label maps")


class ValueCheckOnce:
    """Mixin for loss modules: run a value check on the first call only.

    The first batch pays one host sync; later calls (every step, every deep-supervision scale)
    pay none. A failed check raises and is repeated on the next call. Skipped while torch.compile
    traces the module (a sync would break the graph).
    """

    _values_checked: bool = False

    def check_values_once(self, check, *args, **kwargs) -> None:
        """``check(*args, **kwargs)`` unless a previous call of this module passed it."""
        if self._values_checked or torch.compiler.is_compiling():
            return
        check(*args, **kwargs)
        self._values_checked = True
