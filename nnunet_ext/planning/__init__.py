"""Planning our networks for nnU-Net's GPU memory target (``nnunet-ext plan-network``).

- ``networks``: the plannable networks (UNet3Plus, UNetV2), their width argument and widths;
- ``memory``: nnU-Net's memory reference (planner units <-> GB);
- ``planner``: ``NetworkPlanner``, an nnU-Net ``ExperimentPlanner`` on top of nnU-Net's default plans;
- ``memory_check``: the check our network trainers run in ``initialize``;
- ``command``: the ``plan-network`` command (input checks, summary).

Nothing is imported here, so that the command's argument checks stay fast (no torch import).
"""
