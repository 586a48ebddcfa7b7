"""nnU-Net's own training data pipeline with our extra-target transforms under every worker start method.

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
from tests.trainer_matrix import TRAINERS

# full tier: a fresh interpreter per start method, each starting nnU-Net's data-loader workers
pytestmark = pytest.mark.full

SCRIPT = textwrap.dedent('''
    import json, multiprocessing, sys
    from pathlib import Path


    def check(preprocessed: str, trainer_name: str) -> None:
        # imported here, not at the top: spawned workers re-import this module and need only what is pickled
        import torch

        import nnunet_ext.trainers as trainers

        plans = json.loads((Path(preprocessed) / "nnUNetPlans.json").read_text())
        plans["continue_training"] = False
        dataset_json = json.loads((Path(preprocessed) / "dataset.json").read_text())
        trainer = getattr(trainers, trainer_name)(plans, "2d", 0, dataset_json, device=torch.device("cpu"))
        trainer.initialize()
        layout = trainer.target_layout()
        train, val = trainer.get_dataloaders()
        try:
            for loader in (train, val):
                batch = next(loader)
                for target in batch["target"]:  # one per deep-supervision scale
                    assert target.shape[1] == layout.channels, (target.shape, layout)
                    labels, extra = target[:, 0], target[:, layout.slice(layout.names[1])]
                    if "skeleton" in layout:
                        assert bool(((extra[:, 0] > 0) <= (labels > 0)).all()), "tube inside the labels"
                    assert bool(torch.isfinite(extra).all() and (extra >= 0).all())
                assert bool((batch["target"][0][:, 1] > 0).any()), "an extra target exists"
        finally:
            train._finish()
            val._finish()
        print(trainer_name, "pipeline ok with", multiprocessing.get_start_method())


    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        for name in sys.argv[3:]:
            check(sys.argv[2], name)
''')


# one trainer per extra target (the first in the matrix): the skeleton under every start method, all of them under
# spawn (one interpreter for the three: each costs its workers' start-up only)
EXTRA_TARGETS = {case.extra_target: case.name for case in reversed(TRAINERS) if case.extra_target}
TRAINERS_BY_METHOD = {"fork": [EXTRA_TARGETS["skeleton"]], "forkserver": [EXTRA_TARGETS["skeleton"]],
                      "spawn": sorted(EXTRA_TARGETS.values())}


@pytest.mark.parametrize("method", list(TRAINERS_BY_METHOD))
def test_extra_target_data_pipelines_run_in_workers(nnunet_workspace: NnunetWorkspace, dataset_2d: Path,
                                                    tmp_path: Path, method: str):
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    env = {**nnunet_workspace.env, "nnUNet_results": str(tmp_path / "results"), "nnUNet_n_proc_DA": "1"}
    trainers = TRAINERS_BY_METHOD[method]
    done = subprocess.run([sys.executable, str(script), method, str(nnunet_workspace.preprocessed / dataset_2d.name),
                           *trainers], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for trainer in trainers:
        assert f"{trainer} pipeline ok with {method}" in done.stdout
