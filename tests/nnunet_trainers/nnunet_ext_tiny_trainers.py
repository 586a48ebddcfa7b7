"""Short variants of every nnunet_ext trainer for the integration tests (a few iterations on the CPU).

NNUNET_EXT_TEST_EPOCHS sets the number of epochs (default 1) so that a test can train one
epoch and then continue with ``--c`` for a second. nnU-Net finds these classes by name in
this folder (the tests add it to nnUNet_extTrainer).
"""

import os

import torch

from nnunet_ext.trainers import nnUNetTrainerClDice, nnUNetTrainerCombo, nnUNetTrainerSkeletonRecall


class TinyRun:
    """Mixin: 1 epoch (or NNUNET_EXT_TEST_EPOCHS) of 3 training and 2 validation iterations."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("NNUNET_EXT_TEST_EPOCHS", "1"))
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 2


class nnUNetTrainerSkeletonRecallTiny(TinyRun, nnUNetTrainerSkeletonRecall):
    pass


class nnUNetTrainerClDiceTiny(TinyRun, nnUNetTrainerClDice):
    pass


class nnUNetTrainerComboTiny(TinyRun, nnUNetTrainerCombo):
    pass
