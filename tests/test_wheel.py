"""The wheel as a user installs it: nnU-Net trains and predicts with the trainers it ships.

The wheel is built (sdist, then the wheel from it, both through ``twine check --strict``) and installed into a
fresh virtual environment; there, from a folder outside the checkout, ``nnUNetv2_train`` and ``nnUNetv2_predict``
run a short subclass of ``nnunet_ext.trainers.nnUNetTrainerSkeletonRecall`` on the session's tiny 2D dataset,
found through ``nnUNet_extTrainer=$(nnunet-ext trainers-path):<folder of the subclass>``. The test environment's
editable install would hide a wheel that lacks ``trainers/`` or ``transforms/``; this test does not let it.

The fresh environment gets torch, nnU-Net and the other dependencies without a reinstall: the test
environment's site-packages is added *after* its own (a ``.pth`` line). Python processes the ``.pth`` files of
site directories only, not of a path a ``.pth`` line adds, so the editable install of this checkout (a ``.pth``
finder) stays out and ``nnunet_ext`` is the wheel's. (``venv --system-site-packages`` would not do: from a
virtual environment it exposes the base interpreter's site-packages, not the test environment's.)
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.commands.nnunet_runs import nnunet_command
from tests.conftest import DATASET_2D_SMALL, NnunetWorkspace
from tests.test_packaging import REPO, build_distributions, source_version

pytestmark = pytest.mark.full

TRAINER = "nnUNetTrainerSkeletonRecallWheelCheck"
# nnU-Net imports every module of an nnUNet_extTrainer folder as a top-level module: a distinctive name
TRAINER_MODULE = '''\
"""tests/test_wheel.py: Skeleton Recall from the installed wheel, 1 epoch of 2 + 1 iterations, no final validation."""

import torch

import nnunet_ext
import nnunet_ext.trainers
import nnunet_ext.transforms
from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall

print(f"wheel check: nnunet_ext {nnunet_ext.__version__} {nnunet_ext.__file__}", flush=True)
print(f"wheel check: trainers {nnunet_ext.trainers.__file__}", flush=True)
print(f"wheel check: transforms {nnunet_ext.transforms.__file__}", flush=True)


class nnUNetTrainerSkeletonRecallWheelCheck(nnUNetTrainerSkeletonRecall):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    def perform_actual_validation(self, save_probabilities=False):
        self.print_to_log_file("final validation skipped (tests/test_wheel.py)")
'''


def _run(args: list, cwd: Path, env: dict, timeout: int = 600) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed ({result.returncode}):\n{output[-6000:]}"
    return output


def _fresh_environment(root: Path, wheel: Path) -> tuple[Path, Path]:
    """A virtual environment with the wheel installed (no dependencies): its python and its site-packages."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # the test environment's pip installs into the new environment (--python): no pip to bootstrap there
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", wheel], cwd=root, env=os.environ.copy())
    own_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root,
                         env=os.environ.copy()).strip())
    assert own_site.is_relative_to(venv)
    # after installing: pip would otherwise find the editable nnunet_ext through this path and try to remove it
    test_site = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()])
    (own_site / "zz_nnunet_ext_test_environment.pth").write_text("".join(f"{p}\n" for p in test_site))
    return python, own_site


def test_installed_wheel_trains_and_predicts_through_nnunet(tmp_path: Path, nnunet_workspace: NnunetWorkspace,
                                                            dataset_2d_small: Path):
    dists = build_distributions(tmp_path / "build")
    python, venv_site = _fresh_environment(tmp_path, dists.wheel)
    work = tmp_path / "work"  # every command runs here: outside the checkout, nothing of it on sys.path
    work.mkdir()
    assert not work.is_relative_to(REPO)
    installed = venv_site / "nnunet_ext"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"

    # the package, its version and the folders nnU-Net is pointed at: the wheel's, not the checkout's
    located = _run([python, "-c", "import importlib.util as u, nnunet_ext; print(nnunet_ext.__file__); "
                    "print(nnunet_ext.__version__); print(u.find_spec('nnunet_ext.trainers').origin); "
                    "print(u.find_spec('nnunet_ext.transforms').origin)"], cwd=work, env=env).split()
    assert located == [str(installed / "__init__.py"), source_version(), str(installed / "trainers" / "__init__.py"),
                       str(installed / "transforms" / "__init__.py")]
    trainers_path = Path(_run([python.parent / "nnunet-ext", "trainers-path"], cwd=work, env=env).strip())
    assert trainers_path == installed / "trainers"

    own_trainers = tmp_path / "my_trainers"
    own_trainers.mkdir()
    (own_trainers / "nnunet_ext_wheel_check_trainer.py").write_text(TRAINER_MODULE)
    results = tmp_path / "results"
    ws = nnunet_workspace  # the session's planned and preprocessed datasets; results of its own
    env.update({"nnUNet_raw": str(ws.raw), "nnUNet_preprocessed": str(ws.preprocessed), "nnUNet_results": str(results),
                "nnUNet_extTrainer": f"{trainers_path}{os.pathsep}{own_trainers}", "PYTHONUNBUFFERED": "1"})
    dataset = dataset_2d_small

    # nnU-Net's own console scripts, run by the fresh environment's python; the data loader in the training
    # process (3 batches do not pay for starting workers), nnUNetv2_predict without worker processes
    train = _run([python, nnunet_command("nnUNetv2_train"), DATASET_2D_SMALL, "2d", "0", "-tr", TRAINER,
                  "-device", "cpu"], cwd=work, env={**env, "nnUNet_n_proc_DA": "0"})
    for line in (f"nnunet_ext {source_version()} {installed / '__init__.py'}",
                 f"trainers {installed / 'trainers' / '__init__.py'}",
                 f"transforms {installed / 'transforms' / '__init__.py'}"):
        assert f"wheel check: {line}" in train, train[-4000:]
    fold = results / dataset.name / f"{TRAINER}__nnUNetPlans__2d" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()

    out = tmp_path / "predictions"
    _run([python, nnunet_command("nnUNetv2_predict"), "-i", dataset / "imagesTs", "-o", out, "-d", DATASET_2D_SMALL,
          "-c", "2d", "-f", "0", "-tr", TRAINER, "-device", "cpu", "-npp", "0", "-nps", "0"], cwd=work, env=env)
    images = sorted((dataset / "imagesTs").glob("*_0000.nii.gz"))
    assert images
    for image in images:
        prediction = out / image.name.replace("_0000.nii.gz", ".nii.gz")
        assert prediction.is_file(), f"missing prediction {prediction}"
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(prediction)))
        assert labels.shape == sitk.GetArrayFromImage(sitk.ReadImage(str(image))).shape
        assert set(np.unique(labels).tolist()) <= {0, 1, 2}
