"""Small torch.distributed helpers for losses."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather


def all_gather_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks, differentiable; same shape as ``t``.

    Every rank must call this with a tensor of the same shape. Returns ``t`` unchanged when
    torch.distributed is not initialized.

    Backward follows ``torch.distributed.nn.functional.all_gather`` (and nnU-Net's own
    ``AllGatherGrad``): the gradient reaching the local ``t`` is the *sum* over ranks of the
    gradients each rank sends back. When every rank computes the same global loss from the summed
    result, the local gradient is therefore ``world_size`` times the gradient of that loss, and
    DDP's averaging of parameter gradients over ranks turns this into the exact gradient.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t
    return torch.stack(all_gather(t), dim=0).sum(dim=0)


def all_gather_sums(*sums: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``all_gather_sum`` of several same-shaped tensors with one collective (they are stacked).

    The results have the dtype of the stack (torch's type promotion of the inputs); unchanged
    (but promoted) when torch.distributed is not initialized.
    """
    dtype = sums[0].dtype
    for t in sums[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(all_gather_sum(torch.stack([t.to(dtype) for t in sums])).unbind(0))
