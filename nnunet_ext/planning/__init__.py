"""Planning our networks for nnU-Net's GPU memory target.

- ``memory``: nnU-Net's memory reference (planner units <-> GB).
"""
