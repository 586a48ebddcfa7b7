"""nnunet-ext plan-network: a CT-sized plan within the memory target, policy, bad input, and one nnUNetv2_train
run on a planned plans file."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_ext.commands.cli import main
from nnunet_ext.networks import UNet3Plus
from nnunet_ext.planning.command import plan_network
from nnunet_ext.planning.memory import REFERENCE_BATCH, REFERENCE_GB, REFERENCE_UNITS, estimated_gb, feature_map_units
from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall, nnUNetTrainerUNet3Plus, nnUNetTrainerUNet3PlusCGM
from tests.conftest import DATASET_2D, NnunetWorkspace

CT = 960  # fingerprint and nnU-Net plans of a CT-sized dataset, no images
NO_FINGERPRINT, NO_PLANS, NO_RAW, RESENC = 961, 962, 963, 964
SMALL_3D = 965  # fingerprint and nnU-Net plans of 32^3 volumes, no images
RESENC_CLASS = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
NNUNET_EXT = str(Path(sys.executable).with_name("nnunet-ext"))
PLAIN_KEYS = {"n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage",
              "n_conv_per_stage_decoder", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs",
              "nonlin", "nonlin_kwargs"}
KEPT_FROM_NNUNET = ("data_identifier", "preprocessor_name", "spacing", "median_image_size_in_voxels",
                    "normalization_schemes", "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs",
                    "resampling_fn_seg", "resampling_fn_seg_kwargs", "batch_dice")


def write_raw(ws: NnunetWorkspace, dataset_id: int, name: str, n_training: int = 20) -> str:
    """A raw dataset.json and one tiny image (nnU-Net's planner reads the raw folder, not the images)."""
    folder_name = f"Dataset{dataset_id:03d}_{name}"
    raw = ws.raw / folder_name
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "vessel": 1}, "numTraining": n_training,
        "file_ending": ".nii.gz"}))
    image = sitk.GetImageFromArray(np.zeros((2, 2, 2), np.float32))
    sitk.WriteImage(image, str(raw / "imagesTr" / "ct_000_0000.nii.gz"))
    return folder_name


def write_ct_fingerprint(folder: Path, n_training: int = 20, shape: tuple[int, ...] = (300, 512, 512),
                         spacing: tuple[float, ...] = (1.0, 0.7, 0.7)) -> None:
    """nnU-Net's fingerprint of n CT volumes (default: 300x512x512 voxels at 1 x 0.7 x 0.7 mm)."""
    folder.mkdir(parents=True, exist_ok=True)
    intensities = {"mean": 100.0, "median": 90.0, "std": 200.0, "min": -1000.0, "max": 3000.0,
                   "percentile_99_5": 1500.0, "percentile_00_5": -900.0}
    (folder / "dataset_fingerprint.json").write_text(json.dumps({
        "spacings": [list(spacing)] * n_training, "shapes_after_crop": [list(shape)] * n_training,
        "foreground_intensity_properties_per_channel": {"0": intensities}, "median_relative_size_after_cropping": 1.0}))


