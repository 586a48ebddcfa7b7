"""`nnunet-ext compare`: paired statistics on known cases, the report files, and every bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from nnunet_ext.commands.cli import main
from nnunet_ext.evaluation.compare import compare_summaries, load_summary, paired_difference
from nnunet_ext.evaluation.compare.statistics import bootstrap_ci95


def _summary(values: dict[str, dict[str, dict[str, float]]]) -> dict:
    """A summary_topology.json-shaped dict: case -> class key -> metric -> value."""
    return {"metric_per_case": [{"reference_file": f"/gt/{case}.nii.gz", "prediction_file": f"/pred/{case}.nii.gz",
                                 "metrics": per_class} for case, per_class in values.items()]}


def _write(path: Path, values: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_summary(values)))
    return path


def _two_methods(tmp_path: Path, n: int = 10, shift: float = 0.05) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    base, better = {}, {}
    for i in range(n):
        dice = float(rng.uniform(0.5, 0.8))
        betti = float(rng.integers(2, 9))
        base[f"case_{i:03d}"] = {"1": {"Dice": dice, "Betti0_error": betti, "TP": 10.0}}
        better[f"case_{i:03d}"] = {"1": {"Dice": dice + shift + 0.01 * i, "Betti0_error": betti - 1, "TP": 12.0}}
    return _write(tmp_path / "a" / "summary_topology.json", base), _write(tmp_path / "b" / "summary_topology.json",
                                                                         better)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunet_ext.commands.cli", "compare", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def test_paired_difference_on_a_known_shift() -> None:
    baseline = np.linspace(0.2, 0.8, 10)
    result = paired_difference(baseline, baseline + 0.1, higher_is_better=True)
    assert result["mean_difference"] == pytest.approx(0.1)
    assert result["ci95"] == pytest.approx([0.1, 0.1])
    assert result["wilcoxon_p"] == pytest.approx(2 / 2 ** 10)  # exact: all 10 differences positive
    assert result["better"] is True and result["cases"] == 10
    assert paired_difference(baseline, baseline + 0.1, higher_is_better=False)["better"] is False
    # no difference at all: p = 1, no verdict
    same = paired_difference(baseline, baseline.copy(), higher_is_better=True)
    assert same["wilcoxon_p"] == 1.0 and same["better"] is None and same["mean_difference"] == 0


def test_wilcoxon_and_bootstrap_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    baseline, method = rng.normal(size=40), rng.normal(0.3, 1, size=40)
    result = paired_difference(baseline, method, higher_is_better=True)
    differences = method - baseline
    assert result["wilcoxon_p"] == pytest.approx(wilcoxon(differences).pvalue)
    lo, hi = result["ci95"]
    assert lo < differences.mean() < hi and (lo, hi) == bootstrap_ci95(differences)  # seeded: reproducible
    # the bootstrap interval of a mean shrinks like 1/sqrt(n): about mean +- 1.96 * sd / sqrt(n)
    half_width = 1.96 * differences.std() / math.sqrt(len(differences))
    assert (hi - lo) / 2 == pytest.approx(half_width, rel=0.1)


def test_nan_pairs_are_left_out_and_fewer_than_six_cases_give_no_verdict() -> None:
    baseline = np.array([0.1, 0.2, np.nan, 0.4, 0.5, 0.6, 0.7])
    method = baseline + 1
    result = paired_difference(baseline, method, higher_is_better=True)
    assert result["cases"] == 6 and result["better"] is True
    few = paired_difference(baseline[:5], method[:5], higher_is_better=True)
    assert few["cases"] == 4 and few["better"] is None  # no two-sided p below 0.05 is possible


def test_per_case_value_is_the_nan_ignoring_mean_over_classes(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.json", {"c1": {"1": {"Dice": float("nan")}, "2": {"Dice": 0.5}},
                                        "c2": {"1": {"Dice": 0.2}, "2": {"Dice": 0.4}},
                                        "c3": {"1": {"Dice": float("nan")}, "2": {"Dice": float("nan")}}})
    values = load_summary(path)
    assert values["c1.nii.gz"]["Dice"] == 0.5 and values["c2.nii.gz"]["Dice"] == pytest.approx(0.3)
    assert math.isnan(values["c3.nii.gz"]["Dice"])


def test_cli_writes_json_table_and_figure(tmp_path: Path) -> None:
    a, b = _two_methods(tmp_path)
    out = tmp_path / "out"
    result = _cli(str(a), str(b), "--names", "plain", "skelrecall", "-o", str(out))
    assert result.returncode == 0, result.stderr
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["baseline"] == "plain" and comparison["methods"] == ["plain", "skelrecall"]
    assert comparison["cases"] == 10 and set(comparison["metrics"]) == {"Dice", "Betti0_error"}  # TP is no metric
    dice = comparison["metrics"]["Dice"]
    assert dice["higher_is_better"] is True
    assert dice["versus_baseline"]["skelrecall"]["mean_difference"] == pytest.approx(0.05 + 0.01 * 4.5)
    assert dice["versus_baseline"]["skelrecall"]["better"] is True
    betti = comparison["metrics"]["Betti0_error"]
    assert betti["higher_is_better"] is False and betti["versus_baseline"]["skelrecall"]["better"] is True
    assert betti["per_method"]["plain"]["mean"] - betti["per_method"]["skelrecall"]["mean"] == pytest.approx(1)
    table = (out / "comparison.md").read_text()
    assert "| Dice ↑ |" in table and "**better**" in table and "10000 resamples" in table
    assert table in result.stdout
    import matplotlib.image

    picture = matplotlib.image.imread(out / "comparison.png")
    assert picture.shape[0] > 100 and picture.std() > 0.01


def test_nnunet_summary_json_compares_dice_and_friends(tmp_path: Path) -> None:
    cases = {f"c{i}": {"1": {"Dice": 0.5 + i / 100, "IoU": 0.4, "FP": 10.0 + i, "FN": 5.0, "TP": 3.0, "n_ref": 8.0}}
             for i in range(8)}
    comparison = compare_summaries({"a": load_summary(_write(tmp_path / "a.json", cases)),
                                    "b": load_summary(_write(tmp_path / "b.json", cases))})
    assert set(comparison["metrics"]) == {"Dice", "IoU", "FP", "FN"}
    assert comparison["metrics"]["Dice"]["versus_baseline"]["b"]["wilcoxon_p"] == 1.0


def test_cross_validation_summaries_from_nnunet_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for trainer, shift in (("nnUNetTrainer", 0.0), ("nnUNetTrainerSkeletonRecall", 0.1)):
        for fold in (0, 1):
            cases = {f"case_{fold}_{i}": {"1": {"clDice": 0.5 + shift + i / 50}} for i in range(4)}
            _write(results / "Dataset321_Vessels" / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}" / "validation"
                   / "summary_topology.json", cases)
    (tmp_path / "raw" / "Dataset321_Vessels").mkdir(parents=True)
    env = {"nnUNet_results": str(results), "nnUNet_raw": str(tmp_path / "raw"),
           "nnUNet_preprocessed": str(tmp_path / "pre")}
    out = tmp_path / "out"
    result = _cli("-d", "321", "-c", "2d", "-tr", "nnUNetTrainer", "nnUNetTrainerSkeletonRecall", "-o", str(out),
                  env=env)
    assert result.returncode == 0, result.stderr
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["cases"] == 8 and comparison["methods"] == ["nnUNetTrainer", "nnUNetTrainerSkeletonRecall"]
    assert comparison["metrics"]["clDice"]["versus_baseline"]["nnUNetTrainerSkeletonRecall"]["mean_difference"] == \
        pytest.approx(0.1)
    # one fold only, and a fold that was not trained
    one = _cli("-d", "321", "-c", "2d", "-tr", "nnUNetTrainer", "nnUNetTrainerSkeletonRecall", "-f", "1", "-o",
               str(tmp_path / "one"), env=env)
    assert one.returncode == 0 and json.loads((tmp_path / "one" / "comparison.json").read_text())["cases"] == 4
    missing = _cli("-d", "321", "-c", "2d", "-tr", "nnUNetTrainer", "nnUNetTrainerSkeletonRecall", "-f", "2", "-o",
                   str(tmp_path / "two"), env=env)
    assert missing.returncode == 1 and "fold_2" in missing.stderr and "--val" in missing.stderr
    unknown = _cli("-d", "321", "-c", "2d", "-tr", "nnUNetTrainer", "nnUNetTrainerClDice", "-o",
                   str(tmp_path / "three"), env=env)
    assert unknown.returncode == 1 and "train nnUNetTrainerClDice" in unknown.stderr


def test_bad_input(tmp_path: Path) -> None:
    a, b = _two_methods(tmp_path)
    few_a = _write(tmp_path / "few_a.json", {f"c{i}": {"1": {"Dice": 0.5}} for i in range(4)})
    few_b = _write(tmp_path / "few_b.json", {f"c{i}": {"1": {"Dice": 0.6 + i / 10}} for i in range(4)})
    unpaired = _write(tmp_path / "unpaired.json", {"case_000": {"1": {"Dice": 0.5}}, "other": {"1": {"Dice": 0.5}}})
    no_cases = tmp_path / "no_cases.json"
    no_cases.write_text(json.dumps({"mean": {}}))
    out = str(tmp_path / "out")
    cases = [
        ((str(a),), "--names", ["x"], "at least two SUMMARY"),
        ((str(a), str(b)), "--names", ["x"], "one name per SUMMARY"),
        ((str(a), str(b)), None, None, "one name per SUMMARY"),
        ((str(a), str(b)), "--names", ["x", "x"], "distinct"),
        ((str(a), str(no_cases)), "--names", ["x", "y"], "no 'metric_per_case'"),
        ((str(a), str(tmp_path / "nope.json")), "--names", ["x", "y"], "does not exist"),
        ((str(a), str(unpaired)), "--names", ["x", "y"], "from y's summary: case_001.nii.gz, case_002"),
    ]
    for files, flag, names, message in cases:
        result = _cli(*files, *([flag, *names] if flag else []), "-o", out)
        assert result.returncode == 1 and message in result.stderr, (message, result.stderr)
        assert not Path(out).exists()  # nothing written
    chill = _cli(str(a), str(unpaired), "--names", "x", "y", "-o", out, "--chill")
    assert chill.returncode == 0 and json.loads(Path(out, "comparison.json").read_text())["cases"] == 1
    again = _cli(str(a), str(b), "--names", "x", "y", "-o", out)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert _cli(str(a), str(b), "--names", "x", "y", "-o", out, "--overwrite").returncode == 0
    low = _cli(str(few_a), str(few_b), "--names", "x", "y", "-o", str(tmp_path / "low"))
    assert low.returncode == 0 and "no power" in low.stdout
    assert "no power" in json.loads((tmp_path / "low" / "comparison.json").read_text())["note"]


# --- issue 22: edges a new user hit, in this process ------------------------------------------------------------

def _refused(capsys: pytest.CaptureFixture, *args: str | Path) -> str:
    """``nnunet-ext compare ARGS`` run by ``main``: exit code 1 and the one error line it printed."""
    capsys.readouterr()
    assert main(["compare", *map(str, args)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and not captured.out, captured
    return lines[0]


def test_an_existing_file_as_output_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = _two_methods(tmp_path)
    mine = tmp_path / "FILE"
    mine.write_text("the user's file")
    for out in (mine, mine / "comparison"):
        line = _refused(capsys, a, b, "--names", "x", "y", "-o", out)
        assert f"{mine} is a file, not a folder" in line and "nothing was written" in line, line
    assert mine.read_text() == "the user's file"


def test_a_metric_value_that_is_no_number_is_refused_naming_file_case_and_metric(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, _ = _two_methods(tmp_path)
    text = _write(tmp_path / "text.json", {f"case_{i:03d}": {"1": {"Dice": "abc" if i == 3 else 0.5}}
                                           for i in range(10)})
    out = tmp_path / "out"
    line = _refused(capsys, a, text, "--names", "x", "y", "-o", out)
    assert line == (f"error: {text}: case case_003.nii.gz, class 1, metric Dice is 'abc', not a number; fix the file "
                    f"(re-run the evaluation that wrote it)")
    assert not out.exists()


def test_the_same_summary_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, _ = _two_methods(tmp_path)
    copy = tmp_path / "copy.json"
    copy.write_bytes(a.read_bytes())
    out = tmp_path / "out"
    line = _refused(capsys, a, a, "--names", "a", "b", "-o", out)
    assert f"a and b are given the same file {a}, so every difference would be 0" in line, line
    line = _refused(capsys, a, copy, "--names", "a", "b", "-o", out)
    assert f"a and b are given files with the same content ({a}, {copy})" in line, line
    line = _refused(capsys, "-d", "321", "-c", "2d", "-tr", "nnUNetTrainer", "nnUNetTrainer", "--names", "a", "b",
                    "-o", out)
    assert "-tr must name distinct trainers" in line, line
    assert not out.exists()


def test_an_infinite_metric_value_is_refused_naming_the_cases(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Refused, not warned about: every metric compare reads (Dice, IoU, clDice, Betti, pixel, Rand and warping
    errors, FP/FN counts) is finite by definition, so an infinite one means the evaluation that wrote the file is
    broken. Comparing anyway gives an infinite mean and CI and p = 1 (the issue: "inf [0, n/a], p = 1"); leaving
    those cases out, as NaN pairs are, would drop exactly the cases where that method failed and flatter it. An
    experienced user wants the comparison to stop and name the cases to re-evaluate."""
    a, _ = _two_methods(tmp_path)
    infinite = _write(tmp_path / "inf.json", {f"case_{i:03d}": {"1": {"Dice": math.inf if i in (2, 7) else 0.5,
                                                                      "Betti0_error": 1.0}} for i in range(10)})
    assert "Infinity" in infinite.read_text()  # what json writes for inf (and reads back as inf)
    out = tmp_path / "out"
    line = _refused(capsys, a, infinite, "--names", "x", "y", "-o", out)
    assert line.startswith(f"error: {infinite} has infinite values in case case_002.nii.gz (Dice), case "
                           f"case_007.nii.gz (Dice); "), line
    assert "re-evaluate these cases" in line
    assert not out.exists()


