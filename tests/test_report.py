"""benchmarks/report.py: the documentation's generated blocks are what the results files render, a changed figure
is caught and named, and the median/range formatting of noisy figures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
REPORT = BENCHMARKS / "report.py"
START = re.compile(r"^<!-- generated: (\S+) -->$")
END = "<!-- end generated -->"


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def results_io():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import results_io

        yield results_io
    finally:
        sys.path.remove(str(BENCHMARKS))


def copy_documentation(destination: Path) -> None:
    """README.md, docs/, benchmarks/README.md and the results files: what report.py reads and writes."""
    shutil.copy2(ROOT / "README.md", destination / "README.md")
    shutil.copytree(ROOT / "docs", destination / "docs")
    (destination / "benchmarks").mkdir()
    if (BENCHMARKS / "README.md").exists():
        shutil.copy2(BENCHMARKS / "README.md", destination / "benchmarks" / "README.md")
    shutil.copytree(BENCHMARKS / "results", destination / "benchmarks" / "results")


def blocks_with_digits(path: Path) -> list[tuple[str, int]]:
    """(block name, line index) of every line inside a generated block that has a digit."""
    found, name = [], None
    for index, line in enumerate(path.read_text().split("\n")):
        start = START.match(line.strip())
        if start:
            name = start.group(1)
        elif line.strip() == END:
            name = None
        elif name and re.search(r"\d", line):
            found.append((name, index))
    return found


def test_the_repository_blocks_are_up_to_date():
    done = run_report("--check")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


def test_a_changed_figure_is_caught_and_named(tmp_path):
    copy_documentation(tmp_path)
    page = tmp_path / "docs" / "benchmarks.md"
    candidates = blocks_with_digits(page)
    assert candidates, "docs/benchmarks.md has no generated block with a figure"
    name, index = candidates[len(candidates) // 2]
    lines = page.read_text().split("\n")
    digit = re.search(r"\d", lines[index])
    lines[index] = lines[index][:digit.start()] + str((int(digit.group()) + 1) % 10) + lines[index][digit.end():]
    page.write_text("\n".join(lines))

    done = run_report("--check", "--root", str(tmp_path))
    assert done.returncode == 1
    assert f"docs/benchmarks.md: block '{name}' (line " in done.stderr, done.stderr
    assert "differs" in done.stderr

    edited = page.read_text()
    assert run_report("--root", str(tmp_path)).returncode == 0  # rendering repairs the block
    assert page.read_text() != edited
    assert page.read_text() == (ROOT / "docs" / "benchmarks.md").read_text()
    assert run_report("--check", "--root", str(tmp_path)).returncode == 0


def test_an_unknown_renderer_and_a_missing_results_file_fail(tmp_path):
    copy_documentation(tmp_path)
    page = tmp_path / "docs" / "benchmarks.md"
    page.write_text(page.read_text() + f"\n<!-- generated: no-such-table -->\n{END}\n")
    results = sorted((tmp_path / "benchmarks" / "results").glob("*.json"))
    assert results
    missing = results[0]
    missing.unlink()

    done = run_report("--check", "--root", str(tmp_path))
    assert done.returncode == 1
    assert "docs/benchmarks.md: block 'no-such-table'" in done.stderr and "no renderer" in done.stderr
    assert f"benchmarks/results/{missing.name} is missing" in done.stderr, done.stderr
    assert run_report("--root", str(tmp_path)).returncode == 1  # and rendering does not paper over it


def test_a_block_without_its_end_marker_fails(tmp_path):
    (tmp_path / "README.md").write_text("intro\n<!-- generated: gpu-check -->\nsomething\n")
    done = run_report("--check", "--root", str(tmp_path))
    assert done.returncode == 1
    assert "README.md: block 'gpu-check' (line 2) has no" in done.stderr


def test_blocks_are_rendered_in_place_and_fenced_markers_left_alone(tmp_path):
    fenced = f"```\n<!-- generated: no-such-table -->\n{END}\n```"
    (tmp_path / "README.md").write_text(f"intro\n\n<!-- generated: gpu-check -->\nold text\n{END}\n\n{fenced}\nend\n")
    assert run_report("--root", str(tmp_path)).returncode == 0
    text = (tmp_path / "README.md").read_text()
    not_measured = "Not measured yet: no GPU has been lent to this project's sessions."
    assert text == f"intro\n\n<!-- generated: gpu-check -->\n{not_measured}\n{END}\n\n{fenced}\nend\n"
    assert run_report("--check", "--root", str(tmp_path)).returncode == 0


def test_median_and_range(results_io):
    assert results_io.median_range([3.0, 1.0, 2.0]) == "2.0 (1.0–3.0)"
    assert results_io.median_range([10.0, 14.0, 11.0, 12.0], 0) == "12 (10–14)"  # even count: mean of the middle
    assert results_io.median_range([0.93, 0.87, 0.68], 2, "×") == "0.87× (0.68×–0.93×)"  # the median, not the best
    assert results_io.median_range([1234.4, 1000.0, 2000.0], 0) == "1,234 (1,000–2,000)"
    assert results_io.median_range([5.0]) == "5.0"  # one run: no range
    assert results_io.median_range([5.01, 4.99, 5.0]) == "5.0"  # a range that rounds away
    assert results_io.summary([4, 1, 3]) == {"median": 3, "min": 1, "max": 4, "runs": 3}
    assert results_io.ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError):
        results_io.summary([])
    with pytest.raises(ValueError):
        results_io.ratios([1.0], [1.0, 2.0])


def test_a_busy_machine_is_flagged_but_not_the_benchmarks_own_processes():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import report
    finally:
        sys.path.remove(str(BENCHMARKS))

    def note(start: float, end: float, **extra) -> str:
        machine = {"cpu_count": 2, "load_average_start": [start], "load_average_end": [end]}
        return report.describe_run({"date": "2026-12-05T01:00:00+00:00", "machine": machine, **extra}, "One run.")

    assert "busy" not in note(0.1, 1.9)
    assert "busy" in note(0.1, 2.6)  # one process of its own: the rest is other work
    assert "busy" not in note(0.1, 2.6, own_load=3)  # two workers and the main process
    assert "busy" in note(0.1, 3.4, own_load=3) and "own 3 processes" in note(0.1, 3.4, own_load=3)
    assert "busy" in note(2.5, 1.0, own_load=3)  # other work at the start


def test_results_files_record_what_the_report_shows():
    files = sorted((BENCHMARKS / "results").glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        assert path.stem == data["benchmark"]
        assert {"date", "git", "machine", "settings", "results", "command"} <= set(data), path.name
        assert {"commit", "dirty"} <= set(data["git"])
        assert {"platform", "cpu_count", "cpu_model", "torch", "nnunetv2", "load_average_start",
                "load_average_end"} <= set(data["machine"]), path.name


def test_the_results_are_not_ignored_by_git():
    files = [str(p.relative_to(ROOT)) for p in (BENCHMARKS / "results").glob("*.json")]
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *files], capture_output=True, text=True)
    assert done.returncode == 1, f"ignored by git: {done.stdout}"
