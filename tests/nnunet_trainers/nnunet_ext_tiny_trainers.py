"""Short variants of every nnunet_ext trainer for the integration tests (a few iterations on the CPU).

NNUNET_EXT_TEST_EPOCHS sets the number of epochs (default 1) so that a test can train one
epoch and then continue with ``--c`` for a second. NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION=1 skips
nnU-Net's final validation (its export pool spawns a process that re-imports torch and nnU-Net:
~15 s per run on 2 cores); the tests that check the final validation leave it unset. nnU-Net
finds these classes by name in this folder (the tests add it to nnUNet_extTrainer).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.commands.short_runs import ShortRun
from nnunet_ext.trainers import (
    nnUNetTrainerCbDice,
    nnUNetTrainerClCE,
    nnUNetTrainerClDice,
    nnUNetTrainerCombo,
    nnUNetTrainerHausdorffDT,
    nnUNetTrainerSkeletonRecall,
    nnUNetTrainerUNet3Plus,
    nnUNetTrainerUNet3PlusCGM,
    nnUNetTrainerUNet3PlusSkeletonRecall,
    nnUNetTrainerUNetV2,
    nnUNetTrainerUNetV2SkeletonRecall,
    nnUNetTrainerUNetWeightedCE,
)


class TinyRun(ShortRun):
    """Mixin: 1 epoch (or NNUNET_EXT_TEST_EPOCHS) of 3 training and 2 validation iterations; torch's threads as
    OMP_NUM_THREADS says, where it is set."""

    short_iterations = 3
    short_val_iterations = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # noqa: B008 - nnU-Net reads the signature
        super().__init__(plans, configuration, fold, dataset_json, device)
        # `nnUNetv2_train -device cpu` gives torch every core; under pytest-xdist each worker's share is
        # OMP_NUM_THREADS (tests/conftest.py): more threads than cores spin-wait on each other's tiny ops
        if os.environ.get("OMP_NUM_THREADS", "").isdigit():
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    @property
    def short_epochs(self) -> int:
        return int(os.environ.get("NNUNET_EXT_TEST_EPOCHS", "1"))

    @property
    def skip_final_validation(self) -> str | None:
        if os.environ.get("NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION") == "1":
            return "NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION=1"
        return None


class nnUNetTrainerSkeletonRecallTiny(TinyRun, nnUNetTrainerSkeletonRecall):
    pass


class nnUNetTrainerClDiceTiny(TinyRun, nnUNetTrainerClDice):
    pass


class nnUNetTrainerComboTiny(TinyRun, nnUNetTrainerCombo):
    pass


class nnUNetTrainerCbDiceTiny(TinyRun, nnUNetTrainerCbDice):
    pass


class nnUNetTrainerClCETiny(TinyRun, nnUNetTrainerClCE):
    pass


class nnUNetTrainerHausdorffDTTiny(TinyRun, nnUNetTrainerHausdorffDT):
    pass  # one epoch: the weight ramp ends in epoch 0 (10% of one epoch rounds up to one)


class nnUNetTrainerUNetWeightedCETiny(TinyRun, nnUNetTrainerUNetWeightedCE):
    pass


# The network trainers with narrower full-scale / SDI channels (set the way a user would, by a
# class attribute in their own trainer folder): the CPU tests stay fast.
class nnUNetTrainerUNet3PlusTiny(TinyRun, nnUNetTrainerUNet3Plus):
    unet3plus_cat_channels = 8


class nnUNetTrainerUNet3PlusCGMTiny(TinyRun, nnUNetTrainerUNet3PlusCGM):
    unet3plus_cat_channels = 8


class nnUNetTrainerUNet3PlusSkeletonRecallTiny(TinyRun, nnUNetTrainerUNet3PlusSkeletonRecall):
    unet3plus_cat_channels = 8


class nnUNetTrainerUNetV2Tiny(TinyRun, nnUNetTrainerUNetV2):
    unetv2_sdi_channels = 8


class nnUNetTrainerUNetV2SkeletonRecallTiny(TinyRun, nnUNetTrainerUNetV2SkeletonRecall):
    unetv2_sdi_channels = 8


class nnUNetTrainerPlainTiny(TinyRun, nnUNetTrainer):
    """Stock nnU-Net, short: for networks named in a plans file's network_class_name."""


