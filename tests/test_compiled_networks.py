"""The compiled matrix of the network trainers (UNet 3+, U-Net v2 and their
variants, compiled): each one through nnU-Net's run_training (nnUNetv2_train's code, in the test process) on
nnU-Net's torch.compile path and its final validation, the first of each network through nnUNetv2_predict.
(nnUNetv2_find_best_configuration reads only the validation folders and the plans, never the network: the loss
matrix in tests/test_compiled_losses.py runs it.)

The two families are two files so that pytest-xdist (`--dist loadfile`) runs them on different workers; the
runs of one file share that worker's inductor cache (the same network compiles once).
"""

from __future__ import annotations

from tests.cli_runs import compiled_matrix_test

test_trainers_train_compiled_and_predict = compiled_matrix_test("networks")
