"""The test matrices' one list of trainers (tests/trainer_matrix.py) holds every trainer we export, truthfully."""

from __future__ import annotations

import ast
import inspect

import pytest

from nnunet_ext import trainers
from nnunet_ext.trainers.extra_target_mixin import TargetContext
from tests.conftest import TEST_TRAINERS
from tests.trainer_matrix import TRAINERS, VARIANTS, TrainerCase


def test_every_exported_trainer_is_in_the_matrix_or_a_variant_of_one() -> None:
    exported = {name for name in trainers.__all__ if inspect.isclass(getattr(trainers, name))}
    listed = [case.name for case in TRAINERS] + list(VARIANTS)
    assert len(listed) == len(set(listed)), "listed twice"
    assert exported - set(listed) == set(), "add these trainers to tests/trainer_matrix.py"
    assert set(listed) - exported == set(), "not exported by nnunet_ext.trainers"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_variant_only_sets_class_attributes_of_its_trainer(variant: str) -> None:
    cls = getattr(trainers, variant)
    assert cls.__bases__ == (getattr(trainers, VARIANTS[variant]),)
    assert not [name for name, value in vars(cls).items() if callable(value) or isinstance(value, property)]


@pytest.mark.parametrize("case", TRAINERS, ids=lambda case: case.name)
def test_the_matrix_says_what_each_trainer_is(case: TrainerCase) -> None:
    cls = case.trainer_class
    layout = cls.layout_of(TargetContext(foreground_labels=(1, 2))) if hasattr(cls, "layout_of") else None
    assert (layout.names[1:] if layout else ()) == ((case.extra_target,) if case.extra_target else ())
    network_mixins = {c.__name__ for c in cls.__mro__} & {"UNet3PlusNetworkMixin", "UNetV2NetworkMixin"}
    assert network_mixins == ({f"{case.network}NetworkMixin"} if case.network else set())


def test_every_trainer_has_its_tiny_and_compiled_tiny_test_versions() -> None:
    tree = ast.parse((TEST_TRAINERS / "nnunet_ext_tiny_trainers.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    missing = {f"{case.name}{suffix}" for case in TRAINERS for suffix in ("Tiny", "CompiledTiny")} - defined
    assert missing == set(), "add them to tests/nnunet_trainers/nnunet_ext_tiny_trainers.py"
