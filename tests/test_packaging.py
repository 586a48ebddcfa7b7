"""A normal (non-editable) install must ship every module, and nothing at top level but nnunet_ext."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _package_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def test_wheel_contains_every_module_under_nnunet_ext(tmp_path: Path):
    # build from a clean copy: setuptools reuses a stale build/ folder of an in-tree build
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("nnunet_ext", "trainers", "transforms"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("nnunet_ext-*.whl")
    names = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    expected = ({f"nnunet_ext/{f}" for f in _package_files(REPO / "nnunet_ext")}
                | {f"nnunet_ext/trainers/{f}" for f in _package_files(REPO / "trainers")}
                | {f"nnunet_ext/transforms/{f}" for f in _package_files(REPO / "transforms")})
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"nnunet_ext"}, f"unexpected top-level packages: {top_level}"
