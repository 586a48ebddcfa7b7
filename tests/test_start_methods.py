"""nnU-Net's own training data pipeline with our skeleton transform under every worker start method.

nnU-Net's augmenter starts its workers with Python's default start method: fork on Linux up to
Python 3.13, forkserver from 3.14, spawn on macOS and Windows. Under spawn and forkserver the whole
data loader, our transform included, is pickled into the workers. Each run is a fresh interpreter
that sets the start method before anything starts a process, as a user's Python would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import NnunetWorkspace

SCRIPT = textwrap.dedent('''
    import json, multiprocessing, sys
    from pathlib import Path

    import torch

    from nnunet_ext.trainers import nnUNetTrainerSkeletonRecall


    def main(method: str, preprocessed: str) -> None:
        multiprocessing.set_start_method(method, force=True)
        plans = json.loads((Path(preprocessed) / "nnUNetPlans.json").read_text())
        plans["continue_training"] = False
        dataset_json = json.loads((Path(preprocessed) / "dataset.json").read_text())
        trainer = nnUNetTrainerSkeletonRecall(plans, "2d", 0, dataset_json, device=torch.device("cpu"))
        trainer.initialize()
        train, val = trainer.get_dataloaders()
        try:
            for loader in (train, val):
                batch = next(loader)
                for target in batch["target"]:  # one per deep-supervision scale
                    labels, skeleton = target[:, 0], target[:, 1]
                    assert target.shape[1] == 2, target.shape
                    assert bool(((skeleton > 0) <= (labels > 0)).all()), "tube inside the labels"
                assert bool((batch["target"][0][:, 1] > 0).any()), "a skeleton target exists"
        finally:
            train._finish()
            val._finish()
        print("pipeline ok with", multiprocessing.get_start_method())


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
''')


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_skeleton_recall_data_pipeline_runs_in_workers(nnunet_workspace: NnunetWorkspace, dataset_2d: Path,
                                                       tmp_path: Path, method: str):
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    env = {**nnunet_workspace.env, "nnUNet_results": str(tmp_path / "results"), "nnUNet_n_proc_DA": "1"}
    done = subprocess.run([sys.executable, str(script), method, str(nnunet_workspace.preprocessed / dataset_2d.name)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"pipeline ok with {method}" in done.stdout
