"""The ``nnunet-ext`` command line and the end-to-end runs it starts through nnU-Net's own commands (demo,
study, timed runs)."""
