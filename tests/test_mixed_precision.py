"""Every trainer's network and loss under mixed precision, as nnU-Net trains on CUDA, emulated on the CPU.

On CUDA nnU-Net's ``train_step`` runs network and loss under ``torch.autocast`` (fp16) and steps through a
``GradScaler``: an overflow gives inf logits, a non-finite loss, and the scaler skips that step and lowers
its scale. Here nnU-Net's own ``train_step`` runs with ``torch.autocast("cpu", ...)`` in place of its CPU
no-op context and with ``torch.amp.GradScaler("cpu")``.
"""

from __future__ import annotations

from pathlib import Path

import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer_module
import pytest
import torch

from tests.conftest import NnunetWorkspace, make_trainer
from tests.trainer_matrix import trainer_classes

TRAINERS = trainer_classes()
# loss tolerance relative to fp32 (bf16 keeps 8 bits of mantissa, fp16 11)
TOLERANCE = {torch.float16: 0.01, torch.bfloat16: 0.05}


def _initialized(trainer_env: NnunetWorkspace, dataset: Path, trainer_class: type):
    """The trainer (narrow UNet 3+ / U-Net v2 maps keep the CPU test fast), initialized, and one training batch."""
    narrow = type(trainer_class.__name__, (trainer_class,), {"unet3plus_cat_channels": 8, "unetv2_sdi_channels": 8})
    trainer = make_trainer(trainer_env, dataset, narrow)
    trainer.initialize()
    loader, _ = trainer.get_dataloaders()
    return trainer, next(loader)


def _loss_and_gradients(trainer, batch: dict, dtype: torch.dtype | None) -> tuple[float, list[torch.Tensor]]:
    trainer.network.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same dropout masks (the CGM's) in every run
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = trainer.loss(trainer.network(batch["data"]), batch["target"])
    loss.backward()
    return loss.item(), [p.grad.clone() for p in trainer.network.parameters() if p.grad is not None]


@pytest.mark.parametrize("trainer_class", TRAINERS, ids=lambda c: c.__name__)
def test_network_and_loss_under_autocast(trainer_env: NnunetWorkspace, dataset_2d_small: Path, trainer_class: type,
                                         monkeypatch) -> None:
    trainer, batch = _initialized(trainer_env, dataset_2d_small, trainer_class)

    reference, _ = _loss_and_gradients(trainer, batch, None)
    for dtype, tolerance in TOLERANCE.items():
        value, grads = _loss_and_gradients(trainer, batch, dtype)
        assert abs(value - reference) <= tolerance * max(1.0, abs(reference)), (dtype, value, reference)
        assert grads and all(torch.isfinite(g).all() for g in grads)

    # nnU-Net's train_step under fp16 autocast with a GradScaler, as on CUDA
    monkeypatch.setattr(nnunet_trainer_module, "dummy_context", lambda: torch.autocast("cpu", dtype=torch.float16))
    trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    params = list(trainer.network.parameters())

    def step() -> tuple[float, bool]:
        before = [p.detach().clone() for p in params]
        loss = float(trainer.train_step(batch)["loss"])
        return loss, any(not torch.equal(b, p) for b, p in zip(before, params))

    loss, changed = step()
    assert torch.isfinite(torch.tensor(loss)) and changed

    def overflow(_module, _inputs, output):  # an fp16 overflow in the logits of the full-resolution output
        first = output[0] if isinstance(output, (list, tuple)) else output
        spike = torch.zeros_like(first)
        spike[0, 1, 0, 0] = float("inf")
        return [first + spike, *output[1:]] if isinstance(output, (list, tuple)) else first + spike

    hook = trainer.network.register_forward_hook(overflow)
    scale = trainer.grad_scaler.get_scale()
    loss, changed = step()  # no exception: the loss is non-finite and the scaler skips the step
    assert not torch.isfinite(torch.tensor(loss)) and not changed
    assert trainer.grad_scaler.get_scale() < scale
    hook.remove()

    loss, changed = step()  # and training goes on
    assert torch.isfinite(torch.tensor(loss)) and changed
