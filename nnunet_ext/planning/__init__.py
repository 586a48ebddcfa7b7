"""Planning our networks for nnU-Net's GPU memory target.

- ``networks``: the plannable networks (UNet3Plus, UNetV2), their width argument and widths;
- ``memory``: nnU-Net's memory reference (planner units <-> GB);
- ``memory_check``: the check our network trainers run in ``initialize``.

Nothing is imported here: ``networks`` stays free of torch for fast argument checks.
"""