@pytest.fixture(scope="module")
def ct_dataset(nnunet_workspace: NnunetWorkspace) -> Path:
    """nnUNet_preprocessed folder of a CT-sized dataset after nnUNetv2_plan_experiment (no images needed)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset

    name = write_raw(nnunet_workspace, CT, "FakeCT")
    write_ct_fingerprint(nnunet_workspace.preprocessed / name)
    with pytest.MonkeyPatch.context() as env:
        for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
            env.setenv(key, nnunet_workspace.env[key])
        # what nnUNetv2_plan_experiment -d 960 runs; on the meta device its PlainConvUNets cost no memory or
        # initialisation (the estimate is arithmetic), which saves ~10 s of CPU
        with torch.device("meta"):
            plan_experiment_dataset(CT)
    return nnunet_workspace.preprocessed / name


@pytest.fixture
def workspace_env(nnunet_workspace: NnunetWorkspace, monkeypatch) -> NnunetWorkspace:
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(key, nnunet_workspace.env[key])
    return nnunet_workspace


def plan_cli(ws: NnunetWorkspace, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NNUNET_EXT, "plan-network", *args], env=ws.env, capture_output=True, text=True,
                          timeout=300)


def estimate_gb(configuration: dict) -> float:
    """nnU-Net's estimate of a configuration's network at its patch and batch (GB)."""
    architecture = configuration["architecture"]
    units = feature_map_units(architecture["network_class_name"], architecture["arch_kwargs"],
                              architecture["_kw_requires_import"], configuration["patch_size"])
    return estimated_gb(units, configuration["batch_size"], len(configuration["patch_size"]))


def test_ct_sized_unet3plus_plan_fits_where_nnunets_plan_is_far_over(nnunet_workspace: NnunetWorkspace,
                                                                      ct_dataset: Path) -> None:
    result = plan_cli(nnunet_workspace, "-d", str(CT), "-n", "UNet3Plus")
    assert result.returncode == 0, result.stderr
    assert "nnUNetv2_train 960 3d_fullres 0 -p nnUNetPlansUNet3Plus" in result.stdout
    nnunet = json.loads((ct_dataset / "nnUNetPlans.json").read_text())
    ours = json.loads((ct_dataset / "nnUNetPlansUNet3Plus.json").read_text())
    assert ours["plans_name"] == "nnUNetPlansUNet3Plus"
    assert ours["nnunet_ext"]["gpu_memory_target_gb"] == 8.0
    assert list(ours["configurations"]) == list(nnunet["configurations"])

    nnunet_fullres = copy.deepcopy(nnunet["configurations"]["3d_fullres"])
    assert nnunet_fullres["patch_size"] == [96, 160, 160]  # nnU-Net's default for this CT
    nnunet_fullres["architecture"]["network_class_name"] = "nnunet_ext.networks.UNet3Plus"  # cat_channels 64
    assert estimate_gb(nnunet_fullres) > 10 * 8.0

    for name, configuration in ours["configurations"].items():
        if "inherits_from" in configuration:
            continue
        original = nnunet["configurations"][name]
        for key in KEPT_FROM_NNUNET:  # nnUNetv2_preprocess's output is shared
            assert configuration[key] == original[key], (name, key)
        architecture = configuration["architecture"]
        assert architecture["network_class_name"] == "nnunet_ext.networks.UNet3Plus"
        assert set(architecture["arch_kwargs"]) == PLAIN_KEYS | {"cat_channels"}
        assert configuration["batch_size"] >= 2
        assert estimate_gb(configuration) <= 8.0, name
        assert all(o <= n for o, n in zip(configuration["patch_size"], original["patch_size"]))

    # the policy: 2d keeps nnU-Net's 512x512 with a narrower cat_channels; 3D needs the floor and a smaller patch
    assert ours["configurations"]["2d"]["patch_size"] == [512, 512]
    assert 16 <= ours["configurations"]["2d"]["architecture"]["arch_kwargs"]["cat_channels"] < 64
    fullres = ours["configurations"]["3d_fullres"]
    assert fullres["architecture"]["arch_kwargs"]["cat_channels"] == 16
    assert np.prod(fullres["patch_size"]) < np.prod(nnunet_fullres["patch_size"])
    assert ours["configurations"]["3d_cascade_fullres"] == nnunet["configurations"]["3d_cascade_fullres"]
    assert ours["configurations"]["3d_lowres"]["next_stage"] == "3d_cascade_fullres"


def test_unetv2_plan_and_larger_target_keep_nnunets_patch(workspace_env: NnunetWorkspace, ct_dataset: Path) -> None:
    output, decisions = plan_network(str(CT), "UNetV2", 8.0, ["2d"], overwrite=True)
    plans = json.loads(output.read_text())
    assert list(plans["configurations"]) == ["2d"]
    (decision,) = decisions
    assert decision.kept_patch and decision.width == 32 and 2 <= decision.batch_size < decision.nnunet_batch_size
    assert estimate_gb(plans["configurations"]["2d"]) == pytest.approx(decision.estimated_gb)
    assert decision.estimated_gb <= 8.0

    # 200 GB fit the paper's UNet 3+ at nnU-Net's patch; the cascade pulls in its parents
    output, decisions = plan_network(str(CT), "UNet3Plus", 200.0, ["3d_cascade_fullres"], overwrite=True)
    plans = json.loads(output.read_text())
    assert list(plans["configurations"]) == ["3d_lowres", "3d_fullres", "3d_cascade_fullres"]
    assert all(d.kept_patch and d.width == 64 for d in decisions)
    assert plans["configurations"]["3d_fullres"]["batch_size"] == 2  # nnU-Net's, never more


def test_reference_values_are_nnunets(workspace_env: NnunetWorkspace, ct_dataset: Path) -> None:
    from nnunet_ext.planning.networks import NETWORKS
    from nnunet_ext.planning.planner import NetworkPlanner

    planner = NetworkPlanner(CT, NETWORKS["UNet3Plus"])
    assert (planner.UNet_reference_val_2d, planner.UNet_reference_val_3d) == (REFERENCE_UNITS[2], REFERENCE_UNITS[3])
    assert (planner.UNet_reference_val_corresp_bs_2d, planner.UNet_reference_val_corresp_bs_3d) == \
        (REFERENCE_BATCH[2], REFERENCE_BATCH[3])
    assert planner.UNet_reference_val_corresp_GB == REFERENCE_GB


@pytest.fixture(scope="module")
def unready_datasets(nnunet_workspace: NnunetWorkspace, ct_dataset: Path) -> None:
    """961: raw only; 962: fingerprint but no nnUNetPlans.json; 963: planned but its raw folder is gone;
    964: nnUNetPlans.json describes a residual-encoder network."""
    write_raw(nnunet_workspace, NO_FINGERPRINT, "NoFingerprint")
    write_ct_fingerprint(nnunet_workspace.preprocessed / write_raw(nnunet_workspace, NO_PLANS, "NoPlans"))
    no_raw = nnunet_workspace.preprocessed / f"Dataset{NO_RAW:03d}_NoRaw"
    resenc = nnunet_workspace.preprocessed / write_raw(nnunet_workspace, RESENC, "ResEnc")
    for folder in (no_raw, resenc):
        folder.mkdir()
        for name in ("dataset_fingerprint.json", "nnUNetPlans.json", "dataset.json"):
            (folder / name).write_text((ct_dataset / name).read_text())
    plans = json.loads((resenc / "nnUNetPlans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = RESENC_CLASS
    (resenc / "nnUNetPlans.json").write_text(json.dumps(plans))


BAD_INPUT = [
    (["-d", "959", "-n", "UNet3Plus"], 1, "no dataset '959'.*check the id"),
    (["-d", str(NO_FINGERPRINT), "-n", "UNet3Plus"], 1,
     "no dataset_fingerprint.json.*`nnUNetv2_plan_and_preprocess -d 961`.*`nnUNetv2_extract_fingerprint -d 961` and "
     "`nnUNetv2_plan_experiment -d 961`"),
    (["-d", str(NO_PLANS), "-n", "UNet3Plus"], 1, "no nnUNetPlans.json yet.*`nnUNetv2_plan_experiment -d 962`"),
    (["-d", str(NO_RAW), "-n", "UNet3Plus"], 1, "dataset.json not found.*export nnUNet_raw"),
    (["-d", str(RESENC), "-n", "UNet3Plus"], 1, "describes .*ResidualEncoderUNet for '2d', not nnU-Net's default "
                                                "PlainConvUNet; re-create it with nnUNetv2_plan_experiment"),
    (["-d", str(CT), "-n", "UNet4Plus"], 2, "unknown network 'UNet4Plus'; choose one of: UNet3Plus, UNetV2"),
    (["-d", str(CT), "-n", "UNetV2", "-c", "3d_fullres", "3d_highres"], 2,
     "configuration '3d_highres' is not in .*choose from: 2d, 3d_lowres, 3d_fullres, 3d_cascade_fullres"),
    (["-d", str(CT), "-n", "UNetV2", "--gpu-memory-target", "0"], 2, "--gpu-memory-target must be a positive number"),
    (["-d", str(CT), "-n", "UNetV2", "--gpu-memory-target", "-4"], 2, "--gpu-memory-target must be a positive"),
    (["-d", str(CT), "-n", "UNetV2", "--gpu-memory-target", "nan"], 2, "--gpu-memory-target must be a positive"),
]


@pytest.mark.parametrize("args, exit_code, message", BAD_INPUT,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_input_exits_with_one_line_and_writes_nothing(nnunet_workspace: NnunetWorkspace, unready_datasets: None,
                                                          args: list[str], exit_code: int, message: str) -> None:
    before = sorted(p for p in nnunet_workspace.preprocessed.rglob("*"))
    result = plan_cli(nnunet_workspace, *args)
    assert result.returncode == exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert sorted(p for p in nnunet_workspace.preprocessed.rglob("*")) == before


@pytest.fixture(scope="module")
def small_3d_dataset(nnunet_workspace: NnunetWorkspace) -> Path:
    """nnUNet_preprocessed folder of a dataset of 32^3 volumes after nnUNetv2_plan_experiment (no images)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset

    name = write_raw(nnunet_workspace, SMALL_3D, "Small3D", n_training=6)
    write_ct_fingerprint(nnunet_workspace.preprocessed / name, 6, shape=(32, 32, 32), spacing=(1.0, 1.0, 1.0))
    with pytest.MonkeyPatch.context() as env:
        for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            env.setenv(key, nnunet_workspace.env[key])
        with torch.device("meta"):
            plan_experiment_dataset(SMALL_3D)
    return nnunet_workspace.preprocessed / name


