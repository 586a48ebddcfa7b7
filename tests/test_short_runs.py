"""The one short-run helper (nnunet_ext.commands.short_runs): the mixin's budget and the module writer."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.commands.short_runs import (
    ShortRun,
    ShortTrainer,
    UnknownTrainerError,
    short_trainers_source,
    write_short_trainers,
)
from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall
from nnunet_ext.trainers.topology_validation_mixin import TopologyValidationMixin
from tests.conftest import TEST_TRAINERS


class FakeTrainer:
    """nnU-Net's budget attributes, its final validation and its log, without plans or data."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # noqa: B008
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1000, 250, 50
        self.device, self.log, self.validated = device, [], False

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.validated = True

    def print_to_log_file(self, *args) -> None:
        self.log.append(" ".join(map(str, args)))


def _make(cls: type) -> FakeTrainer:
    return cls({}, "2d", 0, {}, device=torch.device("cpu"))


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_mixin_keeps_nnunets_constructor_signature() -> None:
    assert inspect.signature(ShortRun.__init__) == inspect.signature(nnUNetTrainer.__init__)


def test_the_mixin_sets_the_budget_it_is_given_and_keeps_the_rest() -> None:
    class Short(ShortRun, FakeTrainer):
        short_epochs, short_iterations = 2, 3

    trainer = _make(Short)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (2, 3, 50)
    trainer.perform_actual_validation()
    assert trainer.validated and trainer.log == []

    class Skipping(Short):
        short_val_iterations = 0
        skip_final_validation = "a reason"

    trainer = _make(Skipping)
    assert trainer.num_val_iterations_per_epoch == 0
    trainer.perform_actual_validation()
    assert not trainer.validated and trainer.log == ["final validation skipped (a reason)"]


def test_the_tests_tiny_run_reads_its_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = _load(TEST_TRAINERS / "nnunet_ext_tiny_trainers.py", "nnunet_ext_test_tiny_trainers")

    class Tiny(tiny.TinyRun, FakeTrainer):
        pass

    monkeypatch.delenv("NNUNET_EXT_TEST_EPOCHS", raising=False)
    monkeypatch.delenv("NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION", raising=False)
    trainer = _make(Tiny)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (1, 3, 2)
    trainer.perform_actual_validation()
    assert trainer.validated
    monkeypatch.setenv("NNUNET_EXT_TEST_EPOCHS", "2")
    monkeypatch.setenv("NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION", "1")
    trainer = _make(Tiny)
    assert trainer.num_epochs == 2
    trainer.perform_actual_validation()
    assert not trainer.validated
    assert trainer.log == ["final validation skipped (NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION=1)"]


def test_the_written_module_defines_short_subclasses_of_the_named_trainers(tmp_path: Path) -> None:
    trainers = [
        ShortTrainer("nnUNetTrainerPlainShort", "nnUNetTrainer", epochs=2, iterations=5, val_iterations=1,
                     mixins=("nnunet_ext.trainers.topology_validation_mixin.TopologyValidationMixin",)),
        ShortTrainer("nnUNetTrainerSkeletonRecallShort", "nnUNetTrainerSkeletonRecall", iterations=4,
                     attributes={"skeleton_recall_weight": 0.5}),
    ]
    path = write_short_trainers(tmp_path / "mine", "nnunet_ext_test_short_trainers", trainers, "Two short runs.")
    assert path == tmp_path / "mine" / "nnunet_ext_test_short_trainers.py"
    module = _load(path, "nnunet_ext_test_short_trainers")
    assert module.__doc__ == "Two short runs."
    plain, skeleton_recall = module.nnUNetTrainerPlainShort, module.nnUNetTrainerSkeletonRecallShort
    assert plain.__bases__ == (ShortRun, TopologyValidationMixin, nnUNetTrainer)
    assert (plain.short_epochs, plain.short_iterations, plain.short_val_iterations) == (2, 5, 1)
    assert skeleton_recall.__bases__ == (ShortRun, nnUNetTrainerSkeletonRecall)
    assert (skeleton_recall.short_epochs, skeleton_recall.short_iterations) == (None, 4)
    assert skeleton_recall.skeleton_recall_weight == 0.5
    for cls in (plain, skeleton_recall):  # what nnU-Net records and calls
        assert inspect.signature(cls.__init__) == inspect.signature(nnUNetTrainer.__init__)


def test_the_writer_refuses_what_nnunet_could_not_use() -> None:
    with pytest.raises(UnknownTrainerError, match="unknown trainer 'nnUNetTrainerNoSuchThing'"):
        short_trainers_source([ShortTrainer("nnUNetTrainerX", "nnUNetTrainerNoSuchThing")], "doc")
    with pytest.raises(ValueError, match="identifier"):
        short_trainers_source([ShortTrainer("not a name", "nnUNetTrainer")], "doc")
    with pytest.raises(ValueError, match="distinct"):
        short_trainers_source([ShortTrainer("nnUNetTrainerX", "nnUNetTrainer")] * 2, "doc")
    with pytest.raises(ValueError, match="class attribute weights"):
        short_trainers_source([ShortTrainer("nnUNetTrainerX", "nnUNetTrainer", attributes={"weights": [1]})], "doc")
