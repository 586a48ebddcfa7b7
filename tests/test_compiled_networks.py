"""The compiled matrix of the network trainers (UNet 3+, U-Net v2 and their
variants, compiled): each one through nnUNetv2_train on nnU-Net's torch.compile path, its final
validation and nnUNetv2_predict; then nnUNetv2_find_best_configuration over them all.

The two families are two files so that pytest-xdist (`--dist loadfile`) runs them on different workers; the
runs of one file share that worker's inductor cache (the same network compiles once).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runs import check_compiled_run, check_model_selection, compiled_trainers
from tests.conftest import NnunetWorkspace

TRAINERS = compiled_trainers("networks")


@pytest.mark.full
@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainers_train_compiled_and_predict(nnunet_workspace: NnunetWorkspace, dataset_2d_small: Path,
                                             trainer: str):
    check_compiled_run(nnunet_workspace, dataset_2d_small, trainer)


@pytest.mark.full
def test_find_best_configuration_compares_every_trainer(nnunet_workspace: NnunetWorkspace, dataset_2d_small: Path):
    check_model_selection(nnunet_workspace, dataset_2d_small, TRAINERS)