class CompileOnCPU:
    """Mixin: take nnU-Net's torch.compile path on the CPU too (nnU-Net compiles only on CUDA), as on a GPU.

    Inductor generates C++ for the machine's compiler; the first run of a network compiles for tens of seconds,
    later runs load the compiled graphs from inductor's cache. On the first training step the compiled
    network's outputs are compared with the eager module's on the same batch and the difference is logged
    (the training graph is the one compiled anyway, so the check costs no extra compilation). The forward and
    backward graphs of the training step are what is compiled here; the validation steps and nnU-Net's final
    validation run the eager module: their graphs (the same forward under no_grad, and without deep supervision)
    would each cost about as much compile time again per network (measured alone on 2 cores, UNet 3+ on 16x16
    patches: forward 61 s, backward 43 s, the no_grad forward 38 s), for nothing our code does differently.
    """

    def _do_i_compile(self) -> bool:
        return True

    @contextmanager
    def _eager_network(self) -> Iterator[None]:
        compiled = self.network
        self.network = getattr(compiled, "_orig_mod", compiled)
        try:
            yield
        finally:
            self.network = compiled

    def validation_step(self, batch: dict) -> dict:
        with self._eager_network():
            return super().validation_step(batch)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        with self._eager_network():
            super().perform_actual_validation(save_probabilities)

    def train_step(self, batch: dict) -> dict:
        if not getattr(self, "_compile_compared", False):
            self._compile_compared = True
            data = batch["data"].to(self.device)
            compiled, eager = self.network(data), self.network._orig_mod(data)
            pairs = list(zip(compiled, eager)) if isinstance(eager, (list, tuple)) else [(compiled, eager)]
            difference = max((c - e).abs().max().item() for c, e in pairs)
            scale = max(e.abs().max().item() for _, e in pairs)
            self.print_to_log_file(f"compiled vs eager: max |difference| {difference:.3e} of max |output| {scale:.3e}")
        return super().train_step(batch)


class nnUNetTrainerSkeletonRecallCompiledTiny(CompileOnCPU, nnUNetTrainerSkeletonRecallTiny):
    pass


class nnUNetTrainerClDiceCompiledTiny(CompileOnCPU, nnUNetTrainerClDiceTiny):
    pass


class nnUNetTrainerComboCompiledTiny(CompileOnCPU, nnUNetTrainerComboTiny):
    pass


class nnUNetTrainerCbDiceCompiledTiny(CompileOnCPU, nnUNetTrainerCbDiceTiny):
    pass


class nnUNetTrainerClCECompiledTiny(CompileOnCPU, nnUNetTrainerClCETiny):
    pass


class nnUNetTrainerHausdorffDTCompiledTiny(CompileOnCPU, nnUNetTrainerHausdorffDTTiny):
    pass


class nnUNetTrainerUNetWeightedCECompiledTiny(CompileOnCPU, nnUNetTrainerUNetWeightedCETiny):
    pass


class nnUNetTrainerUNet3PlusCompiledTiny(CompileOnCPU, nnUNetTrainerUNet3PlusTiny):
    pass


class nnUNetTrainerUNet3PlusCGMCompiledTiny(CompileOnCPU, nnUNetTrainerUNet3PlusCGMTiny):
    pass


class nnUNetTrainerUNet3PlusSkeletonRecallCompiledTiny(CompileOnCPU, nnUNetTrainerUNet3PlusSkeletonRecallTiny):
    pass


class nnUNetTrainerUNetV2CompiledTiny(CompileOnCPU, nnUNetTrainerUNetV2Tiny):
    pass


class nnUNetTrainerUNetV2SkeletonRecallCompiledTiny(CompileOnCPU, nnUNetTrainerUNetV2SkeletonRecallTiny):
    pass
