"""The straightforward definitions the fast code is timed against. They live in ``tests/`` (the tests check the
fast code against them; they are not part of the installed package), so the repository root goes on the path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reference_cldice import reference_cldice_loss  # noqa: E402
from tests.reference_skeleton import reference_tubed_skeleton  # noqa: E402

__all__ = ["reference_cldice_loss", "reference_tubed_skeleton"]
