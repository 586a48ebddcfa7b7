"""GPU check: s/iteration and peak GPU memory of every nnunet_ext trainer next to stock nnU-Net, one command.

    python benchmarks/gpu_check.py --help

The code is the package benchmarks/gpu_check/ (its docstring and --help say what the check does); this script only
runs it: a script's own folder comes first on sys.path, and there ``gpu_check`` is the package (a folder with an
``__init__.py`` wins over a module of the same name).
"""

import sys

from gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
