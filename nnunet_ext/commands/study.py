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
from dataclasses import asdict, dataclass
from pathlib import Path

from nnunet_ext.commands.nnunet_runs import nnunet_command, trainers_path

STUDY_DATASET_ID = 950
DEFAULT_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerSkeletonRecall", "nnUNetTrainerClDice")
STATE_FILE = "study.json"
FULL_EPOCHS, FULL_ITERATIONS = 1000, 250  # nnU-Net's own budget
STUDY_TRAINERS_DOCSTRING = "Trainers of `nnunet-ext study` (written by it): the same budget for every trainer."


@dataclass(frozen=True)
class Benchmark:
    """The generated benchmark (``write_raw_dataset`` arguments, hard images with ``ImageParams()`` defaults)."""

    dim: int
    size: int
    n_train: int
    n_test: int
    n_classes: int = 1
    seed: int = 2026


BENCHMARKS = {
    2: Benchmark(dim=2, size=128, n_train=40, n_test=40),
    3: Benchmark(dim=3, size=64, n_train=30, n_test=40),
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


DEFAULT_BUDGET = Budget(epochs=8, iterations=250)  # fits 2 h for three trainers on a 2-core CPU (2D)


class StudyError(RuntimeError):
    """The study cannot go on: the message names the problem and the fix."""


@dataclass(frozen=True)
class StudySettings:
    """What a work folder was started with; a resumed study must ask for the same."""

    benchmark: Benchmark
    budget: Budget
    trainers: tuple[str, ...]
    device: str

    def to_json(self) -> dict:
        return {"benchmark": asdict(self.benchmark), "budget": asdict(self.budget), "trainers": list(self.trainers),
                "device": self.device}


def configuration_of(benchmark: Benchmark) -> str:
    return "2d" if benchmark.dim == 2 else "3d_fullres"


def study_trainer_name(trainer: str, budget: Budget) -> str:
    return f"{trainer}__study_{budget.epochs}x{budget.iterations}"


def write_study_trainers(folder: Path, trainers: tuple[str, ...], budget: Budget) -> Path:
    """Short-budget subclasses ``<trainer>__study_<E>x<I>`` of every trainer, in ``folder/study_trainers.py``."""
    from nnunet_ext.commands.short_runs import ShortTrainer, UnknownTrainerError, write_short_trainers

    classes = [ShortTrainer(study_trainer_name(trainer, budget), trainer, epochs=budget.epochs,
                            iterations=budget.iterations) for trainer in trainers]
    try:
        return write_short_trainers(folder, "study_trainers", classes, STUDY_TRAINERS_DOCSTRING)
    except (UnknownTrainerError, ValueError) as error:  # a name nnU-Net cannot define a trainer class by
        raise StudyError(str(error)) from None


class Study:
    """The work folder of one study and its steps."""

    def __init__(self, workdir: Path, settings: StudySettings) -> None:
        self.workdir, self.settings = workdir.resolve(), settings
        self.raw, self.preprocessed = self.workdir / "nnUNet_raw", self.workdir / "nnUNet_preprocessed"
        self.results = self.workdir / "nnUNet_results"
        self.log = self.workdir / "study.log"
        self.full = settings.budget == Budget(FULL_EPOCHS, FULL_ITERATIONS)
        folders = [str(trainers_path())]
        if not self.full:
            folders.insert(0, str(self.workdir / "trainers"))
        self.env = {**os.environ, "nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed),
                    "nnUNet_results": str(self.results), "nnUNet_extTrainer": os.pathsep.join(folders),
                    "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "2" if settings.device == "cpu" else "8"),
                    "PYTHONUNBUFFERED": "1"}
        self.started = time.perf_counter()

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def claim_workdir(self) -> bool:
        """Record the settings in a new work folder, or check them in an existing one; True when resuming."""
        state = self.workdir / STATE_FILE
        if state.is_file():
            recorded = json.loads(state.read_text())
            if recorded != self.settings.to_json():
                raise StudyError(f"{self.workdir} holds a study started with other settings ({recorded}); resume it "
                                 f"with the same options or choose another --workdir")
            return True
        if self.workdir.exists() and any(self.workdir.iterdir()):
            raise StudyError(f"{self.workdir} exists and is not a study folder (no {STATE_FILE}); choose another "
                             f"--workdir (nothing there is touched)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(self.settings.to_json(), indent=2) + "\n")
        return False

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

        if (self.dataset_folder / "dataset.json").is_file():
            self.say(f"dataset: kept {self.dataset_folder}")
            return
        b = self.settings.benchmark
        self.say(f"dataset: writing {b.n_train} training and {b.n_test} test cases ({b.dim}D, {b.size} voxels per "
                 f"axis, seed {b.seed})")
        write_raw_dataset(self.raw, STUDY_DATASET_ID, self.dataset_folder.name.split("_", 1)[1], b.dim,
                          n_train=b.n_train, n_test=b.n_test, size=b.size, n_classes=b.n_classes, seed=b.seed,
                          image_params=ImageParams())  # written aside and moved into place whole

    def plan_and_preprocess(self) -> None:
        configuration = configuration_of(self.settings.benchmark)
        done = self.preprocessed / self.dataset_folder.name / "nnunet_ext_study_preprocessed"
        if done.is_file():
            self.say("plan and preprocess: kept")
            return
        self.say(f"plan and preprocess ({configuration})")
        # nnU-Net's planner hands nnUNet_n_proc_DA to torch.set_num_threads, which refuses 0
        env = {**self.env, "nnUNet_n_proc_DA": "1"} if self.env["nnUNet_n_proc_DA"] == "0" else self.env
        self.run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(STUDY_DATASET_ID), "-c", configuration,
                  "-np", "2", "--verify_dataset_integrity"], env=env)
        done.write_text("nnUNetv2_plan_and_preprocess finished\n")

    def trainer_to_run(self, trainer: str) -> str:
        return trainer if self.full else study_trainer_name(trainer, self.settings.budget)

    def fold_folder(self, trainer: str) -> Path:
        model = f"{self.trainer_to_run(trainer)}__nnUNetPlans__{configuration_of(self.settings.benchmark)}"
        return self.results / self.dataset_folder.name / model / "fold_0"

    def train(self, trainer: str) -> None:
        fold = self.fold_folder(trainer)
        if (fold / "checkpoint_final.pth").is_file():
            self.say(f"train {trainer}: kept (finished)")
            return
        resume = (fold / "checkpoint_latest.pth").is_file()
        self.say(f"train {trainer}: {'continuing' if resume else 'starting'} ({self.settings.budget.epochs} epochs x "
                 f"{self.settings.budget.iterations} iterations, fold 0, {self.settings.device})")
        self.run([nnunet_command("nnUNetv2_train"), str(STUDY_DATASET_ID), configuration_of(self.settings.benchmark),
                  "0", "-tr", self.trainer_to_run(trainer), "-device", self.settings.device,
                  *(["--c"] if resume else [])], progress=re.compile(r"^\S+ \S+: Epoch (\d+)$"),
                 total=self.settings.budget.epochs)

    def predictions(self, trainer: str) -> Path:
        return self.workdir / "predictions" / trainer

    def predict(self, trainer: str) -> None:
        out = self.predictions(trainer)
        if (out / "nnunet_ext_study_predicted").is_file():
            self.say(f"predict {trainer}: kept")
            return
        self.say(f"predict {trainer}: {self.settings.benchmark.n_test} test images")
        processes = ["-npp", "1", "-nps", "1"] if self.settings.device == "cpu" else []
        self.run([nnunet_command("nnUNetv2_predict"), "-i", str(self.dataset_folder / "imagesTs"), "-o", str(out),
                  "-d", str(STUDY_DATASET_ID), "-c", configuration_of(self.settings.benchmark), "-f", "0", "-tr",
                  self.trainer_to_run(trainer), "-device", self.settings.device, *processes])
        (out / "nnunet_ext_study_predicted").write_text("nnUNetv2_predict finished\n")

    def evaluate(self, trainer: str) -> Path:
        from nnunet_ext.evaluation.evaluate import DEFAULT_OUTPUT_NAME, evaluate_folders

        summary = self.predictions(trainer) / DEFAULT_OUTPUT_NAME
        if summary.is_file():
            self.say(f"evaluate {trainer}: kept")
            return summary
        self.say(f"evaluate {trainer}")
        plans = self.preprocessed / self.dataset_folder.name / "nnUNetPlans.json"
        evaluate_folders(self.dataset_folder / "labelsTs", self.predictions(trainer),
                         self.dataset_folder / "dataset.json", plans, summary, num_processes=2, progress=False)
        return summary

    def compare(self, summaries: dict[str, Path]) -> Path:
        from nnunet_ext.evaluation.compare import compare_summaries, load_summary, markdown_table, write_comparison

        values = {trainer: load_summary(path) for trainer, path in summaries.items()}
        comparison = compare_summaries(values)
        out = self.workdir / "comparison"
        write_comparison(comparison, values, out, overwrite=True)  # derived from the kept summaries
        print("\n" + markdown_table(comparison))
        return out


def run_study(workdir: Path, settings: StudySettings) -> int:
    """Run (or resume) the whole study; 0 when the comparison is written."""
    study = Study(workdir, settings)
    try:
        resuming = study.claim_workdir()
        study.say(f"{'resuming' if resuming else 'starting'} in {study.workdir}: trainers "
                  f"{', '.join(settings.trainers)}; budget {settings.budget.epochs} x {settings.budget.iterations}")
        if not study.full:
            write_study_trainers(study.workdir / "trainers", settings.trainers, settings.budget)
        study.write_dataset()
        study.plan_and_preprocess()
        summaries = {}
        for trainer in settings.trainers:
            study.train(trainer)
            study.predict(trainer)
            summaries[trainer] = study.evaluate(trainer)
        out = study.compare(summaries)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    study.say(f"done: {out}/comparison.md, .json, .png")
    return 0
