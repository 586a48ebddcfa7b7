"""nnunet_ext: topology-aware losses, networks and trainers as a plugin for stock nnU-Net v2.

The trainers live in ``nnunet_ext.trainers``; nnU-Net finds them through ``nnUNet_extTrainer``
(``export nnUNet_extTrainer=$(nnunet-ext trainers-path)``). This module imports nothing heavy.
"""

__version__ = "0.1.0"  # the package's only version string: pyproject.toml reads it (setuptools dynamic version)
