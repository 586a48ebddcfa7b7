"""The layout shows the architecture: packages, no import cycles, one place for each concern, honest names."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# installed package name -> source folder (pyproject's package-dir)
SOURCES = {"nnunet_ext": ROOT / "nnunet_ext", "nnunet_ext.trainers": ROOT / "trainers",
           "nnunet_ext.transforms": ROOT / "transforms"}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``pkg.__init__`` files named ``pkg``)."""
    modules = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([prefix, *parts])] = path
    return modules


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere (module level or inside functions)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(kept + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found |= {t for t in targets if t in modules}
    return found - {name}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return components


def test_the_package_top_level_holds_only_packages() -> None:
    flat = sorted(p.name for p in (ROOT / "nnunet_ext").glob("*.py") if p.name != "__init__.py")
    assert flat == [], f"group these modules into a package: {flat}"


def test_no_import_cycles_between_modules() -> None:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # a package's __init__ re-exporting its own submodules is not a cycle of concerns
        graph[name] = {m for m in _imports(path, name, modules) if not (path.name == "__init__.py"
                                                                       and m.startswith(name + "."))}
    assert _cycles(graph) == []


def test_the_process_group_guard_lives_only_beside_the_all_gather() -> None:
    guarded = sorted(path.name for path in (ROOT / "nnunet_ext" / "losses").glob("*.py")
                     if "is_initialized" in path.read_text())
    assert guarded == ["distributed.py"]


def test_short_runs_are_made_in_one_place() -> None:
    """nnU-Net's training budget is set by ``nnunet_ext.commands.short_runs`` only (demo, study, the tests' tiny
    trainers, the GPU check); the wheel check writes a user's trainer by hand, as a user would."""
    budget = re.compile(r"\.num_(epochs|iterations_per_epoch)\s*=[^=]")
    allowed = {ROOT / "nnunet_ext" / "commands" / "short_runs.py", ROOT / "tests" / "test_wheel.py"}
    files = [path for folder in ("nnunet_ext", "trainers", "transforms", "benchmarks", "tests")
             for path in (ROOT / folder).rglob("*.py") if path not in allowed]
    setting = sorted(str(path.relative_to(ROOT)) for path in files if budget.search(path.read_text()))
    assert setting == [], f"use nnunet_ext.commands.short_runs (ShortRun, write_short_trainers) in {setting}"


def test_every_base_trainer_composes_the_shared_mixins_once() -> None:
    from nnunet_ext import trainers
    from nnunet_ext.trainers.ext_trainer_base import ExtTrainerBase

    for name in trainers.__all__:
        trainer = getattr(trainers, name)
        if inspect.isclass(trainer):
            assert issubclass(trainer, ExtTrainerBase), name
            assert trainer.__mro__.count(ExtTrainerBase) == 1


def test_names_say_what_they_hold() -> None:
    from nnunet_ext.losses import TargetLayout
    from nnunet_ext.trainers import extra_target_mixin
    from nnunet_ext.trainers.plans_network_mixin import PlansNetworkMixin

    assert PlansNetworkMixin.__module__.endswith("plans_network_mixin")
    assert callable(extra_target_mixin.labels_block)
    assert TargetLayout([("labels", 1), ("skeleton", 1)]).slice("skeleton") == slice(1, 2)  # blocks by name


def test_the_long_test_files_named_for_scheduling_exist() -> None:
    """conftest.LONG_FILES orders the test files for the two xdist workers; a renamed file would drop out."""
    from tests.conftest import LONG_FILES

    missing = [name for name in LONG_FILES if not (Path(__file__).parent / name).is_file()]
    assert not missing, f"tests/conftest.py LONG_FILES names files that do not exist: {missing}"
