"""Shared fixtures: one nnU-Net workspace per test session, tiny synthetic datasets planned once.

Integration tests call nnU-Net's real console scripts (nnUNetv2_plan_experiment, nnUNetv2_preprocess,
nnUNetv2_train, nnUNetv2_predict) in subprocesses, exactly as a user does.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nnunet_ext.commands.nnunet_runs import nnunet_command, trainers_path
from nnunet_ext.data.synthetic import write_raw_dataset

TEST_TRAINERS = Path(__file__).parent / "nnunet_trainers"
DATASET_2D = 901  # 2 classes + ignore label, 2d configuration
DATASET_3D = 902  # 1 class, 3d_fullres and a hand-made 3d_lowres configuration
DATASET_2D_SMALL = 906  # 2 classes, 32x32 images: 4-stage networks for the torch.compile runs


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
    fingerprint runs in this process, then nnUNetv2_plan_experiment, ``edit_plans(plans)`` if given, and
    nnUNetv2_preprocess run as a user runs them. (The demo test runs nnUNetv2_plan_and_preprocess itself.)
    """
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    with pytest.MonkeyPatch.context() as env:
        env.setenv("nnUNet_raw", str(ws.raw))
        env.setenv("nnUNet_preprocessed", str(ws.preprocessed))
        if verify:
            verify_dataset_integrity(str(next(ws.raw.glob(f"Dataset{dataset_id:03d}_*"))), num_processes=1)
        extractor = DatasetFingerprintExtractor(dataset_id, num_processes=1)
        extractor.num_foreground_voxels_for_intensitystats = 10_000
        extractor.run()
    ws.run("nnUNetv2_plan_experiment", "-d", str(dataset_id))
    if edit_plans is not None:
        plans_file = next(ws.preprocessed.glob(f"Dataset{dataset_id:03d}_*")) / "nnUNetPlans.json"
        plans = json.loads(plans_file.read_text())
        edit_plans(plans)
        plans_file.write_text(json.dumps(plans, indent=2))
    ws.run("nnUNetv2_preprocess", "-d", str(dataset_id), "-c", *configurations, "-np",
           *["2" if len(configurations) == 1 else "1"] * len(configurations))


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
def dataset_2d(nnunet_workspace: NnunetWorkspace) -> Path:
    """Raw folder of a 2D dataset with two vessel classes and an ignore label, planned and preprocessed."""
    folder = write_raw_dataset(nnunet_workspace.raw, DATASET_2D, "Vessels2D", dim=2, n_train=6, n_test=2,
                               size=64, n_classes=2, ignore_label=True, seed=10)
    plan_and_preprocess(nnunet_workspace, DATASET_2D, ("2d",), verify=True)
    return folder


@pytest.fixture(scope="session")
def dataset_3d(nnunet_workspace: NnunetWorkspace) -> Path:
    """Raw folder of a 3D dataset preprocessed for 3d_fullres and for an added 3d_lowres configuration."""
    folder = write_raw_dataset(nnunet_workspace.raw, DATASET_3D, "Vessels3D", dim=3, n_train=6, n_test=2,
                               size=32, seed=20)

    def add_lowres(plans: dict) -> None:
        # Tiny images never get a 3d_lowres configuration from the planner; add one the way
        # nnU-Net's plans allow (inherit 3d_fullres, coarser spacing).
        plans["configurations"]["3d_lowres"] = {
            "inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_3d_lowres", "spacing": [1.6, 1.6, 1.6],
            "median_image_size_in_voxels": [20, 20, 20], "patch_size": [24, 24, 24]}

    plan_and_preprocess(nnunet_workspace, DATASET_3D, ("3d_fullres", "3d_lowres"), verify=True, edit_plans=add_lowres)
    return folder


@pytest.fixture(scope="session")
def dataset_2d_small(nnunet_workspace: NnunetWorkspace) -> Path:
    """Raw folder of a 2D dataset of 32x32 images with two vessel classes, planned and preprocessed (2d)."""
    folder = write_raw_dataset(nnunet_workspace.raw, DATASET_2D_SMALL, "Vessels2DSmall", dim=2, n_train=5, n_test=1,
                               size=32, n_classes=2, seed=50)
    plan_and_preprocess(nnunet_workspace, DATASET_2D_SMALL, ("2d",))
    return folder


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