@pytest.mark.parametrize("network", ["UNet3Plus", "UNetV2"])
def test_a_target_no_patch_fits_is_refused_with_the_smallest_target_that_fits(
        workspace_env: NnunetWorkspace, small_3d_dataset: Path, network: str, capsys: pytest.CaptureFixture) -> None:
    """Issue 22: nnU-Net's patch search shrank the patch below two stages and the network's constructor raised."""
    def plan(target: str) -> int:
        capsys.readouterr()
        return main(["plan-network", "-d", str(SMALL_3D), "-n", network, "--gpu-memory-target", target,
                     "--overwrite", "-c", "3d_fullres"])

    before = sorted(small_3d_dataset.iterdir())
    assert plan("0.001") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(rf"error: no {network} plan fits --gpu-memory-target 0.001 GB: even the smallest patch .* "
                        r"needs [0-9.e-]+ GB for 3d_fullres; pass --gpu-memory-target [0-9.e-]+ or more "
                        r"\(nothing was written\)", lines[0]), lines[0]
    assert sorted(small_3d_dataset.iterdir()) == before
    smallest = float(re.search(r"pass --gpu-memory-target ([0-9.e-]+) or more", lines[0]).group(1))
    assert smallest > 0.001
    assert plan(f"{smallest * 0.9:g}") == 2  # 2 significant digits, rounded up: 10% less does not fit
    assert plan(f"{smallest:g}") == 0, capsys.readouterr().err
    assert (small_3d_dataset / f"nnUNetPlans{network}.json").is_file()


