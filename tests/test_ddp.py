"""batch_dice with ddp=True: every loss gives, over 2 gloo ranks, what one process gives on the whole batch.

Each rank holds half the batch. The Dice-like sums are all-gathered (differentiably), so the batch Dice
is the global one on every rank; per-voxel and per-sample means (Combo's cross entropy, the hybrid
loss's focal and MS-SSIM terms) stay local, and DDP averages
the ranks. So: the mean of the rank losses equals the single-process loss, and a rank's local gradient
is world_size x the single-process gradient of its samples (DDP's averaging over ranks undoes the factor,
exactly as for nnU-Net's own Dice).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunet_ext.losses import (
    CbDiceLoss,
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
)


class OnRegions(torch.nn.Module):
    """A region loss fed from the label batch: regions (labels >= 1, labels == 2) and logits channels 1, 2."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits[:, 1:], torch.cat([labels >= 1, labels == 2], 1))


WORLD_SIZE = 2
LOSSES = {
    "skeleton_recall": lambda **kw: SoftSkeletonRecallLoss(**kw),
    "cldice": lambda **kw: SoftClDiceLoss(**kw),
    "combo": lambda **kw: ComboLoss(alpha=0.3, beta=0.7, **kw),
    "hybrid": lambda **kw: HybridLoss(**kw),
    "cbdice": lambda **kw: CbDiceLoss(**kw),
    "clce": lambda **kw: ClCELoss(**kw),
    "region_skeleton_recall": lambda **kw: OnRegions(RegionSkeletonRecallLoss(**kw)),
    "region_cldice": lambda **kw: OnRegions(RegionClDiceLoss(**kw)),
    "region_combo": lambda **kw: OnRegions(RegionComboLoss(alpha=0.3, beta=0.7, **kw)),
    "region_cbdice": lambda **kw: OnRegions(RegionCbDiceLoss(**kw)),
    "region_clce": lambda **kw: OnRegions(RegionClCELoss(**kw)),
    "hausdorff_dt": lambda **kw: HausdorffDTLoss(spacing=(1.0, 0.5), **kw),
    "region_hausdorff_dt": lambda **kw: OnRegions(RegionHausdorffDTLoss(**kw)),
}


def make_loss(name: str, ddp: bool) -> torch.nn.Module:
    return LOSSES[name](batch_dice=True, ddp=ddp)


def ddp_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (4, 3, 9, 8) float64 and labels (4, 1, 9, 8); rank 1's half has no class 2 at all."""
    gen = torch.Generator().manual_seed(41)
    logits = 3 * torch.randn(4, 3, 9, 8, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (4, 1, 9, 8), generator=gen)
    labels[1] = 0  # a sample with background only
    labels[2:][labels[2:] == 2] = 1
    return logits, labels


def _rank_slice(rank: int) -> slice:
    per_rank = 4 // WORLD_SIZE
    return slice(rank * per_rank, (rank + 1) * per_rank)


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One rank: every loss on this rank's half of the batch (one process group for all losses), counting
    the collectives each loss call issues."""
    from nnunet_ext.losses import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    gather, calls = distributed.all_gather, []
    distributed.all_gather = lambda t: calls.append(t.shape) or gather(t)
    try:
        logits, labels = ddp_batch()
        for name in LOSSES:
            calls.clear()
            local = logits[_rank_slice(rank)].clone().requires_grad_(True)
            loss = make_loss(name, ddp=True)(local, labels[_rank_slice(rank)])
            loss.backward()
            torch.save({"loss": loss.detach(), "grad": local.grad, "collectives": len(calls)},
                       f"{out_dir}/{name}_rank{rank}.pt")
    finally:
        distributed.all_gather = gather
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", LOSSES)
def test_ddp_flag_without_process_group_is_plain_batch_dice(name: str) -> None:
    logits, labels = ddp_batch()
    assert make_loss(name, ddp=True)(logits, labels).item() == make_loss(name, ddp=False)(logits, labels).item()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> Path:
    """The folder with every loss's per-rank loss and gradient from one 2-rank gloo run."""
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD_SIZE, join=True,
                       start_method="spawn")
    return out_dir


@pytest.mark.full
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
@pytest.mark.parametrize("name", LOSSES)
def test_ddp_batch_dice_matches_single_process(name: str, ddp_results: Path) -> None:

    logits, labels = ddp_batch()
    logits.requires_grad_(True)
    loss = make_loss(name, ddp=False)(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    # Per-rank batch_dice without DDP gives a different value: the test is not vacuous.
    local_only = make_loss(name, ddp=False)(logits[_rank_slice(0)], labels[_rank_slice(0)])
    assert abs(local_only.item() - loss.item()) > 1e-3

    results = [torch.load(ddp_results / f"{name}_rank{rank}.pt") for rank in range(WORLD_SIZE)]
    mean_loss = sum(r["loss"].item() for r in results) / WORLD_SIZE
    assert mean_loss == pytest.approx(loss.item(), abs=1e-10)
    for rank, res in enumerate(results):
        assert res["collectives"] == 1  # the sums of a loss term travel stacked, in one all-gather
        local_true = grad[_rank_slice(rank)]
        assert local_true.abs().max() > 1e-4
        torch.testing.assert_close(res["grad"], WORLD_SIZE * local_true, atol=1e-10, rtol=1e-7)