@pytest.mark.parametrize("chill", [False, True])
def test_disjoint_case_sets_are_refused_as_sharing_no_case(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           chill: bool) -> None:
    a, _ = _two_methods(tmp_path)
    other = _write(tmp_path / "other.json", {f"other_{i}": {"1": {"Dice": 0.5}} for i in range(5)})
    out = tmp_path / "out"
    line = _refused(capsys, a, other, "--names", "x", "y", "-o", out, *(["--chill"] if chill else []))
    assert line.startswith("error: the summaries share no case (x: case_000.nii.gz, case_001.nii.gz, "
                           "case_002.nii.gz ... (10 in all); y: other_0.nii.gz, other_1.nii.gz, other_2.nii.gz ... "
                           "(5 in all)); cases pair up by the reference file's name"), line
    assert "--chill" not in line
    assert not out.exists()


# --- repeats: means over repeated trainings, the spread between them beside each difference (issue 21) -----------

def _per_case(values: list[float], metric: str = "Dice") -> dict:
    return {f"case_{i:03d}.nii.gz": {metric: v} for i, v in enumerate(values)}


def test_repeat_spread_is_the_range_of_per_repeat_differences_and_of_each_methods_means() -> None:
    from nnunet_ext.evaluation.compare.statistics import clears_the_spread, repeat_spread

    baseline = [np.array([0.5, 0.6, 0.7]), np.array([0.6, 0.7, 0.8])]  # means 0.6, 0.7: range 0.1
    method = [np.array([0.55, 0.65, 0.75]), np.array([0.62, 0.72, 0.82])]  # means 0.65, 0.72: range 0.07
    spread = repeat_spread(baseline, method)
    assert spread["per_repeat_mean_differences"] == pytest.approx([0.05, 0.02])
    assert spread["range"] == pytest.approx([0.02, 0.05]) and spread["run_to_run_spread"] == pytest.approx(0.1)
    assert not clears_the_spread(0.035, spread), "a gain below the run-to-run spread"
    assert clears_the_spread(0.2, {**spread, "range": [0.15, 0.25]})
    assert not clears_the_spread(0.2, {**spread, "range": [-0.01, 0.4]}), "a repeat with the other sign"
    assert not clears_the_spread(-0.2, {**spread, "range": [-0.25, -0.15], "run_to_run_spread": 0.3})
    with pytest.raises(ValueError, match="same number"):
        repeat_spread(baseline, method[:1])