def test_existing_plans_file_is_refused_without_overwrite(nnunet_workspace: NnunetWorkspace, ct_dataset: Path) -> None:
    existing = ct_dataset / "nnUNetPlansUNetV2.json"
    existing.write_text("{}")
    result = plan_cli(nnunet_workspace, "-d", str(CT), "-n", "UNetV2")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {existing} exists; pass --overwrite to replace it (nothing was written)"
    assert existing.read_text() == "{}"


# --- end to end --------------------------------------------------------------------------------------------------

@pytest.mark.full
def test_planned_plans_train_with_nnunetv2_train(nnunet_workspace: NnunetWorkspace, dataset_2d: Path) -> None:
    result = plan_cli(nnunet_workspace, "-d", str(DATASET_2D), "-n", "UNet3Plus", "-c", "2d", "--overwrite")
    assert result.returncode == 0, result.stderr
    plans = json.loads((nnunet_workspace.preprocessed / dataset_2d.name / "nnUNetPlansUNet3Plus.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["cat_channels"] == 64  # tiny images fit

    # every trainer builds the planned network: stock ones from network_class_name, ours from the plans' width
    configuration = PlansManager(plans).get_configuration("2d")
    trainers = (nnUNetTrainer, nnUNetTrainerSkeletonRecall, nnUNetTrainerUNet3Plus, nnUNetTrainerUNet3PlusCGM)
    for trainer_class in trainers:
        with torch.device("meta"):
            network = trainer_class.build_network_architecture(PlansManager(plans), configuration, 1, 3, True)
        assert isinstance(network, UNet3Plus) and network.cat_channels == 64, trainer_class.__name__

    trainer = "nnUNetTrainerUNet3PlusTiny"
    env = {**nnunet_workspace.env, "NNUNET_EXT_TEST_SKIP_FINAL_VALIDATION": "1", "nnUNet_n_proc_DA": "0"}
    done = subprocess.run([str(Path(sys.executable).with_name("nnUNetv2_train")), str(DATASET_2D), "2d", "0",
                           "-p", "nnUNetPlansUNet3Plus", "-tr", trainer, "-device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    fold = nnunet_workspace.results / dataset_2d.name / f"{trainer}__nnUNetPlansUNet3Plus__2d" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert "nnunet_ext network: UNet3Plus (cat_channels 8)" in log  # the Tiny trainer's class attribute
    assert "target 8.0 GB (recorded by nnunet-ext plan-network)" in log
    assert os.path.isdir(nnunet_workspace.preprocessed / dataset_2d.name / "nnUNetPlans_2d")  # shared data
