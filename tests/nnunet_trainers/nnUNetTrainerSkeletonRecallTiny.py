"""Short Skeleton Recall variant for the integration tests (a few iterations on the CPU).

NNUNET_EXT_TEST_EPOCHS sets the number of epochs (default 1) so that a test can
train one epoch and then continue with ``--c`` for a second.
"""

import os

import torch

from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall


class nnUNetTrainerSkeletonRecallTiny(nnUNetTrainerSkeletonRecall):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("NNUNET_EXT_TEST_EPOCHS", "1"))
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 2
