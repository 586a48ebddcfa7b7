"""``python -m gpu_check`` (from benchmarks/): the same as ``python benchmarks/gpu_check.py``."""

import sys

from .main import main

sys.exit(main())
