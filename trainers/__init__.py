"""nnU-Net trainers of nnunet_ext.

Point nnU-Net at this folder (``export nnUNet_extTrainer=$(nnunet-ext trainers-path)``)
and pass a trainer's class name to ``nnUNetv2_train -tr``. nnU-Net imports every
module here as a top-level module while searching, so modules import the package
absolutely (``nnunet_ext.…``) and are named distinctively.
"""

from nnunet_ext.trainers.nnUNetTrainerCbDice import cbdice_term, nnUNetTrainerCbDice
from nnunet_ext.trainers.nnUNetTrainerClCE import clce_term, nnUNetTrainerClCE
from nnunet_ext.trainers.nnUNetTrainerClDice import (
    cldice_term,
    nnUNetTrainerClDice,
    nnUNetTrainerClDice_w0p5,
    nnUNetTrainerClDice_w2,
)
from nnunet_ext.trainers.nnUNetTrainerCombo import nnUNetTrainerCombo, nnUNetTrainerCombo_b0p7
from nnunet_ext.trainers.nnUNetTrainerHausdorffDT import (
    hausdorff_term,
    nnUNetTrainerHausdorffDT,
    nnUNetTrainerHausdorffDT_w0p1,
    nnUNetTrainerHausdorffDT_w10,
    nnUNetTrainerHausdorffDTDeviceFields,
)
from nnunet_ext.trainers.nnUNetTrainerSkeletonRecall import (
    nnUNetTrainerSkeletonRecall,
    nnUNetTrainerSkeletonRecall_w0p5,
    nnUNetTrainerSkeletonRecall_w2,
    nnUNetTrainerSkeletonRecall_w5,
    nnUNetTrainerSkeletonRecallPerClass,
)
from nnunet_ext.trainers.nnUNetTrainerUNet3Plus import (
    nnUNetTrainerUNet3Plus,
    nnUNetTrainerUNet3PlusCGM,
    nnUNetTrainerUNet3PlusSkeletonRecall,
)
from nnunet_ext.trainers.nnUNetTrainerUNetV2 import nnUNetTrainerUNetV2, nnUNetTrainerUNetV2SkeletonRecall
from nnunet_ext.trainers.nnUNetTrainerUNetWeightedCE import nnUNetTrainerUNetWeightedCE

__all__ = [
    "cbdice_term",
    "clce_term",
    "cldice_term",
    "hausdorff_term",
    "nnUNetTrainerCbDice",
    "nnUNetTrainerClCE",
    "nnUNetTrainerClDice",
    "nnUNetTrainerClDice_w0p5",
    "nnUNetTrainerClDice_w2",
    "nnUNetTrainerCombo",
    "nnUNetTrainerCombo_b0p7",
    "nnUNetTrainerHausdorffDT",
    "nnUNetTrainerHausdorffDTDeviceFields",
    "nnUNetTrainerHausdorffDT_w0p1",
    "nnUNetTrainerHausdorffDT_w10",
    "nnUNetTrainerSkeletonRecall",
    "nnUNetTrainerSkeletonRecallPerClass",
    "nnUNetTrainerSkeletonRecall_w0p5",
    "nnUNetTrainerSkeletonRecall_w2",
    "nnUNetTrainerSkeletonRecall_w5",
    "nnUNetTrainerUNet3Plus",
    "nnUNetTrainerUNet3PlusCGM",
    "nnUNetTrainerUNet3PlusSkeletonRecall",
    "nnUNetTrainerUNetV2",
    "nnUNetTrainerUNetV2SkeletonRecall",
    "nnUNetTrainerUNetWeightedCE",
]
