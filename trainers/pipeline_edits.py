"""Inserting our transforms into nnU-Net's data pipelines without copying them.

nnU-Net's ``get_training_transforms`` / ``get_validation_transforms`` return a ``ComposeTransforms``
whose ``.transforms`` list ends with the target conversions: region conversion
(``ConvertSegmentationToRegionsTransform``, region-based datasets) and deep-supervision downsampling
(``DownsampleSegForDSTransform``). A transform that reads or extends the label map goes right before
them, so that the downsampling carries whatever it appends to every output scale.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import MethodType

from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

TARGET_CONVERSIONS = (ConvertSegmentationToRegionsTransform, DownsampleSegForDSTransform)


class pipeline_method:  # noqa: N801 (used as a decorator, like classmethod)
    """Like ``classmethod``, but bound to the trainer *instance* when called through one.

    nnU-Net builds its pipelines with ``self.get_training_transforms(...)``; called that way the method receives
    the trainer and can read its configuration (e.g. the spacing of distance fields). Called on the class (as
    nnU-Net's own static methods can be), it receives the class.
    """

    def __init__(self, func: Callable) -> None:
        self.__func__ = func
        functools.update_wrapper(self, func)

    def __get__(self, instance: object, owner: type | None = None) -> MethodType:
        return MethodType(self.__func__, owner if instance is None else instance)


class PipelineLayoutError(RuntimeError):
    """The data pipeline does not have the layout our transforms are inserted into."""


def _passes_through(signature: inspect.Signature) -> bool:
    """Whether a signature is only ``(*args, **kwargs)`` (a mixin handing the call on)."""
    kinds = {p.kind for p in signature.parameters.values()}
    return kinds <= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}


def pipeline_arguments(trainer_class: type, mixin: type, method_name: str, args: tuple, kwargs: dict) -> dict:
    """The arguments of the call ``method_name(*args, **kwargs)`` by name, defaults filled in.

    They are bound with the signature of the first class after ``mixin`` in ``trainer_class``'s MRO that
    defines the method with named parameters (a user's trainer may change nnUNetTrainer's signature; other
    mixins hand the call on with ``*args, **kwargs``).
    """
    mro = trainer_class.__mro__
    for klass in mro[mro.index(mixin) + 1:]:
        if method_name in vars(klass):
            signature = inspect.signature(getattr(klass, method_name))
            if not _passes_through(signature):
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                return bound.arguments
    raise TypeError(f"no class after {mixin.__name__} in {trainer_class.__name__}'s MRO defines {method_name} "
                    f"with named parameters")


def _require_top_level(pipeline: ComposeTransforms, transform_type: type, why: str) -> None:
    if not any(isinstance(t, transform_type) for t in pipeline.transforms):
        found = ", ".join(type(t).__name__ for t in pipeline.transforms)
        raise PipelineLayoutError(
            f"the data pipeline has no top-level {transform_type.__name__} ({why}), so nnunet_ext cannot place its "
            f"transform before it; found: [{found}]. If your trainer overrides get_training_transforms / "
            f"get_validation_transforms, keep nnU-Net's {transform_type.__name__} as an element of the returned "
            f"ComposeTransforms' list (not wrapped in another transform) or build the list with super()")


def insert_before_target_conversion(pipeline: ComposeTransforms, transform, deep_supervision: bool,
                                    conversions: tuple[type, ...] = TARGET_CONVERSIONS) -> ComposeTransforms:
    """Insert ``transform`` after nnU-Net's label clean-up and cascade steps, before region conversion and
    deep-supervision downsampling (in place; returns ``pipeline``).

    With ``deep_supervision`` the pipeline must contain a top-level ``DownsampleSegForDSTransform``
    (``PipelineLayoutError`` otherwise: inserted after a missing or wrapped one, the transform would
    meet a list of targets in the workers).
    """
    if deep_supervision:
        _require_top_level(pipeline, DownsampleSegForDSTransform, "deep supervision is on")
    position = next((i for i, t in enumerate(pipeline.transforms) if isinstance(t, conversions)),
                    len(pipeline.transforms))
    pipeline.transforms.insert(position, transform)
    return pipeline


def insert_after_region_conversion(pipeline: ComposeTransforms, transform, deep_supervision: bool
                                   ) -> ComposeTransforms:
    """Insert ``transform`` right after nnU-Net's ConvertSegmentationToRegionsTransform (in place)."""
    _require_top_level(pipeline, ConvertSegmentationToRegionsTransform, "the dataset defines regions")
    return insert_before_target_conversion(pipeline, transform, deep_supervision, (DownsampleSegForDSTransform,))


def edited_pipeline(trainer_class: type, mixin: type, method_name: str, args: tuple, kwargs: dict,
                    edit: Callable[[ComposeTransforms, dict], ComposeTransforms]) -> ComposeTransforms:
    """``edit(pipeline, arguments by name)`` on what the next class after ``mixin`` in ``trainer_class``'s MRO
    builds with ``method_name(*args, **kwargs)`` (nnU-Net's get_training_transforms / get_validation_transforms,
    or a user's override)."""
    pipeline = getattr(super(mixin, trainer_class), method_name)(*args, **kwargs)
    return edit(pipeline, pipeline_arguments(trainer_class, mixin, method_name, args, kwargs))
