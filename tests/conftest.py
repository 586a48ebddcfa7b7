"""Shared fixtures: one nnU-Net workspace per test session, tiny synthetic datasets planned once.

Integration tests call nnU-Net's real console scripts (nnUNetv2_train, nnUNetv2_predict, ...) in subprocesses,
exactly as a user does, or its Python API in the test process where a subprocess is not the point (planning
and preprocessing the test datasets, the compiled matrix's trainings). Planned and preprocessed datasets are
kept in pytest's cache (``.pytest_cache``), keyed by the nnunetv2 version, the generator's settings and source,
so a second test session copies them instead of planning again.

Tiers: ``make test`` runs everything not marked ``full``; ``make test-all`` runs everything.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from nnunet_ext.commands.nnunet_runs import nnunet_command, trainers_path

TEST_TRAINERS = Path(__file__).parent / "nnunet_trainers"
DATASET_2D = 901  # 2 classes + ignore label, 2d configuration
DATASET_3D = 902  # 1 class, 3d_fullres
DATASET_2D_SMALL = 906  # 2 classes, 16x16 images: 3-stage networks (the torch.compile runs compile ~30% less)

# Property tests (hypothesis profiles, chosen by the Makefile): few examples in the fast tier (make test), each
# test's own number in the full one (make test-all).
settings.register_profile("fast", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("full", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class NnunetWorkspace:
    """nnUNet_raw / _preprocessed / _results of a test session and the environment to run nnU-Net in."""

    root: Path
    raw: Path
    preprocessed: Path
    results: Path
    env: dict

    def run(self, command: str, *args: str, extra_env: dict | None = None,
            timeout: int = 900) -> subprocess.CompletedProcess:
        """Run an nnU-Net console script; fail the test with its output if it fails."""
        env = {**self.env, **(extra_env or {})}
        result = subprocess.run([nnunet_command(command), *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"{command} {' '.join(args)} failed with exit code {result.returncode}\n"
                        f"--- stdout (tail) ---\n{result.stdout[-4000:]}\n--- stderr (tail) ---\n"
                        f"{result.stderr[-6000:]}")
        return result

    def plans(self, dataset_folder_name: str) -> dict:
        return json.loads((self.preprocessed / dataset_folder_name / "nnUNetPlans.json").read_text())


def plan_and_preprocess(ws: NnunetWorkspace, dataset_id: int, configurations: tuple[str, ...],
                        verify: bool = False, edit_plans: Callable[[dict], None] | None = None) -> None:
    """nnU-Net's planning and preprocessing of a test dataset, with a cheaper fingerprint.

    nnU-Net's fingerprint samples 1e8 foreground voxels for its intensity statistics whatever the dataset's
    size (~40 s on 2 cores); our images are z-scored, which does not use them, so 1e4 samples do. The
    fingerprint, nnU-Net's experiment planning, ``edit_plans(plans)`` if given, and its preprocessing run
    through nnU-Net's Python API (what nnUNetv2_plan_experiment and nnUNetv2_preprocess call) in this process:
    each command would import torch and nnU-Net again (~15 s). (The demo and study tests run
    nnUNetv2_plan_and_preprocess itself.)
    """
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiments, preprocess
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    with pytest.MonkeyPatch.context() as env:
        env.setenv("nnUNet_raw", str(ws.raw))
        env.setenv("nnUNet_preprocessed", str(ws.preprocessed))
        if verify:
            verify_dataset_integrity(str(next(ws.raw.glob(f"Dataset{dataset_id:03d}_*"))), num_processes=1)
        extractor = DatasetFingerprintExtractor(dataset_id, num_processes=1)
        extractor.num_foreground_voxels_for_intensitystats = 10_000
        extractor.run()
        plan_experiments([dataset_id])
        if edit_plans is not None:
            plans_file = next(ws.preprocessed.glob(f"Dataset{dataset_id:03d}_*")) / "nnUNetPlans.json"
            plans = json.loads(plans_file.read_text())
            edit_plans(plans)
            plans_file.write_text(json.dumps(plans, indent=2))
        preprocess([dataset_id], configurations=configurations,
                   num_processes=[2 if len(configurations) == 1 else 1] * len(configurations),
                   show_progress_bar=False)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker gets its share of the cores: torch's intra-op threads (and those of the
    nnU-Net processes it starts) spin-wait when more threads than cores compete, which costs far more than it
    gains on tiny tensors."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def nnunet_workspace(tmp_path_factory) -> NnunetWorkspace:
    root = tmp_path_factory.mktemp("nnunet")
    raw, preprocessed, results = root / "raw", root / "preprocessed", root / "results"
    for folder in (raw, preprocessed, results):
        folder.mkdir()
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(results),
           "nnUNet_extTrainer": os.pathsep.join([str(TEST_TRAINERS), str(trainers_path())]),
           # 2 cores: two augmentation workers; one export worker (nnU-Net spawns 8 by default)
           "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "1", "PYTHONUNBUFFERED": "1",
           # torch.compile runs of the same network (several trainers) share their compiled graphs
           "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor_cache")}
    return NnunetWorkspace(root, raw, preprocessed, results, env)


@pytest.fixture(scope="session")
def dataset_cache(pytestconfig: pytest.Config) -> Path | None:
    """Folder of planned and preprocessed test datasets kept between test sessions (None without pytest's cache)."""
    cache = getattr(pytestconfig, "cache", None)
    return None if cache is None else cache.mkdir("nnunet_ext_datasets")


def _dataset_key(dataset_id: int, configurations: tuple[str, ...], write_kwargs: dict, verify: bool,
                 edit_plans: Callable[[dict], None] | None) -> str:
    """What the planned dataset depends on: nnU-Net's version, the generator and planning code, the settings."""
    from nnunet_ext.data import synthetic, synthetic_image

    parts = [version("nnunetv2"), inspect.getsource(synthetic), inspect.getsource(synthetic_image),
             inspect.getsource(plan_and_preprocess), inspect.getsource(edit_plans) if edit_plans else "",
             json.dumps([dataset_id, configurations, verify, write_kwargs], sort_keys=True, default=repr)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def prepared_dataset(ws: NnunetWorkspace, cache: Path | None, dataset_id: int, name: str,
                     configurations: tuple[str, ...], verify: bool = False,
                     edit_plans: Callable[[dict], None] | None = None, **write_kwargs) -> Path:
    """A synthetic raw dataset (``write_raw_dataset(..., **write_kwargs)``) planned and preprocessed in ``ws``.

    Copied from ``cache`` when an earlier session prepared the same one; otherwise written, planned with
    ``plan_and_preprocess`` and stored there. Returns the raw dataset folder.
    """
    from nnunet_ext.data.synthetic import write_raw_dataset

    folder_name = f"Dataset{dataset_id:03d}_{name}"
    if cache is None:
        folder = write_raw_dataset(ws.raw, dataset_id, name, **write_kwargs)
        plan_and_preprocess(ws, dataset_id, configurations, verify=verify, edit_plans=edit_plans)
        return folder
    stored = cache / f"{folder_name}-{_dataset_key(dataset_id, configurations, write_kwargs, verify, edit_plans)}"
    # one writer at a time: the other pytest-xdist worker waits here, then copies what the first one stored
    with open(cache / f"{stored.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stored.is_dir():
            folder = write_raw_dataset(ws.raw, dataset_id, name, **write_kwargs)
            plan_and_preprocess(ws, dataset_id, configurations, verify=verify, edit_plans=edit_plans)
            partial = stored.with_name(stored.name + ".partial")  # a session stopped half-way leaves no entry
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(folder, partial / "raw")
            shutil.copytree(ws.preprocessed / folder_name, partial / "preprocessed")
            partial.rename(stored)
            return folder
    shutil.copytree(stored / "raw", ws.raw / folder_name)
    shutil.copytree(stored / "preprocessed", ws.preprocessed / folder_name)
    return ws.raw / folder_name


@pytest.fixture(scope="session")
def dataset_2d(nnunet_workspace: NnunetWorkspace, dataset_cache: Path | None) -> Path:
    """Raw folder of a 2D dataset with two vessel classes and an ignore label, planned and preprocessed."""
    return prepared_dataset(nnunet_workspace, dataset_cache, DATASET_2D, "Vessels2D", ("2d",), verify=True,
                            dim=2, n_train=6, n_test=2, size=64, n_classes=2, ignore_label=True, seed=10)


@pytest.fixture(scope="session")
def dataset_3d(nnunet_workspace: NnunetWorkspace, dataset_cache: Path | None) -> Path:
    """Raw folder of a 3D dataset planned and preprocessed for 3d_fullres (3d_lowres: tests/test_cascade.py)."""
    return prepared_dataset(nnunet_workspace, dataset_cache, DATASET_3D, "Vessels3D", ("3d_fullres",),
                            verify=True, dim=3, n_train=6, n_test=2, size=32, seed=20)


@pytest.fixture(scope="session")
def dataset_2d_small(nnunet_workspace: NnunetWorkspace, dataset_cache: Path | None) -> Path:
    """Raw folder of a 2D dataset of 16x16 images with two vessel classes, planned and preprocessed (2d)."""
    return prepared_dataset(nnunet_workspace, dataset_cache, DATASET_2D_SMALL, "Vessels2DSmall", ("2d",),
                            dim=2, n_train=5, n_test=1, size=16, n_classes=2, seed=50)


@pytest.fixture
def single_torch_thread():
    """For tests on tiny tensors: intra-op threading only adds overhead (ms per op on small CPUs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trainer_env(nnunet_workspace: NnunetWorkspace, tmp_path: Path, monkeypatch) -> NnunetWorkspace:
    """In-process nnU-Net paths: the session's preprocessed data, results in a private folder."""
    monkeypatch.setenv("nnUNet_preprocessed", str(nnunet_workspace.preprocessed))
    monkeypatch.setenv("nnUNet_raw", str(nnunet_workspace.raw))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # single-threaded loader in this process
    return nnunet_workspace


def make_trainer(ws: NnunetWorkspace, dataset_folder: Path, trainer_class: type | None = None,
                 dataset_json: dict | None = None, configuration: str = "2d"):
    """A trainer (default: Skeleton Recall) for a configuration of a preprocessed test dataset, on the CPU."""
    import torch

    from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall

    trainer_class = trainer_class or nnUNetTrainerSkeletonRecall
    plans = ws.plans(dataset_folder.name)
    plans["continue_training"] = False  # what nnUNetv2_train puts in
    dataset_json = dataset_json or json.loads((ws.preprocessed / dataset_folder.name / "dataset.json").read_text())
    return trainer_class(plans, configuration, 0, dataset_json, device=torch.device("cpu"))


# pytest-xdist (`-n 2 --dist loadfile --no-loadscope-reorder`): the tests of one file run on one worker, so module
# fixtures are built once and nnUNetv2_find_best_configuration finds the compiled runs' folds. (pytest-xdist 3.8's
# `loadgroup` has no effect with pytest 9.2: it renames `item._nodeid`, which pytest 9.2 no longer reads.) The
# files are handed out in collection order (without --no-loadscope-reorder xdist would order them by their number
# of tests), so the long ones are collected first, longest first (measured per file in a full run), and the short
# files fill in at the end: the two workers finish together.
LONG_FILES = ("test_compiled_networks.py", "test_study.py", "test_nnunet_cli.py", "test_compiled_losses.py",
              "test_cli.py", "test_cascade.py", "test_start_methods.py", "test_gpu_check.py", "test_regions.py",
              "test_label_problems.py", "test_evaluate.py", "test_wheel.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: a file's tests keep their order
