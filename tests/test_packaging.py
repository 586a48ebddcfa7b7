"""The release files: the sdist and the wheel built from it ship every module, nothing at top level but nnunet_ext,
the licence, the type marker and the version written in nnunet_ext/__init__.py, and pass ``twine check --strict``.

tests/test_wheel.py (full tier) installs the wheel built here into a fresh environment and trains with it.
"""

from __future__ import annotations

import ast
import email
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# nnunet_ext's own folder and the two folders installed as its subpackages (pyproject's package-dir)
SOURCE_FOLDERS = {"nnunet_ext": "nnunet_ext", "trainers": "nnunet_ext/trainers", "transforms": "nnunet_ext/transforms"}


@dataclass(frozen=True)
class Distributions:
    sdist: Path
    wheel: Path


def _package_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def _checkout_files() -> list[str]:
    """The files of this checkout, new ones included, without what git ignores (builds, caches, .venv)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True, timeout=60).stdout.decode()
        return [name for name in listed.split("\0") if name and (REPO / name).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what the build reads
        names = ["pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"]
        return [n for n in names if (REPO / n).is_file()] + [
            p.relative_to(REPO).as_posix() for folder in SOURCE_FOLDERS for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts]


def build_distributions(out: Path) -> Distributions:
    """``python -m build`` of a clean copy of the checkout: the sdist, then the wheel built from that sdist (as
    ``make dist`` does, as pip does from an sdist); both must pass ``twine check --strict``.

    A clean copy: setuptools would reuse a stale build/ folder of an in-tree build, and writes its egg-info into
    the source folder. No build isolation: the test environment has setuptools (pinned in constraints.txt), and
    the test needs no index.
    """
    source = out / "source"
    for name in _checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    dist = out / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = dist.glob("nnunet_ext-*.tar.gz")
    (wheel,) = dist.glob("nnunet_ext-*.whl")
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    return Distributions(sdist, wheel)


def source_version() -> str:
    """``__version__`` as nnunet_ext/__init__.py writes it (the one place the version is written)."""
    tree = ast.parse((REPO / "nnunet_ext" / "__init__.py").read_text())
    (value,) = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["__version__"]]
    return value


def test_sdist_and_wheel_ship_every_module_the_licence_and_the_version(tmp_path: Path):
    dists = build_distributions(tmp_path)
    version = source_version()
    assert dists.wheel.name == f"nnunet_ext-{version}-py3-none-any.whl"
    assert dists.sdist.name == f"nnunet_ext-{version}.tar.gz"

    wheel = zipfile.ZipFile(dists.wheel)
    names = set(wheel.namelist())
    modules = {n for n in names if n.endswith(".py")}
    expected = {f"{target}/{f}" for folder, target in SOURCE_FOLDERS.items() for f in _package_files(REPO / folder)}
    assert expected <= modules, f"missing from the wheel: {sorted(expected - modules)}"
    assert {n.split("/")[0] for n in modules} == {"nnunet_ext"}, "unexpected top-level packages"
    assert "nnunet_ext/py.typed" in names
    dist_info = f"nnunet_ext-{version}.dist-info"
    assert wheel.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
    metadata = email.message_from_bytes(wheel.read(f"{dist_info}/METADATA"))
    assert metadata["Version"] == version
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "nnunet-ext = nnunet_ext.commands.cli:main" in wheel.read(f"{dist_info}/entry_points.txt").decode()

    with tarfile.open(dists.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    expected_source = {f"{folder}/{f}" for folder in SOURCE_FOLDERS for f in _package_files(REPO / folder)}
    assert expected_source <= members, f"missing from the sdist: {sorted(expected_source - members)}"
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "nnunet_ext/py.typed"} <= members
    # setuptools' default would add tests/test*.py without their conftest: the suite runs from a checkout
    assert not any(m.startswith("tests/") for m in members), "the sdist ships part of tests/"
    assert not any("__pycache__" in m or m.endswith(".pyc") for m in members)


def test_the_version_is_written_only_in_nnunet_ext_init():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \[[^]]*"version"', pyproject, re.M)
    assert not re.search(r"^version = ['\"]", pyproject, re.M), "a version string in pyproject.toml"
    assert 'version = { attr = "nnunet_ext.__version__" }' in pyproject
    import nnunet_ext

    assert nnunet_ext.__version__ == source_version()
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{source_version()}]" in changelog
