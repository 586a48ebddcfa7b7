"""Checks of nnU-Net region definitions (dataset.json ``regions`` / ``regions_class_order``) for our trainers.

nnU-Net itself asserts that ``regions_class_order`` exists and has one entry per region. These checks
add what our losses and nnU-Net's export rely on, with messages that name the fix:

* at export, nnU-Net writes label ``regions_class_order[i]`` where region i is predicted, so that label
  must belong to region i, or converting the exported label map back to regions loses region i;
* our sigmoid losses read the region channels only: nnU-Net's extra ignore channel (regions combined
  with an ignore label) is not supported.
"""

from __future__ import annotations

from collections.abc import Sequence


class RegionDefinitionError(ValueError):
    """dataset.json's region definitions cannot be trained as they are: the message names the fix."""


def _members(region: int | Sequence[int]) -> set[int]:
    return {int(region)} if isinstance(region, int) else {int(r) for r in region}


def refuse_ignore_label_with_regions(ignore_label: int | None, trainer_name: str, readers: Sequence[object]) -> None:
    """Raise ``RegionDefinitionError`` if a region-based dataset also has an ignore label; the message names the
    classes of ``readers``, what of the trainer reads the region channels (its losses, or its target transforms)."""
    if ignore_label is not None:
        names = list(dict.fromkeys(type(reader).__name__ for reader in readers))
        verb = "reads" if len(names) == 1 else "read"
        raise RegionDefinitionError(
            f"{trainer_name} does not support region-based training combined with an ignore label (dataset.json "
            f"'ignore': {ignore_label}): its {' and '.join(names)} {verb} the region channels only, not nnU-Net's "
            f"extra ignore channel. Remove the ignore label from dataset.json (and the data), or train this dataset "
            f"with nnUNetTrainer")


def check_regions_class_order(regions: Sequence[int | Sequence[int]],
                              regions_class_order: Sequence[int] | None) -> None:
    """Raise ``RegionDefinitionError`` unless ``regions_class_order`` has one label of each region, in order."""
    if regions_class_order is None or len(regions_class_order) != len(regions):
        count = "missing" if regions_class_order is None else f"has {len(regions_class_order)} entries"
        raise RegionDefinitionError(
            f"dataset.json defines {len(regions)} regions {list(regions)} but 'regions_class_order' is {count}: "
            f"add one label per region, in the order of the regions in 'labels'")
    for region, label in zip(regions, regions_class_order):
        if int(label) not in _members(region):
            raise RegionDefinitionError(
                f"dataset.json's 'regions_class_order' does not match its regions: region {region} is exported as "
                f"label {label}, which is not one of its labels, so the exported segmentation cannot be turned back "
                f"into this region. Put one of the labels {sorted(_members(region))} at this region's position in "
                f"'regions_class_order'")


def check_region_definitions(regions: Sequence[int | Sequence[int]], regions_class_order: Sequence[int] | None,
                             ignore_label: int | None, trainer_name: str, readers: Sequence[object]) -> None:
    """Raise ``RegionDefinitionError`` unless the foreground ``regions`` can be trained by ``trainer_name``.

    Args:
        regions: nnU-Net's foreground regions in dataset.json order (``LabelManager.foreground_regions``).
        regions_class_order: dataset.json's ``regions_class_order``.
        ignore_label: dataset.json's ignore label, or None.
        trainer_name: named in the messages.
        readers: what of the trainer reads the region channels (its losses), named by class.
    """
    refuse_ignore_label_with_regions(ignore_label, trainer_name, readers)
    check_regions_class_order(regions, regions_class_order)