def test_compare_repeats_averages_the_repeats_and_withholds_a_gain_within_the_spread() -> None:
    from nnunet_ext.evaluation.compare import compare_repeats, markdown_table, mean_over_repeats

    base = np.linspace(0.4, 0.8, 12)
    # the method beats the baseline on every case in both repeats (p < 0.05), but the baseline's second seed alone
    # moves its mean by 0.1, five times the gain
    runs = {"plain": [_per_case(base), _per_case(base + 0.1)],
            "new": [_per_case(base + 0.02 + 0.001 * np.arange(12)), _per_case(base + 0.12 + 0.001 * np.arange(12))]}
    means = mean_over_repeats(runs["plain"])
    assert means["case_000.nii.gz"]["Dice"] == pytest.approx(0.45)
    comparison = compare_repeats(runs)
    d = comparison["metrics"]["Dice"]["versus_baseline"]["new"]
    assert d["mean_difference"] == pytest.approx(0.02 + 0.001 * 5.5) and d["wilcoxon_p"] < 0.05
    assert d["better"] is None and "run-to-run spread" in d["verdict_withheld"]
    assert d["repeats"]["run_to_run_spread"] == pytest.approx(0.1) and comparison["repeats"] == 2
    table = markdown_table(comparison)
    assert "within run-to-run spread" in table and "trained 2 times" in table
    # a gain far above the spread keeps its verdict
    clear = compare_repeats({"plain": runs["plain"], "new": [_per_case(base + 0.3), _per_case(base + 0.41)]})
    assert clear["metrics"]["Dice"]["versus_baseline"]["new"]["better"] is True
    with pytest.raises(ValueError, match="same number of repeats"):
        compare_repeats({"plain": runs["plain"], "new": runs["new"][:1]})


