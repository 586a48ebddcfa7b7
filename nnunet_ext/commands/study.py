"""A reproducible topology study through nnU-Net's own commands: does a loss improve connectivity, and by more
than noise?

One command, resumable: write a fixed synthetic thin-structure benchmark (``make-dataset``'s generator),
``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train`` every trainer with the same budget (epochs x iterations;
fold 0), ``nnUNetv2_predict`` the test images, ``nnunet-ext evaluate`` each prediction folder against the
test labels, and ``nnunet-ext compare`` them (first trainer = baseline). Every step leaves its result in the
work folder and is skipped when it is there: finished trainings and predictions are kept, an interrupted
training continues with nnU-Net's ``--c``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from nnunet_ext.commands.nnunet_runs import nnunet_command, trainers_path
from nnunet_ext.commands.short_runs import ShortRun
from nnunet_ext.evaluation.compare.summaries import MERGED_PREFIX, PerCase

if TYPE_CHECKING:
    from nnunet_ext.data.synthetic import TreeParams

STUDY_DATASET_ID = 950
DEFAULT_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerSkeletonRecall", "nnUNetTrainerClDice")
STATE_FILE = "study.json"
MERGED_SUMMARY = "summary_merged_topology.json"  # every class as one foreground
FULL_EPOCHS, FULL_ITERATIONS = 1000, 250  # nnU-Net's own budget
STUDY_TRAINERS_DOCSTRING = "Trainers of `nnunet-ext study` (written by it): the same budget for every trainer."


@dataclass(frozen=True)
class Benchmark:
    """The generated benchmark (``write_raw_dataset`` arguments, hard images with ``ImageParams()`` defaults).

    ``crossing_trees``: artery/vein-like trees, one class per tree, touching and crossing (``CROSSING_TREES``);
    False: ``write_raw_dataset``'s default trees. ``slice_step`` > 1 (3D): thick slices, spacing (1, 1, step).
    """

    dim: int
    size: int
    n_train: int
    n_test: int
    n_classes: int = 1
    seed: int = 2026
    crossing_trees: bool = False
    slice_step: int = 1

    def tree_params(self) -> TreeParams | None:
        """The generator's tree parameters (None: ``write_raw_dataset``'s default)."""
        from nnunet_ext.data.synthetic import CROSSING_TREES

        return CROSSING_TREES if self.crossing_trees else None

    def to_json(self) -> dict:
        """The fields; the later ones only where they differ from their defaults (older study.json files)."""
        record = asdict(self)
        for name, default in (("crossing_trees", False), ("slice_step", 1)):
            if record[name] == default:
                del record[name]
        return record


BENCHMARKS = {
    2: Benchmark(dim=2, size=128, n_train=40, n_test=40),
    # two touching, crossing classes; sized so that the default 3D study fits 150 min on 2 CPU cores (estimated)
    3: Benchmark(dim=3, size=48, n_train=24, n_test=16, n_classes=2, crossing_trees=True),
}
TINY = Benchmark(dim=2, size=32, n_train=5, n_test=6)  # the smoke test's


@dataclass(frozen=True)
class Budget:
    """Every trainer gets the same number of optimisation steps."""

    epochs: int
    iterations: int

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.iterations < 1:
            raise ValueError(f"epochs and iterations must be >= 1, got {self.epochs} x {self.iterations}")


@dataclass(frozen=True)
class StepTimes:
    """Seconds measured on a CPU for one benchmark: to estimate a study's wall time before running it.

    train_step, validation_step: per trainer, one training iteration (nnU-Net's data loaders included) and one
    of nnU-Net's validation iterations (a forward pass of a batch and the loss); predict_case: predicting one
    case, taken as 4 validation steps of the plain trainer (nnU-Net's test-time augmentation in 3D is 8 mirrored
    forward passes of one image, a validation step 1 pass of 2 images); dataset, preprocess: writing the benchmark
    and nnUNetv2_plan_and_preprocess; process_start: starting one nnU-Net command; evaluate_case: `evaluate` of
    one test case.
    """

    train_step: dict[str, float]
    validation_step: dict[str, float]
    predict_case: float
    dataset: float
    preprocess: float
    process_start: float
    evaluate_case: float


NNUNET_VALIDATION_ITERATIONS = 50  # per epoch, kept by the study's trainers
NNUNET_VALIDATION_FRACTION = 0.2  # fold 0 validates a fifth of the training cases


def estimated_minutes(benchmark: Benchmark, budget: Budget, times: StepTimes) -> float:
    """Estimated wall time of a study (every trainer in ``times.train_step``, one repeat), in minutes."""
    validation_cases = round(NNUNET_VALIDATION_FRACTION * benchmark.n_train)
    total = times.dataset + times.preprocess
    for trainer, train_step in times.train_step.items():
        epoch = budget.iterations * train_step + NNUNET_VALIDATION_ITERATIONS * times.validation_step[trainer]
        total += times.process_start + budget.epochs * epoch + validation_cases * times.predict_case  # train
        total += times.process_start + benchmark.n_test * times.predict_case  # nnUNetv2_predict
        total += benchmark.n_test * times.evaluate_case * (2 if benchmark.n_classes > 1 else 1)  # and merged
    return total / 60


# Measured for the default 3D benchmark (48^3, 2 classes) on a 2-core CPU shared with other jobs (load ~6):
# 4 timed training and validation steps per trainer in-process with nnU-Net's data loaders (nnUNet_n_proc_DA=2).
# Writing the 40 cases took 14 s, preprocessing 112 s, the metrics of a case 1.9 s (both classes; merged 0.1 s):
# taken as 2 s per summary; starting an nnU-Net command is taken as 30 s.
MEASURED_3D_CPU = StepTimes(
    train_step={"nnUNetTrainer": 19.0, "nnUNetTrainerSkeletonRecall": 12.3, "nnUNetTrainerClDice": 19.4},
    validation_step={"nnUNetTrainer": 3.2, "nnUNetTrainerSkeletonRecall": 2.1, "nnUNetTrainerClDice": 7.0},
    predict_case=4 * 3.2, dataset=14.0, preprocess=112.0, process_start=30.0, evaluate_case=2.0)

# The same steps for every trainer: 2D fits 2 h for three trainers on a 2-core CPU (measured); 3D: estimated to
# fit 150 min from MEASURED_3D_CPU (not a measured run).
DEFAULT_BUDGETS = {2: Budget(epochs=8, iterations=250), 3: Budget(epochs=2, iterations=60)}
DEFAULT_BUDGET = DEFAULT_BUDGETS[2]
ESTIMATED_CPU_MINUTES = {3: round(estimated_minutes(BENCHMARKS[3], DEFAULT_BUDGETS[3], MEASURED_3D_CPU))}
VALIDATION_SUMMARY = "summary.json"  # nnU-Net writes it last in its final validation


class StudyError(RuntimeError):
    """The study cannot go on: the message names the problem and the fix."""


@dataclass(frozen=True)
class StudySettings:
    """What a work folder was started with; a resumed study must ask for the same."""

    benchmark: Benchmark
    budget: Budget
    trainers: tuple[str, ...]
    device: str
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1 (trainings per trainer), got {self.repeats}")

    def to_json(self) -> dict:
        record = {"benchmark": self.benchmark.to_json(), "budget": asdict(self.budget),
                  "trainers": list(self.trainers), "device": self.device}
        if self.repeats > 1:  # absent in study folders of one repeat (and in those of older versions)
            record["repeats"] = self.repeats
        return record


def configuration_of(benchmark: Benchmark) -> str:
    return "2d" if benchmark.dim == 2 else "3d_fullres"


def study_trainer_name(trainer: str, budget: Budget, repeat: int | None = None) -> str:
    """``<trainer>__study_<E>x<I>``, with ``_seed<repeat>`` for a study of repeats."""
    name = f"{trainer}__study_{budget.epochs}x{budget.iterations}"
    return name if repeat is None else f"{name}_seed{repeat}"


class SeededShortRun(ShortRun):
    """``ShortRun`` that seeds Python, NumPy and torch with ``repeat_seed`` before nnU-Net builds the network and
    its data loaders: each repeat of a study is its own seeded run (nnU-Net itself does not seed)."""

    repeat_seed: ClassVar[int | None] = None

    def initialize(self) -> None:
        if self.repeat_seed is not None:
            import random

            import numpy as np
            import torch

            random.seed(self.repeat_seed)
            np.random.seed(self.repeat_seed)
            torch.manual_seed(self.repeat_seed)
        super().initialize()


def write_study_trainers(folder: Path, trainers: tuple[str, ...], budget: Budget, repeats: int = 1) -> Path:
    """Subclasses of every trainer with the study's budget, in ``folder/study_trainers.py``.

    One repeat: ``<trainer>__study_<E>x<I>`` (``ShortRun``). Repeats: ``<trainer>__study_<E>x<I>_seed<r>`` for
    r = 0..repeats-1 (``SeededShortRun`` with ``repeat_seed = r``); nnU-Net's own budget is kept when ``budget``
    is nnU-Net's (only the seed differs).
    """
    from nnunet_ext.commands.short_runs import ShortTrainer, UnknownTrainerError, write_short_trainers

    if repeats == 1:
        classes = [ShortTrainer(study_trainer_name(trainer, budget), trainer, epochs=budget.epochs,
                                iterations=budget.iterations) for trainer in trainers]
        run_mixin = "nnunet_ext.commands.short_runs.ShortRun"
    else:
        full = budget == Budget(FULL_EPOCHS, FULL_ITERATIONS)
        classes = [ShortTrainer(study_trainer_name(trainer, budget, r), trainer,
                                epochs=None if full else budget.epochs, iterations=None if full else budget.iterations,
                                attributes={"repeat_seed": r}) for trainer in trainers for r in range(repeats)]
        run_mixin = "nnunet_ext.commands.study.SeededShortRun"
    try:
        return write_short_trainers(folder, "study_trainers", classes, STUDY_TRAINERS_DOCSTRING, run_mixin)
    except (UnknownTrainerError, ValueError) as error:  # a name nnU-Net cannot define a trainer class by
        raise StudyError(str(error)) from None


def training_state(fold: Path) -> str:
    """Where a training in ``fold`` (``.../fold_0``) stands: ``finished``; ``validate`` (trained, but its final
    validation is missing or was killed: no ``validation/summary.json``); ``continue`` (a checkpoint to resume
    from); ``start``."""
    if (fold / "checkpoint_final.pth").is_file():
        return "finished" if (fold / "validation" / VALIDATION_SUMMARY).is_file() else "validate"
    return "continue" if (fold / "checkpoint_latest.pth").is_file() else "start"


def software_versions() -> dict[str, str | None]:
    """nnU-Net's, torch's and our version, and the git commit of this checkout (None when not one)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"nnunetv2": installed("nnunetv2"), "torch": torch.__version__, "nnunet_ext": installed("nnunet_ext"),
            "commit": git_commit()}


