"""How strongly the Hausdorff DT term pulls next to nnU-Net's Dice and CE: the basis of the trainer's λ.

nnUNetTrainerHausdorffDT divides every distance by 1% of the patch diagonal (so the term does not depend on the
spacing or the patch size) and weighs the term with λ. This script measures, on synthetic thin-structure patches
(a 3D 128^3 and a 2D 512^2 vessel tree, 2 classes) and three prediction states, the value and the gradient norm
(with respect to the logits) of nnU-Net's Dice term, its CE term and that HD term, and prints the ratios:

* init: logits ~ N(0, 0.1), an untrained network;
* mid: the truth shifted by 2 voxels (logits +-4) plus a spurious 6-voxel blob far from the vessels;
* late: the truth (logits +-6) with the boundary voxels of the vessels uncertain.

The figures go to benchmarks/results/hausdorff_weight.json (``--no-save``: not). They are deterministic (fixed
seeds, no timing), so one run is all there is.

Run:  .venv/bin/python benchmarks/bench_hausdorff_weight.py [--no-save] [--output FILE]   (about a minute)
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import results_io
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from scipy import ndimage

from nnunet_ext.data.synthetic import TreeParams, vessel_tree
from nnunet_ext.losses import HausdorffDTLoss

CLASSES = 3  # background and 2 vessel classes


def nnunet_term(batch_dice: bool, ce: bool) -> torch.nn.Module:
    """nnU-Net's DC_and_CE_loss reduced to its Dice (ce=False) or its CE (ce=True) term."""
    return DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1 if ce else 0, weight_dice=0 if ce else 1, ignore_label=None,
                          dice_class=MemoryEfficientSoftDiceLoss)


def states(labels: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Logits (1, C, *spatial) float64 of the three prediction states for labels (1, 1, *spatial)."""
    gen = torch.Generator().manual_seed(seed)
    spatial = labels.shape[2:]
    one_hot = F.one_hot(labels[:, 0], CLASSES).movedim(-1, 1).double()
    mid = 4 * (2 * torch.roll(one_hot, 2, dims=2) - 1)
    blob = tuple(slice(s // 10, s // 10 + 6) for s in spatial)
    mid[(0, 1, *blob)] = 8.0
    late = 6 * (2 * one_hot - 1)
    foreground = labels[0, 0] > 0
    rim = foreground & ~torch.from_numpy(ndimage.binary_erosion(foreground.numpy()))
    late[0, 0][rim] += 6 * torch.rand(int(rim.sum()), generator=gen, dtype=torch.float64)
    return {"init": 0.1 * torch.randn(1, CLASSES, *spatial, generator=gen, dtype=torch.float64),
            "mid": mid, "late": late}


def value_and_gradient_norm(loss: torch.nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    z = logits.clone().requires_grad_(True)
    value = loss(z, labels)
    (gradient,) = torch.autograd.grad(value, z)
    return value.item(), gradient.norm().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results_io.add_arguments(parser)
    args = parser.parse_args()
    recording = results_io.Recording("hausdorff_weight", {"classes": CLASSES, "seed": 1,
                                                          "patches": ["3D 128^3", "2D 512^2"]}, args)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    patches = {"3D 128^3": vessel_tree((128,) * 3, seed=1, n_classes=2,
                                       params=TreeParams(root_radius=5, branch_probability=0.03)),
               "2D 512^2": vessel_tree((512, 512), seed=1, n_classes=2)}
    print(f"{'patch':<10} {'state':<6} {'Dice value':>11} {'HD value':>10} {'|grad| Dice':>12} {'|grad| CE':>10} "
          f"{'|grad| HD':>10} {'Dice/HD':>9} {'CE/HD':>9}")
    for name, tree in patches.items():
        labels = torch.from_numpy(tree.astype(np.int64))[None, None]
        spatial = labels.shape[2:]
        diagonal = math.sqrt(sum(s * s for s in spatial))
        hd = HausdorffDTLoss(distance_scale=diagonal / 100)  # the trainer's units: % of the patch diagonal
        batch_dice = len(spatial) == 2  # nnU-Net's default: batch Dice in 2D
        for state, logits in states(labels).items():
            dice = value_and_gradient_norm(nnunet_term(batch_dice, ce=False), logits, labels)
            ce = value_and_gradient_norm(nnunet_term(batch_dice, ce=True), logits, labels)
            hd_value = value_and_gradient_norm(hd, logits, labels)
            rows.append({"patch": name, "state": state, "dice_value": dice[0], "hd_value": hd_value[0],
                         "dice_gradient_norm": dice[1], "ce_gradient_norm": ce[1], "hd_gradient_norm": hd_value[1]})
            print(f"{name:<10} {state:<6} {dice[0]:11.4g} {hd_value[0]:10.4g} {dice[1]:12.4g} {ce[1]:10.4g} "
                  f"{hd_value[1]:10.4g} {dice[1] / hd_value[1]:9.3g} {ce[1] / hd_value[1]:9.3g}")
    print("\nDice/HD: the λ at which the HD term's gradient equals the Dice term's in that state.")
    recording.save({"rows": rows})


if __name__ == "__main__":
    main()
