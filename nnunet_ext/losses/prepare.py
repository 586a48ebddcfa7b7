"""What every loss does first: float logits and safe class indices, without device syncs."""

from __future__ import annotations

import torch


def as_float_logits(net_output: torch.Tensor) -> torch.Tensor:
    """float32 (or float64) logits: fp16/bf16 outputs of mixed precision are upcast for the loss."""
    return net_output if net_output.dtype in (torch.float32, torch.float64) else net_output.float()


def class_index(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 class index of integer labels, same shape: values outside [0, num_classes) become 0 (background).

    The label values are checked once (``input_checks``) and, in nnU-Net training, on every batch by the
    data pipeline; this keeps any other value (an ignore label >= C, corrupt data) from indexing out of
    range deep in torch, where a GPU reports only a device-side assert.
    """
    index = labels.long().clamp(0, num_classes)
    return index.masked_fill_(index == num_classes, 0)