def git_commit() -> str | None:
    """``git describe --always --dirty`` of the checkout this package runs from; None for an installed wheel."""
    package_root = Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=package_root, capture_output=True,
                             text=True, timeout=10)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != package_root:
            return None
        described = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=package_root,
                                   capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return described.stdout.strip() or None


def merged_dataset_json(dataset_json: dict) -> dict:
    """``dataset_json`` with every foreground class as one region (``vessels``): evaluates the merged tree."""
    classes = sorted(v for k, v in dataset_json["labels"].items() if k not in ("background", "ignore")
                     and isinstance(v, int))
    return {**dataset_json, "labels": {"background": 0, "vessels": classes}, "regions_class_order": [1]}


class Study:
    """The work folder of one study and its steps."""

    def __init__(self, workdir: Path, settings: StudySettings) -> None:
        self.workdir, self.settings = workdir.resolve(), settings
        self.raw, self.preprocessed = self.workdir / "nnUNet_raw", self.workdir / "nnUNet_preprocessed"
        self.results = self.workdir / "nnUNet_results"
        self.log = self.workdir / "study.log"
        self.full = settings.budget == Budget(FULL_EPOCHS, FULL_ITERATIONS)
        self.own_trainers = not self.full or settings.repeats > 1
        folders = [str(trainers_path())]
        if self.own_trainers:
            folders.insert(0, str(self.workdir / "trainers"))
        self.env = {**os.environ, "nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed),
                    "nnUNet_results": str(self.results), "nnUNet_extTrainer": os.pathsep.join(folders),
                    "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "2" if settings.device == "cpu" else "8"),
                    "PYTHONUNBUFFERED": "1"}
        self.started = time.perf_counter()

    # -- bookkeeping -----------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    def claim_workdir(self) -> bool:
        """Record the settings in a new work folder, or check them in an existing one; True when resuming.

        study.json: ``{"settings", "classes", "runs": [{"started", "versions"}], "wall_seconds": {step: s}}``
        (a flat settings dict, as older versions wrote it, is read as ``settings``).
        """
        if self.state_file.is_file():
            recorded = json.loads(self.state_file.read_text())
            settings = recorded.get("settings", recorded) if isinstance(recorded, dict) else recorded
            if settings != self.settings.to_json():
                raise StudyError(f"{self.workdir} holds a study started with other settings ({settings}); resume it "
                                 f"with the same options or choose another --workdir")
            state = recorded if "settings" in recorded else {"settings": recorded}
            resuming = True
        else:
            if self.workdir.exists() and any(self.workdir.iterdir()):
                raise StudyError(f"{self.workdir} exists and is not a study folder (no {STATE_FILE}); choose another "
                                 f"--workdir (nothing there is touched)")
            self.workdir.mkdir(parents=True, exist_ok=True)
            state = {"settings": self.settings.to_json()}
            resuming = False
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        state.setdefault("runs", []).append({"started": started, "versions": software_versions()})
        state.setdefault("wall_seconds", {})
        self.write_state(state)
        return resuming

    def write_state(self, state: dict) -> None:
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def record(self, key: str, value: object = None, seconds: float | None = None) -> None:
        """Store ``value`` under ``key`` in study.json, or add ``seconds`` to the step's wall time."""
        state = json.loads(self.state_file.read_text())
        if seconds is not None:
            times = state.setdefault("wall_seconds", {})
            times[key] = round(times.get(key, 0.0) + seconds, 1)
        else:
            state[key] = value
        self.write_state(state)

    @contextmanager
    def step(self, name: str):
        """Time a step that runs (not one that is kept) into study.json's ``wall_seconds``; also when it fails."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, seconds=time.perf_counter() - start)

    def say(self, message: str) -> None:
        minutes = (time.perf_counter() - self.started) / 60
        print(f"[study {minutes:6.1f} min] {message}", flush=True)

    def run(self, args: list[str], progress: re.Pattern | None = None, total: int | None = None,
            env: dict | None = None) -> None:
        """Run an nnU-Net command, its output into study.log; report lines matching ``progress``."""
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(args)}\n")
            log.flush()
            process = subprocess.Popen(args, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
            for line in process.stdout:
                log.write(line)
                match = progress.search(line) if progress else None
                if match:
                    self.say(f"  epoch {int(match.group(1)) + 1}/{total}")
            code = process.wait()
        if code != 0:
            raise StudyError(f"{args[0]} failed (exit {code}); see {self.log}. Run the same command again to resume")

    # -- steps --------------------------------------------------------------------------------------------------
    @property
    def dataset_folder(self) -> Path:
        return self.raw / f"Dataset{STUDY_DATASET_ID:03d}_TopologyStudy{self.settings.benchmark.dim}D"

    def write_dataset(self) -> None:
        from nnunet_ext.data.synthetic import write_raw_dataset
        from nnunet_ext.data.synthetic_image import ImageParams

        if not (self.dataset_folder / "dataset.json").is_file():
            b = self.settings.benchmark
            self.say(f"dataset: writing {b.n_train} training and {b.n_test} test cases ({b.dim}D, {b.n_classes} "
                     f"class(es), {b.size} voxels per axis, seed {b.seed})")
            with self.step("dataset"):
                write_raw_dataset(self.raw, STUDY_DATASET_ID, self.dataset_folder.name.split("_", 1)[1], b.dim,
                                  n_train=b.n_train, n_test=b.n_test, size=b.size, n_classes=b.n_classes,
                                  seed=b.seed, params=b.tree_params(), image_params=ImageParams(),
                                  slice_step=b.slice_step)  # written aside and moved into place whole
        else:
            self.say(f"dataset: kept {self.dataset_folder}")
        labels = json.loads((self.dataset_folder / "dataset.json").read_text())["labels"]
        self.record("classes", [name for name in labels if name != "background"])

    def plan_and_preprocess(self) -> None:
        configuration = configuration_of(self.settings.benchmark)
        done = self.preprocessed / self.dataset_folder.name / "nnunet_ext_study_preprocessed"
        if done.is_file():
            self.say("plan and preprocess: kept")
            return
        self.say(f"plan and preprocess ({configuration})")
        # nnU-Net's planner hands nnUNet_n_proc_DA to torch.set_num_threads, which refuses 0
        env = {**self.env, "nnUNet_n_proc_DA": "1"} if self.env["nnUNet_n_proc_DA"] == "0" else self.env
        with self.step("plan_and_preprocess"):
            self.run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(STUDY_DATASET_ID), "-c",
                      configuration, "-np", "2", "--verify_dataset_integrity"], env=env)
        done.write_text("nnUNetv2_plan_and_preprocess finished\n")

    def runs(self) -> range:
        """The repeat indices (seeds) of every trainer."""
        return range(self.settings.repeats)

    def label(self, trainer: str, repeat: int) -> str:
        return trainer if self.settings.repeats == 1 else f"{trainer} seed {repeat}"

    def trainer_to_run(self, trainer: str, repeat: int = 0) -> str:
        if self.settings.repeats > 1:
            return study_trainer_name(trainer, self.settings.budget, repeat)
        return trainer if self.full else study_trainer_name(trainer, self.settings.budget)

    def fold_folder(self, trainer: str, repeat: int = 0) -> Path:
        model = f"{self.trainer_to_run(trainer, repeat)}__nnUNetPlans__{configuration_of(self.settings.benchmark)}"
        return self.results / self.dataset_folder.name / model / "fold_0"

    def train(self, trainer: str, repeat: int = 0) -> None:
        """Train fold 0, continue an interrupted training (``--c``), or complete a killed final validation
        (``--val``)."""
        name, state = self.label(trainer, repeat), training_state(self.fold_folder(trainer, repeat))
        if state == "finished":
            self.say(f"train {name}: kept (finished)")
            return
        command = [nnunet_command("nnUNetv2_train"), str(STUDY_DATASET_ID), configuration_of(self.settings.benchmark),
                   "0", "-tr", self.trainer_to_run(trainer, repeat), "-device", self.settings.device]
        budget = self.settings.budget
        with self.step(f"train {name}"):
            if state == "validate":
                self.say(f"train {name}: trained, but its final validation did not finish (no validation/"
                         f"{VALIDATION_SUMMARY}): completing it (--val)")
                self.run([*command, "--val"])
                return
            self.say(f"train {name}: {'continuing' if state == 'continue' else 'starting'} ({budget.epochs} epochs x "
                     f"{budget.iterations} iterations, fold 0, {self.settings.device})")
            self.run([*command, *(["--c"] if state == "continue" else [])],
                     progress=re.compile(r"^\S+ \S+: Epoch (\d+)$"), total=budget.epochs)

    def predictions(self, trainer: str, repeat: int = 0) -> Path:
        folder = self.workdir / "predictions" / trainer
        return folder if self.settings.repeats == 1 else folder / f"seed_{repeat}"

    def predict(self, trainer: str, repeat: int = 0) -> None:
        out, name = self.predictions(trainer, repeat), self.label(trainer, repeat)
        if (out / "nnunet_ext_study_predicted").is_file():
            self.say(f"predict {name}: kept")
            return
        self.say(f"predict {name}: {self.settings.benchmark.n_test} test images")
        # on the CPU nnU-Net's sequential mode: its preprocessing and export workers would each import torch and
        # nnU-Net again (~15 s), more than they overlap with inference that already keeps every core busy
        processes = ["-npp", "0", "-nps", "0"] if self.settings.device == "cpu" else []
        with self.step(f"predict {name}"):
            self.run([nnunet_command("nnUNetv2_predict"), "-i", str(self.dataset_folder / "imagesTs"), "-o", str(out),
                      "-d", str(STUDY_DATASET_ID), "-c", configuration_of(self.settings.benchmark), "-f", "0", "-tr",
                      self.trainer_to_run(trainer, repeat), "-device", self.settings.device, *processes])
        (out / "nnunet_ext_study_predicted").write_text("nnUNetv2_predict finished\n")

    def evaluate(self, trainer: str, repeat: int = 0) -> PerCase:
        """Per-case values: the class average of every metric, and with several classes also ``merged <metric>``
        (all classes as one foreground, as TopCoW scores clDice and Betti-0)."""
        from nnunet_ext.evaluation.compare import load_summary

        folder, name = self.predictions(trainer, repeat), self.label(trainer, repeat)
        dataset_json = json.loads((self.dataset_folder / "dataset.json").read_text())
        jobs = {"summary_topology.json": dataset_json}
        if self.settings.benchmark.n_classes > 1:
            jobs[MERGED_SUMMARY] = merged_dataset_json(dataset_json)
        for file_name, labels in jobs.items():
            if (folder / file_name).is_file():
                self.say(f"evaluate {name} ({file_name}): kept")
                continue
            self.say(f"evaluate {name} ({file_name})")
            with self.step(f"evaluate {name}"):
                self.evaluate_into(folder, labels, folder / file_name)
        values = load_summary(folder / "summary_topology.json")
        if MERGED_SUMMARY in jobs:
            values = with_merged(values, load_summary(folder / MERGED_SUMMARY))
        return values

    def evaluate_into(self, folder: Path, dataset_json: dict, output: Path) -> None:
        from nnunet_ext.evaluation.evaluate import evaluate_folders

        plans = self.preprocessed / self.dataset_folder.name / "nnUNetPlans.json"
        partial = output.with_suffix(".partial.json")  # a killed evaluation leaves no summary behind
        evaluate_folders(self.dataset_folder / "labelsTs", folder, dataset_json, plans, partial, num_processes=2,
                         progress=False, overwrite=True)
        partial.rename(output)

    def compare(self, values: dict[str, list[PerCase]]) -> Path:
        """Compare the trainers (the means over repeats, with the spread between repeats when there are several)."""
        from nnunet_ext.evaluation.compare import (
            compare_repeats,
            compare_summaries,
            markdown_table,
            mean_over_repeats,
            write_comparison,
        )

        with self.step("compare"):
            if self.settings.repeats == 1:
                means = {trainer: runs[0] for trainer, runs in values.items()}
                comparison = compare_summaries(means)
            else:
                means = {trainer: mean_over_repeats(runs) for trainer, runs in values.items()}
                comparison = compare_repeats(values)
            out = self.workdir / "comparison"
            write_comparison(comparison, means, out, overwrite=True)  # derived from the kept summaries
        print("\n" + markdown_table(comparison))
        return out


def with_merged(per_class: PerCase, merged: PerCase) -> PerCase:
    """Each case's class averages and, prefixed ``merged ``, its values on the merged foreground."""
    return {case: {**values, **{MERGED_PREFIX + m: v for m, v in merged.get(case, {}).items()}}
            for case, values in per_class.items()}


def run_study(workdir: Path, settings: StudySettings) -> int:
    """Run (or resume) the whole study; 0 when the comparison is written."""
    study = Study(workdir, settings)
    try:
        resuming = study.claim_workdir()
        repeats = f"; {settings.repeats} repeats (seeds 0..{settings.repeats - 1})" if settings.repeats > 1 else ""
        study.say(f"{'resuming' if resuming else 'starting'} in {study.workdir}: trainers "
                  f"{', '.join(settings.trainers)}; budget {settings.budget.epochs} x {settings.budget.iterations}"
                  f"{repeats}")
        if study.own_trainers:
            write_study_trainers(study.workdir / "trainers", settings.trainers, settings.budget, settings.repeats)
        study.write_dataset()
        study.plan_and_preprocess()
        values: dict[str, list[PerCase]] = {}
        for trainer in settings.trainers:
            for repeat in study.runs():
                study.train(trainer, repeat)
                study.predict(trainer, repeat)
                values.setdefault(trainer, []).append(study.evaluate(trainer, repeat))
        out = study.compare(values)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    study.say(f"done: {out}/comparison.md, .json, .png")
    return 0
