"""Hausdorff distance loss, distance-transform version (Karimi & Salcudean, IEEE TMI 2020), on stock nnU-Net:
CE + Dice + λ * HD_DT.

The ground-truth boundary distance fields are computed in the data-loader workers (scipy, in mm with the
configuration's spacing) and ride along in the target as the ``distance`` block; the prediction's field is
computed on the training device every step (exact torch EDT, no host sync), at each deep-supervision scale with
that scale's voxel size. Distances are expressed in percent of the patch diagonal, so λ does not depend on the
spacing or the patch size. λ = 1, reached after a linear ramp over the first 10% of the epochs (see the README:
at a mid-training state the term's gradient is about a fifth of the Dice term's; at initialization it would be
thousands of times larger). Change ``hausdorff_weight``, ``hausdorff_ramp_fraction`` or ``hausdorff_alpha`` in a
subclass in your own nnUNet_extTrainer folder.

``distance_fields_on_device = True`` (or ``nnUNetTrainerHausdorffDTDeviceFields``): the workers compute no field
(no ``distance`` block), and the loss computes the ground-truth fields from the labels on the training device
too (exact torch EDT, no host sync). At full resolution both give the same loss. At a coarser deep-supervision
scale they differ: the pipeline's fields are the full-resolution fields sampled (nearest neighbour) at the
downsampled labels' voxels, the device's are the fields *of* the downsampled labels with that scale's voxel size
(the definition applied at that scale, as for the prediction's field).
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.losses import CompoundLoss, HausdorffDTLoss, LossTerm, RegionHausdorffDTLoss
from nnunet_ext.losses.hausdorff_dt import patch_diagonal
from nnunet_ext.trainers.distance_target_mixin import DistanceTargetMixin
from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase


def hausdorff_term(trainer: nnUNetTrainer, weight: float, alpha: float = 2.0,
                   fields_on_device: bool | None = None) -> LossTerm:
    """An HD_DT loss term configured from a trainer's plans (spacing, patch size, batch_dice, DDP, ignore label,
    regions), distances in percent of the patch diagonal.

    It reads the ``labels`` and ``distance`` blocks (the trainer needs ``DistanceTargetMixin``), or, with
    ``fields_on_device`` (default: the trainer's ``distance_fields_on_device``, False without it), the ``labels``
    only: the loss computes the ground-truth fields on the device.
    """
    if fields_on_device is None:
        fields_on_device = getattr(trainer, "distance_fields_on_device", False)
    configuration = trainer.configuration_manager
    settings = dict(alpha=alpha, spacing=configuration.spacing, patch_size=configuration.patch_size,
                    distance_scale=patch_diagonal(configuration.spacing, configuration.patch_size) / 100,
                    batch_dice=configuration.batch_dice, ddp=trainer.is_ddp)
    if trainer.label_manager.has_regions:
        loss = RegionHausdorffDTLoss(**settings)
    else:
        loss = HausdorffDTLoss(**settings, ignore_label=trainer.label_manager.ignore_label)
    return LossTerm(loss, weight, "labels" if fields_on_device else ("labels", "distance"))


class nnUNetTrainerHausdorffDT(DistanceTargetMixin, ExtTrainerBase):
    """nnU-Net's CE + Dice plus λ * HD_DT (α = 2, distances in percent of the patch diagonal, λ ramped to 1).

    ``distance_fields_on_device`` (default False): True computes the ground-truth fields on the training device
    from the labels of each deep-supervision scale instead of in the data-loader workers (see the module).
    """

    hausdorff_weight: float = 1.0
    hausdorff_alpha: float = 2.0
    hausdorff_ramp_fraction: float = 0.1

    def hausdorff_weight_at(self, epoch: int) -> float:
        """λ at ``epoch``: ``hausdorff_weight * min(1, (epoch + 1) / ramp epochs)``, the ramp lasting
        ``hausdorff_ramp_fraction`` of ``num_epochs`` (at least one epoch; fraction 0: no ramp)."""
        ramp_epochs = max(1, round(self.hausdorff_ramp_fraction * self.num_epochs))
        return self.hausdorff_weight * min(1.0, (epoch + 1) / ramp_epochs)

    def extra_loss_terms(self) -> list[LossTerm]:
        return [hausdorff_term(self, self.hausdorff_weight_at(0), self.hausdorff_alpha)]

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        compound = getattr(self.loss, "loss", self.loss)
        if isinstance(compound, CompoundLoss):
            weight = self.hausdorff_weight_at(self.current_epoch)
            for index, loss in enumerate(compound.losses):
                if isinstance(loss, (HausdorffDTLoss, RegionHausdorffDTLoss)):
                    compound.set_weight(index, weight)
            self.print_to_log_file(f"nnunet_ext Hausdorff DT weight: {weight:g}")


class nnUNetTrainerHausdorffDT_w0p1(nnUNetTrainerHausdorffDT):
    hausdorff_weight = 0.1


class nnUNetTrainerHausdorffDT_w10(nnUNetTrainerHausdorffDT):
    hausdorff_weight = 10.0


class nnUNetTrainerHausdorffDTDeviceFields(nnUNetTrainerHausdorffDT):
    """The ground-truth distance fields on the training device, none in the data-loader workers."""

    distance_fields_on_device = True
