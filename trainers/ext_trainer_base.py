"""What every nnunet_ext trainer adds to nnU-Net's ``nnUNetTrainer``, composed once.

- ``TopologyValidationMixin``: ``summary_topology.json`` next to nnU-Net's summary after the final validation;
- ``PreviousStageCheckMixin``: a cascade stage refuses to start without its previous stage's segmentations;
- ``LabelCheckMixin``: label values checked in the data pipeline, on the CPU, for every sample;
- ``LossTermsMixin``: ``extra_loss_terms()`` / ``replacement_base_loss()`` composed with nnU-Net's loss.

A trainer subclasses ``ExtTrainerBase`` and puts its own mixins (skeleton target, network) in front.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.trainers.label_check_mixin import LabelCheckMixin
from nnunet_ext.trainers.loss_terms_mixin import LossTermsMixin
from nnunet_ext.trainers.previous_stage_check_mixin import PreviousStageCheckMixin
from nnunet_ext.trainers.topology_validation_mixin import TopologyValidationMixin


class ExtTrainerBase(TopologyValidationMixin, PreviousStageCheckMixin, LabelCheckMixin, LossTermsMixin,
                     nnUNetTrainer):
    """nnUNetTrainer with the checks and the topology summary every nnunet_ext trainer has."""
