"""Short nnU-Net training runs, the one way: used by the demo, the study, the tests' tiny trainers and the GPU check.

nnU-Net finds a trainer by its class name in the folders listed in ``nnUNet_extTrainer`` (importing every module
there as a top-level module) and records the constructor's arguments by their names, so a subclass must keep
exactly the signature ``(plans, configuration, fold, dataset_json, device=torch.device("cuda"))``.

* ``ShortRun`` is a mixin with that signature: it sets nnU-Net's epochs, iterations per epoch and validation
  iterations per epoch from class attributes, and can skip nnU-Net's final validation.
* ``write_short_trainers`` writes a module of ``ShortRun`` subclasses of named trainers into a folder: the route a
  user takes to change a trainer without editing installed code (a folder of their own, listed in
  ``nnUNet_extTrainer`` next to ours).
"""

import keyword
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

SHORT_RUN = "nnunet_ext.commands.short_runs.ShortRun"
OUR_TRAINERS = "nnunet_ext.trainers"


# (No ``from __future__ import annotations`` in this module: ShortRun's signature equals nnU-Net's, annotations too.)
class ShortRun:
    """Mixin, put first (``class T(ShortRun, nnUNetTrainerSkeletonRecall)``): a run with a budget of its own.

    Class attributes (properties in a subclass work too: the tests read environment variables):
        short_epochs, short_iterations, short_val_iterations: nnU-Net's ``num_epochs``,
            ``num_iterations_per_epoch`` and ``num_val_iterations_per_epoch``; None keeps nnU-Net's value.
        skip_final_validation: None runs nnU-Net's final validation; a text skips it, and the training log
            says ``final validation skipped (<text>)``.

    The budget is set in the constructor, before nnU-Net's ``initialize`` builds the learning-rate schedule
    from ``num_epochs``.
    """

    short_epochs: ClassVar[int | None] = None
    short_iterations: ClassVar[int | None] = None
    short_val_iterations: ClassVar[int | None] = None
    skip_final_validation: ClassVar[str | None] = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # noqa: B008 - nnU-Net's exact signature
        super().__init__(plans, configuration, fold, dataset_json, device)
        for attribute, value in (("num_epochs", self.short_epochs),
                                 ("num_iterations_per_epoch", self.short_iterations),
                                 ("num_val_iterations_per_epoch", self.short_val_iterations)):
            if value is not None:
                setattr(self, attribute, int(value))

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        reason = self.skip_final_validation
        if reason is not None:
            self.print_to_log_file(f"final validation skipped ({reason})")
            return
        super().perform_actual_validation(save_probabilities)


class UnknownTrainerError(LookupError):
    """A trainer name that neither nnU-Net nor nnunet_ext defines."""


def trainer_module(trainer: str) -> str:
    """The importable module that defines the trainer class ``trainer`` (nnU-Net's own trainers or ours)."""
    import nnunetv2  # noqa: PLC0415
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class  # noqa: PLC0415

    import nnunet_ext.trainers as ours  # noqa: PLC0415

    if trainer in ours.__all__:
        return OUR_TRAINERS
    found = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), trainer,
                                        "nnunetv2.training.nnUNetTrainer")
    if found is None:
        raise UnknownTrainerError(f"unknown trainer {trainer!r}: neither nnU-Net nor nnunet_ext defines it (our "
                                  f"trainers: {', '.join(ours.__all__)})")
    return found.__module__


@dataclass(frozen=True)
class ShortTrainer:
    """One class of a written module: ``class <name>(<run mixin>, *mixins, <base>)`` with its budget.

    Attributes:
        name: the class name (``nnUNetv2_train -tr <name>``).
        base: the trainer it shortens: a class name that nnU-Net or nnunet_ext defines, or ``module.Class``.
        epochs, iterations, val_iterations: ``short_epochs``, ``short_iterations``, ``short_val_iterations``
            (None: not set in the class, so the run mixin's value, by default nnU-Net's).
        mixins: more mixins between the run mixin and the base, as ``module.Class``.
        attributes: other class attributes (numbers, strings, booleans, None), e.g. a loss weight.
    """

    name: str
    base: str
    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    mixins: tuple[str, ...] = ()
    attributes: Mapping[str, object] = field(default_factory=dict)

    def class_attributes(self) -> dict[str, object]:
        budget = {"short_epochs": self.epochs, "short_iterations": self.iterations,
                  "short_val_iterations": self.val_iterations}
        return {**{key: value for key, value in budget.items() if value is not None}, **self.attributes}


def _identifier(name: str, what: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{what} must be a Python identifier, got {name!r}")
    return name


def _literal(name: str, value: object) -> str:
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise ValueError(f"class attribute {name} must be a number, a string, a boolean or None, got {value!r}")
    return repr(value)


def _import_of(reference: str) -> tuple[str, str]:
    """(module, class name) of ``module.Class``, or of a trainer class name that nnU-Net or nnunet_ext defines."""
    module, _, name = reference.rpartition(".")
    return (module or trainer_module(name)), _identifier(name, "a class name")


def short_trainers_source(trainers: Sequence[ShortTrainer], docstring: str, run_mixin: str = SHORT_RUN) -> str:
    """Python source of one module with a class per ``ShortTrainer``; UnknownTrainerError for an unknown base."""
    if not trainers:
        raise ValueError("no trainers to write")
    names = [_identifier(trainer.name, "a trainer name") for trainer in trainers]
    if len(set(names)) != len(names):
        raise ValueError(f"trainer names must be distinct, got {names}")
    imports: dict[str, set[str]] = {}
    classes = []
    for trainer in trainers:
        bases = [_import_of(reference) for reference in (run_mixin, *trainer.mixins, trainer.base)]
        for module, name in bases:
            imports.setdefault(module, set()).add(name)
        body = [f"    {_identifier(key, 'a class attribute')} = {_literal(key, value)}"
                for key, value in trainer.class_attributes().items()] or ["    pass"]
        classes += ["", "", f"class {trainer.name}({', '.join(name for _, name in bases)}):", *body]
    lines = [f'"""{docstring}"""' if '"""' not in docstring else repr(docstring), ""]
    lines += [f"from {module} import {', '.join(sorted(imports[module]))}" for module in sorted(imports)]
    return "\n".join(lines + classes) + "\n"


def write_short_trainers(folder: Path, module: str, trainers: Sequence[ShortTrainer], docstring: str,
                         run_mixin: str = SHORT_RUN) -> Path:
    """Write ``folder/<module>.py`` (``short_trainers_source``), creating the folder; returns the file.

    List ``folder`` in ``nnUNet_extTrainer`` (before ours) and pass a class name to ``nnUNetv2_train -tr``.
    ``module`` should be distinctive: nnU-Net imports it as a top-level module.
    """
    source = short_trainers_source(trainers, docstring, run_mixin)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_identifier(module, 'the module name')}.py"
    path.write_text(source)
    return path
