"""A short, timed nnU-Net training run: per-iteration wall times and peak memory, written to a JSON file.

Mix ``TimedRunMixin`` in front of any nnU-Net trainer (the check writes such subclasses with nnunet_ext's
short-run writer into a folder it lists in ``nnUNet_extTrainer``; they import this module, so benchmarks/ must be
on the run's PYTHONPATH). It is nnunet_ext's ``ShortRun`` with one epoch of ``short_iterations`` training
iterations of nnU-Net's own ``train_step`` — forward, loss, backward and optimizer step with whatever
nnU-Net decides on that device (AMP with a GradScaler and torch.compile on CUDA, neither on the CPU) —
with no validation iterations and no final validation, so only training is timed.

An iteration's time is the wall time from the end of the previous ``train_step`` (for the first: the
start of the epoch) to the end of this one, after ``torch.cuda.synchronize``: it includes the wait for
the batch from nnU-Net's data loader and, in the first iteration(s), torch.compile. At the end of
training every process (every rank under DDP) writes ``timed_run_rank<R>.json`` into the fold's output
folder: iteration times, training losses, peak memory (CUDA: ``torch.cuda.max_memory_allocated`` and
``max_memory_reserved``; CPU: the peak resident set of the training process, data-loader workers not
included), whether the network was compiled and whether AMP was on, batch and patch size.
"""

from __future__ import annotations

import json
import math
import platform
import resource
import sys
import time
from pathlib import Path
from typing import ClassVar

import torch
import torch.distributed as dist

from nnunet_ext.commands.short_runs import ShortRun

from .config import TIMING_FILE


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_memory(device: torch.device) -> dict[str, int]:
    """Peak memory so far: CUDA allocator peaks on a GPU, the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return {"peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
                "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device))}
    return {"peak_rss_bytes": peak_rss_bytes()}


class TimedRunMixin(ShortRun):
    """One epoch of ``short_iterations`` timed training iterations; no validation. Mix in first."""

    short_epochs: ClassVar[int] = 1
    short_iterations: ClassVar[int] = 30
    short_val_iterations: ClassVar[int] = 0
    skip_final_validation: ClassVar[str] = "timed run"

    def initialize(self) -> None:
        self._iteration_marks: list[float] = []
        self._train_losses: list[float] = []
        super().initialize()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._synchronize()
        self._iteration_marks = [time.perf_counter()]

    def train_step(self, batch: dict) -> dict:
        result = super().train_step(batch)
        self._synchronize()
        self._iteration_marks.append(time.perf_counter())
        self._train_losses.append(float(result["loss"]))
        return result

    def on_validation_epoch_end(self, val_outputs: list[dict]) -> None:
        if val_outputs:
            super().on_validation_epoch_end(val_outputs)
            return
        # no validation iterations: log the values nnU-Net's epoch end reads, as "not measured"
        self.logger.log("mean_fg_dice", math.nan, self.current_epoch)
        self.logger.log("dice_per_class_or_region", [], self.current_epoch)
        self.logger.log("val_losses", math.nan, self.current_epoch)

    def on_train_end(self) -> None:
        self.write_timing()
        super().on_train_end()

    def timing_record(self) -> dict:
        """What this process measured, as a JSON-serializable dict."""
        marks = self._iteration_marks
        cuda = self.device.type == "cuda"
        return {
            "trainer": type(self).__name__,
            "rank": self.local_rank,
            "world_size": dist.get_world_size() if self.is_ddp else 1,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__,
            "compiled": bool(self._do_i_compile()),
            "amp": self.grad_scaler is not None,
            "batch_size": int(self.batch_size),
            "patch_size": [int(s) for s in self.configuration_manager.patch_size],
            "iteration_seconds": [b - a for a, b in zip(marks, marks[1:])],
            "train_losses": self._train_losses,
            **peak_memory(self.device),
        }

    def write_timing(self) -> Path:
        """Write ``timing_record()`` into the fold's output folder; returns the file."""
        path = Path(self.output_folder) / TIMING_FILE.format(rank=self.local_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.timing_record(), indent=2))
        self.print_to_log_file(f"timed run: {len(self._iteration_marks) - 1} iterations written to {path}")
        return path
