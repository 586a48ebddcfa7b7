"""Pairs the check compares on CUDA: a setting variant timed next to the trainer it varies (stdlib only).

nnU-Net's data-loader workers often limit GPU training, so where a variant moves work from the workers onto the
GPU, only a GPU run says which way is faster: on CUDA the variant runs right after its trainer whenever that
trainer runs, and the notes give the variant's s/iteration and memory as multiples of its trainer's.
"""

from __future__ import annotations

from .config import RunResult

# variant -> (the trainer it is compared with, what differs)
COMPARISONS: dict[str, tuple[str, str]] = {
    "nnUNetTrainerHausdorffDTDeviceFields": (
        "nnUNetTrainerHausdorffDT", "Hausdorff DT ground-truth fields on the GPU, not in the data-loader workers"),
}


def with_comparisons(trainers: list[str], device: str) -> list[str]:
    """``trainers`` with, on CUDA, each compared variant inserted right after its trainer (once)."""
    if device != "cuda":
        return list(trainers)
    out: list[str] = []
    for name in trainers:
        if name not in out:
            out.append(name)
        out += [variant for variant, (reference, _) in COMPARISONS.items()
                if reference == name and variant not in trainers and variant not in out]
    return out


def comparison_lines(results: list[RunResult]) -> list[str]:
    """One note per compared pair whose single-GPU runs both finished: the variant's ratios to its trainer."""
    done = {r.trainer: r for r in results if r.status == "ok" and r.num_gpus == 1}
    lines = []
    for variant, (reference, what) in COMPARISONS.items():
        if variant not in done or reference not in done:
            continue
        ours, base = done[variant], done[reference]
        memory = next(iter(base.memory_bytes), None)
        memory_ratio = (f", peak memory ({memory}) {ours.memory_bytes[memory] / base.memory_bytes[memory]:.2f}×"
                        if memory in ours.memory_bytes and base.memory_bytes[memory] else "")
        lines.append(f"{variant} vs {reference} ({what}): s/iteration "
                     f"{ours.seconds_per_iteration / base.seconds_per_iteration:.2f}×{memory_ratio}.")
    return lines
