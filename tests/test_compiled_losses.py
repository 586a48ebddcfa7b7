"""The compiled matrix of the loss trainers (nnU-Net's own network, compiled, with our
losses and targets): each one through nnU-Net's run_training (nnUNetv2_train's code, in the test process) on
nnU-Net's torch.compile path and its final validation, the first of each network through nnUNetv2_predict; then
nnUNetv2_find_best_configuration over them all (once, here: it reads the validation folders, never the network).

The two families are two files so that pytest-xdist (`--dist loadfile`) runs them on different workers; the
runs of one file share that worker's inductor cache (the same network compiles once).
"""

from __future__ import annotations

from tests.cli_runs import compiled_matrix_test, model_selection_test

test_trainers_train_compiled_and_predict = compiled_matrix_test("losses")
test_find_best_configuration_compares_every_trainer = model_selection_test("losses")
