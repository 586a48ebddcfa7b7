"""The one list of our trainers for the test matrices, with what the matrices need to know about each.

Every trainer class ``nnunet_ext.trainers`` exports is either in ``TRAINERS`` (its own network, loss or targets)
or in ``VARIANTS`` (a weight or setting of one of them); ``tests/test_trainer_matrix.py`` checks that, so a new
trainer cannot be left out of the matrices (mixed precision, pipelines, regions, the CLI and compiled runs, the
worker start methods, the GPU check's default list). Each one in ``TRAINERS`` also has its short versions
``<name>Tiny`` and ``<name>CompiledTiny`` in ``tests/nnunet_trainers/nnunet_ext_tiny_trainers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainerCase:
    """One trainer of the matrices.

    Attributes:
        name: the class name (``nnUNetv2_train -tr``).
        log_text: text its training log must contain (its loss, or its network).
        checkpoint_key: a state-dict key prefix its checkpoint must hold (its decoder).
        network: ``UNet3Plus`` or ``UNetV2`` for a network trainer (its network class in ``nnunet_ext.networks``);
            None: nnU-Net's own network.
        extra_target: the target block its data pipeline appends after the labels (``skeleton``, ``distance``,
            ``weights``), or None.
        regions: whether it trains on region-based datasets (the others refuse them at initialize).
    """

    name: str
    log_text: str
    checkpoint_key: str
    network: str | None = None
    extra_target: str | None = None
    regions: bool = True

    @property
    def trainer_class(self) -> type:
        from nnunet_ext import trainers

        return getattr(trainers, self.name)

    @property
    def family(self) -> str:
        """'networks' or 'losses': the compiled runs of one family share a pytest-xdist worker."""
        return "networks" if self.network else "losses"

    def fast_class(self) -> type:
        """The trainer with narrow full-scale / SDI channels (the tiny trainers' widths): the same code, faster on
        the CPU; the trainer itself for the others."""
        cls = self.trainer_class
        if self.network is None:
            return cls
        return type(cls.__name__, (cls,), {"unet3plus_cat_channels": 8, "unetv2_sdi_channels": 8})


TRAINERS: tuple[TrainerCase, ...] = (
    TrainerCase("nnUNetTrainerSkeletonRecall", "SoftSkeletonRecallLoss", "decoder.stages", extra_target="skeleton"),
    TrainerCase("nnUNetTrainerClDice", "SoftClDiceLoss", "decoder.stages"),
    TrainerCase("nnUNetTrainerCombo", "ComboLoss", "decoder.stages"),
    TrainerCase("nnUNetTrainerCbDice", "CbDiceLoss", "decoder.stages"),
    TrainerCase("nnUNetTrainerClCE", "ClCELoss", "decoder.stages"),
    TrainerCase("nnUNetTrainerUNet3Plus", "nnunet_ext network: UNet3Plus", "decoder.stages.0.inputs",
                network="UNet3Plus"),
    TrainerCase("nnUNetTrainerUNet3PlusCGM", "HybridLoss", "decoder.classifier", network="UNet3Plus", regions=False),
    TrainerCase("nnUNetTrainerUNet3PlusSkeletonRecall", "SoftSkeletonRecallLoss", "decoder.stages.0.inputs",
                network="UNet3Plus", extra_target="skeleton"),
    TrainerCase("nnUNetTrainerUNetV2", "nnunet_ext network: UNetV2", "decoder.sdi", network="UNetV2"),
    TrainerCase("nnUNetTrainerUNetV2SkeletonRecall", "SoftSkeletonRecallLoss", "decoder.sdi", network="UNetV2",
                extra_target="skeleton"),
    TrainerCase("nnUNetTrainerHausdorffDT", "HausdorffDTLoss(labels, distance)", "decoder.stages",
                extra_target="distance"),
    TrainerCase("nnUNetTrainerUNetWeightedCE", "WeightedCrossEntropyLoss(labels, weights)", "decoder.stages",
                extra_target="weights", regions=False),
)
BY_NAME = {case.name: case for case in TRAINERS}

# weight / setting variants -> the trainer they vary (class attributes only: the matrices run the trainer itself)
VARIANTS = {
    "nnUNetTrainerClDice_w0p5": "nnUNetTrainerClDice",
    "nnUNetTrainerClDice_w2": "nnUNetTrainerClDice",
    "nnUNetTrainerCombo_b0p7": "nnUNetTrainerCombo",
    "nnUNetTrainerHausdorffDTDeviceFields": "nnUNetTrainerHausdorffDT",  # no distance block: fields on the device
    "nnUNetTrainerHausdorffDT_w0p1": "nnUNetTrainerHausdorffDT",
    "nnUNetTrainerHausdorffDT_w10": "nnUNetTrainerHausdorffDT",
    "nnUNetTrainerSkeletonRecall_w0p5": "nnUNetTrainerSkeletonRecall",
    "nnUNetTrainerSkeletonRecall_w2": "nnUNetTrainerSkeletonRecall",
    "nnUNetTrainerSkeletonRecall_w5": "nnUNetTrainerSkeletonRecall",
    "nnUNetTrainerSkeletonRecallPerClass": "nnUNetTrainerSkeletonRecall",
}


def trainer_classes(**properties: object) -> list[type]:
    """The classes of the trainers whose properties have the given values (none given: all), in matrix order."""
    return [case.trainer_class for case in cases(**properties)]


def cases(**properties: object) -> list[TrainerCase]:
    """The trainers whose properties have the given values, e.g. ``cases(regions=True)``, ``cases(family="losses")``."""
    return [case for case in TRAINERS if all(getattr(case, key) == value for key, value in properties.items())]


def name_of(trainer_class: type) -> str:
    """A parametrize id."""
    return trainer_class.__name__