def test_cli_groups_a_name_given_several_times_as_repeats(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = np.linspace(0.4, 0.8, 8)
    files = [_write(tmp_path / f"{name}{r}.json", {f"c{i}": {"1": {"Dice": float(v)}} for i, v in enumerate(values)})
             for name, r, values in (("a", 0, base), ("a", 1, base + 0.01), ("b", 0, base + 0.3),
                                     ("b", 1, base + 0.32))]
    out = tmp_path / "out"
    assert main(["compare", *map(str, files), "--names", "a", "a", "b", "b", "-o", str(out)]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["methods"] == ["a", "b"] and comparison["repeats"] == 2
    d = comparison["metrics"]["Dice"]["versus_baseline"]["b"]
    assert d["mean_difference"] == pytest.approx(0.305) and d["repeats"]["range"] == pytest.approx([0.3, 0.31])
    line = _refused(capsys, *files[:3], "--names", "a", "a", "b", "-o", tmp_path / "odd")
    assert "different numbers of repeats" in line, line


def test_merged_metrics_are_compared_after_the_class_averages(tmp_path: Path) -> None:
    rows = {f"c{i}": {"Dice": 0.5 + i / 100, "merged clDice": 0.6 + i / 100, "merged Betti0_error": 3.0}
            for i in range(8)}
    better = {case: {"Dice": v["Dice"] + 0.1, "merged clDice": v["merged clDice"] + 0.1,
                     "merged Betti0_error": 1.0} for case, v in rows.items()}
    comparison = compare_summaries({"a": rows, "b": better})
    assert list(comparison["metrics"]) == ["Dice", "merged clDice", "merged Betti0_error"]
    assert comparison["metrics"]["merged Betti0_error"]["higher_is_better"] is False
    assert comparison["metrics"]["merged Betti0_error"]["versus_baseline"]["b"]["better"] is True
