"""Render the measured figures into the documentation: numbers rendered, not typed.

The README, docs/*.md and benchmarks/README.md hold generated blocks, each between two lines of its own:

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

NAME is one of ``RENDERERS``; each renders a markdown table from one results file (the benchmarks'
benchmarks/results/<name>.json, written by the scripts through ``results_io``; the studies' files under
docs/study/). Noisy figures are shown as the median and the range (min–max) over the runs, with the number of
runs, the date, the commit and the machine's load under the table.

    python benchmarks/report.py            # rewrite every block from the results files
    python benchmarks/report.py --check    # rewrite nothing; exit 1, naming file and block, when a block differs
                                           # from what its results render (or names no renderer, or lacks its file)
    python benchmarks/report.py --root DIR # a copy of the repository elsewhere (README.md, docs/, benchmarks/)
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from results_io import REPOSITORY, RESULTS_DIR, format_number, median_range, ratios, summary

START = re.compile(r"^<!-- generated: (\S+) -->$")
END = "<!-- end generated -->"
FENCE = re.compile(r"^\s*(```|~~~)")
NOT_MEASURED_GPU = "Not measured yet: no GPU has been lent to this project's sessions."


class RenderError(Exception):
    """A block cannot be rendered: its results file is missing or unreadable."""


def documents(root: Path) -> list[Path]:
    """The files that may hold generated blocks: README.md, docs/*.md, benchmarks/README.md."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "benchmarks" / "README.md"]
    return [f for f in files if f.is_file()]


# ---------------------------------------------------------------------------------------------- common parts


def rendered_by(source: str) -> str:
    return f"Rendered by benchmarks/report.py from {source} — do not edit by hand."


def describe_run(data: dict, runs: str) -> str:
    """The line under a table: runs, when, which code, which machine, how loaded it was."""
    date = datetime.fromisoformat(data["date"]).strftime("%Y-%m-%d %H:%M UTC")
    git = data.get("git") or {}
    commit = git.get("commit") or "unknown commit"
    if git.get("dirty"):
        commit += " with uncommitted changes"
    m = data.get("machine", {})
    threads = f", {m['torch_threads']} torch threads" if m.get("torch_threads") else ""
    software = ", ".join(f"{name} {m[key]}" for name, key in (("torch", "torch"), ("nnU-Net", "nnunetv2"))
                         if m.get(key))
    start, end = m.get("load_average_start") or [], m.get("load_average_end") or []
    load = (f"load average (1 min) {start[0]:.2f} at the start, {end[0]:.2f} at the end"
            if start and end else "load average not recorded")
    command = shlex.join(data.get("command", []))
    wall = f"; {data['wall_seconds']:.0f} s in all" if data.get("wall_seconds") is not None else ""
    busy = ""
    own = data.get("own_load", 1)  # the benchmark's own busy processes: at its end the load may reach them
    if start and end and m.get("cpu_count") and (start[0] > m["cpu_count"] or end[0] > max(m["cpu_count"], own)):
        busy = (f" **The machine was busy** (load average above its {m['cpu_count']} CPUs"
                + (f" and the benchmark's own {own} processes" if own > m["cpu_count"] else "")
                + "): the times are slowed and scatter; figures timed at different moments (not interleaved) "
                  "compare poorly.")
    return (f"{runs} Measured {date} at commit {commit}, on {m.get('cpu_model') or 'an unknown CPU'} "
            f"({m.get('cpu_count')} CPUs{threads}; {software}); {load}{wall}. Command: `{command}`.{busy}")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"

    return [line(header), "|" + " --- |" * len(header), *(line(row) for row in rows)]


def fmt(value: float, digits: int) -> str:
    return format_number(value, digits)


def times_note(repeats: int, interleaved: bool) -> str:
    how = "interleaved (every run times each variant once, in turn); ratios per run" if interleaved else "timed"
    return (f"Times: median (min–max) over {repeats} runs {how}; wall clock on the CPU, so the ratios carry "
            f"over, not the milliseconds.")


def count(n: int, noun: str) -> str:
    """``"3 runs"``, ``"1 run"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def median_of(values: list[float]) -> float:
    return summary(values)["median"]


# ---------------------------------------------------------------------------------------------- renderers


def render_tubed_skeleton(data: dict) -> list[str]:
    cases, settings = data["results"]["cases"], data["settings"]
    rows, breakdown = [], []
    for name, case in cases.items():
        t = case["times_ms"]
        label = f"{name} {'x'.join(map(str, case['shape']))} ({100 * case['foreground_fraction']:.1f}% foreground)"
        rows.append([label, median_range(t["reference"], 1), median_range(t["fast"], 1),
                     median_range(ratios(t["reference"], t["fast"]), 2, "×"),
                     median_range(t["fast_nofallback"], 1),
                     median_range(ratios(t["reference"], t["fast_nofallback"]), 2, "×"),
                     "yes" if case["equal_fallback_false"] else "**NO**"])
        breakdown.append([name, median_range(t["ref_skeletonize"], 1), median_range(t["ref_dilations"], 1),
                          median_range(t["ref_multiply"], 2)])
    warm = data["results"]["warm_up_ms"]
    return [*table(["case", "reference ms", "fast ms", "speed-up", "fast, fallback=False ms", "speed-up",
                    "fallback=False equals the reference"], rows),
            "",
            "The reference recipe step by step (ms):",
            "",
            *table(["case", "skeletonize", "2 dilations", "multiply by the labels"], breakdown),
            "",
            describe_run(data, f"{times_note(settings['repeats'], True)} Seed {settings['seed']}, "
                               f"{settings['classes']} classes; the first calls (numba compile or cache load) are "
                               f"not timed: 2D {warm['2D']:.0f} ms, 3D {warm['3D']:.0f} ms.")]


def render_losses(data: dict) -> list[str]:
    settings, rows = data["settings"], []
    for case_name, case in data["results"]["cases"].items():
        t = case["times_ms"]
        for variant, runs in t.items():
            base = case["baseline"][variant]
            ratio = "1" if variant == base else median_range(ratios(runs, t[base]), 2, "×")
            rows.append([case_name, variant, median_range(runs, 1), ratio, base])
    skipped = " CE + Dice + clDice left out (`--skip-cldice`; see the clDice table)." if settings["skip_cldice"] else ""
    return [*table(["case", "loss (forward + backward)", "ms", "ratio", "ratio to"], rows), "",
            describe_run(data, f"{times_note(settings['repeats'], True)}{skipped}")]


def render_pipeline_throughput(data: dict) -> list[str]:
    s, r = data["settings"], data["results"]
    rates = r["batches_per_second"]
    stock = rates["nnUNetTrainer"]
    rows = [["nnUNetTrainer (stock)", "—", median_range(stock, 3), "1"]]
    for trainer in s["trainers"]:
        rows.append([trainer, r["targets"].get(trainer) or "?", median_range(rates[trainer], 3),
                     median_range(ratios(rates[trainer], stock), 2, "×")])
    plan = r["plan"]
    runs = (f"Median (min–max) over {count(s['rounds'], 'round')}; each round draws {s['warmup']} untimed, then "
            f"{s['batches']} timed batches from every pipeline in turn"
            f"{', each round starting with the next pipeline' if s.get('rotated') else ''} (ratios per round). "
            f"3d_fullres of "
            f"{s['cases']} synthetic cases of {s['size']}³: patch {'×'.join(map(str, plan['patch_size']))}, batch "
            f"{plan['batch_size']} (nnU-Net's plans), {s['workers']} worker processes (`nnUNet_n_proc_DA`).")
    return [*table(["pipeline", "extra target", "batches/s", "× stock"], rows), "", describe_run(data, runs)]


def render_worker_targets(data: dict) -> list[str]:
    s, rounds = data["settings"], data["results"]["rounds"]
    stock = [statistics.mean(r["stock"]) for r in rounds]
    rows = [["nnU-Net's stock 3D training transforms", median_range(stock, 0), "1", "—"]]
    for name in rounds[0]:
        if name == "stock":
            continue
        means = [statistics.mean(r[name]) for r in rounds]
        ratio = ratios(means, stock)
        goal = s["goals"].get(name, s["goals"]["weight map"])
        verdict = "met" if median_of(ratio) <= goal else "**not met**"
        rows.append([name, median_range(means, 0), median_range(ratio, 2, "×"), f"≤ {goal:.2f}× ({verdict})"])
    runs = (f"Median (min–max) over {count(len(rounds), 'round')} of {s['samples']} samples, one thread (one "
            f"data-loader worker); a round's figure is the mean per sample, its ratio that mean over the stock "
            f"mean of the same round. Vessel volumes of {s['classes']} classes cropped by the transforms from "
            f"{'×'.join(map(str, s['initial_patch']))} to the {'×'.join(map(str, s['patch']))} patch; the cells: "
            f"{', '.join(map(str, s['cell_counts']))} touching cells in one {'×'.join(map(str, s['patch']))} patch "
            f"(one run each per round), against the same stock mean.")
    return [*table(["what the worker computes", "ms per sample", "× stock augmentation", "goal"], rows), "",
            describe_run(data, runs)]


def render_networks(data: dict) -> list[str]:
    s, rows = data["settings"], []
    for case_name, results in data["results"]["cases"].items():
        base = results["PlainConvUNet"]
        for network, res in results.items():
            rows.append([case_name, network, f"{res['params']:,d}", f"{res['params'] / base['params']:.2f}",
                         median_range(res["times_ms"], 1),
                         f"{median_of(res['times_ms']) / median_of(base['times_ms']):.2f}",
                         f"{res['peak_mib']:.1f}", f"{res['peak_mib'] / base['peak_mib']:.2f}"])
    plans = "; ".join(f"{name}: batch {c['batch']}, patch {'×'.join(map(str, c['patch']))}, features "
                      f"{c['features'][0]}–{c['features'][-1]} in {len(c['features'])} stages"
                      for name, c in s["cases"].items())
    runs = (f"Time: median (min–max) over {count(s['repeats'], 'forward + backward step')} after a warm-up, "
            f"each network in its own process (ratio: of the medians). Peak: one step's rise of the resident-set "
            f"high-water mark (device {s['device']}), one measurement. Plans: {plans}; deep supervision on.")
    return [*table(["case", "network", "parameters", "× Plain", "fwd + bwd ms", "× Plain", "peak MiB", "× Plain"],
                   rows), "", describe_run(data, runs)]


def render_cldice(data: dict) -> list[str]:
    s, rows = data["settings"], []
    for case_name, case in data["results"]["cases"].items():
        ref, ours = case["straightforward"], case["ours"]
        rows.append([case_name, f"{ref['input_mib']:.1f}", median_range(ref["times_ms"], 0),
                     median_range(ours["times_ms"], 0),
                     f"{median_of(ours['times_ms']) / median_of(ref['times_ms']):.2f}",
                     f"{ref['peak_mib']:.0f}", f"{ours['peak_mib']:.0f}", f"{ours['peak_mib'] / ref['peak_mib']:.2f}",
                     f"{abs(ref['value'] - ours['value']):.1e}"])
    runs = (f"Time: median (min–max) over {count(s['repeats'], 'forward + backward run')} (ratio: ours / "
            f"straightforward of the medians); every (case, implementation) in its own process. Peak: one run's "
            f"rise of the resident-set high-water mark, one measurement. k = {s['iterations']} iterations.")
    return [*table(["case", "input MiB", "straightforward ms", "ours ms", "time ×", "straightforward peak MiB",
                    "ours peak MiB", "memory ×", "loss difference (absolute)"], rows), "", describe_run(data, runs)]


def render_distance_fields(data: dict) -> list[str]:
    s, rows = data["settings"], []
    for case_name, case in data["results"]["cases"].items():
        t = case["times_ms"]
        for variant, runs in t.items():
            ratio = "1" if variant == "torch exact" else median_range(ratios(runs, t["torch exact"]), 2, "×")
            exact = variant in ("torch exact", "scipy (CPU)")
            rows.append([f"{case_name} ({case['maps']} maps)", variant, median_range(runs, 0), ratio,
                         "exact" if exact else f"{case['max_error'][variant]:.1f}",
                         "exact" if exact else f"{case['mean_error'][variant]:.2f}"])
    return [*table(["case", "variant", "ms per step", "× torch exact", "max error (voxels)", "mean error"], rows), "",
            describe_run(data, times_note(s["repeats"], True))]


def render_hausdorff_fields(data: dict) -> list[str]:
    s, rows, differences = data["settings"], [], []
    for case_name, case in data["results"]["cases"].items():
        t = case["times_ms"]
        given = next(k for k in t if "given" in k)
        for variant, runs in t.items():
            if variant.startswith("DistanceFieldTransform"):
                label = f"{variant} (saved by the device variant, {case['batch']} per step)"
                ratio = "—"
            else:
                label, ratio = variant, "1" if variant == given else median_range(ratios(runs, t[given]), 2, "×")
            rows.append([case_name, label, median_range(runs, 0), ratio])
        differences.append(case["full_resolution_difference"])
    scales = ", ".join(f"{x:g}" for x in next(iter(data["results"]["cases"].values()))["scales"])
    runs = (f"{times_note(s['repeats'], True)} Losses: forward + backward through nnU-Net's DeepSupervisionWrapper "
            f"over the scales {scales} (nnU-Net's weights); the transform: one sample's label map, one worker. "
            f"Largest |loss with the workers' d_g − loss with d_g on the device| at full resolution: "
            f"{max(differences):.1e}.")
    missing = [name for name in s["cases"] if name not in data["results"]["cases"]]
    if missing:
        runs += f" Not measured (the run was stopped): {', '.join(missing)}."
    fields = s.get("worker_fields") or {}
    if fields:
        installed = f" (the edt package {fields['edt']} is installed)" if fields.get("edt") else ""
        runs += f" Workers' fields by {fields['module']}{installed}."
    return [*table(["case", "cost", "ms", "× d_g given"], rows), "", describe_run(data, runs)]


def render_hausdorff_weight(data: dict) -> list[str]:
    rows = []
    for r in data["results"]["rows"]:
        rows.append([r["patch"], r["state"], f"{r['dice_value']:.4g}", f"{r['hd_value']:.4g}",
                     f"{r['dice_gradient_norm']:.4g}", f"{r['ce_gradient_norm']:.4g}", f"{r['hd_gradient_norm']:.4g}",
                     f"{r['dice_gradient_norm'] / r['hd_gradient_norm']:.3g}",
                     f"{r['ce_gradient_norm'] / r['hd_gradient_norm']:.3g}"])
    return [*table(["patch", "state", "Dice value", "HD value", "|grad| Dice", "|grad| CE", "|grad| HD", "Dice/HD",
                    "CE/HD"], rows), "",
            describe_run(data, "One run: the figures are deterministic (fixed seeds, no timing).")]


def render_network_memory(data: dict) -> list[str]:
    rows, plain = [], {}
    for r in data["results"]["runs"]:
        per_unit = r["peak_mib"] * 2**20 / r["units"]
        if r["class"] == "PlainConvUNet":
            plain[r["case"]] = per_unit
        rows.append([r["case"], r["network"], f"{r['units'] / 1e6:.1f}", f"{r['estimated_gb']:.2f}",
                     f"{r['peak_mib']:.1f}", f"{per_unit:.2f}", f"{per_unit / plain[r['case']]:.2f}",
                     f"{r['seconds']:.1f}"])
    return [*table(["case", "network", "estimate (M units)", "nnU-Net GB", "measured MiB", "bytes/unit",
                    "vs PlainConvUNet", "step s"], rows), "",
            describe_run(data, "One measurement per network, each in its own process (the memory does not depend "
                               "on the load; the step times do).")]


def render_gpu_check(data: dict) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_check  # the script's own table (stdlib only at import)

    runs = [gpu_check.RunResult(**run) for run in data["results"]["runs"]]
    complete = "" if data["results"].get("complete") else " Not every run finished (see the status column)."
    devices = sorted({r.device_name for r in runs if r.device_name})
    on = f" on {', '.join(devices)}" if devices else ""
    return [gpu_check.results_table(runs, data["settings"]["device"]), "", *data["results"]["notes"], "",
            describe_run(data, f"One run per trainer{on} (the CPU named below is the host).{complete}")]


def render_study(data: dict) -> list[str]:
    from nnunet_ext.evaluation.compare.report import markdown_table  # the table comparison.md holds

    return markdown_table(data).rstrip("\n").split("\n")


def render_study_time(data: dict) -> list[str]:
    """The wall time of every step a study ran (its study.json), in minutes, and the software it ran on."""
    steps = data["wall_seconds"]
    rows = [[step, f"{seconds / 60:.1f}"] for step, seconds in steps.items()]
    rows.append(["**total**", f"**{sum(steps.values()) / 60:.1f}**"])
    runs = data.get("runs", [])
    versions = [run["versions"] for run in runs]
    software = "; ".join(f"nnU-Net {v.get('nnunetv2')}, torch {v.get('torch')}, commit {v.get('commit')}"
                         for v in versions)
    b, budget = data["settings"]["benchmark"], data["settings"]["budget"]
    resumed = f", in {len(runs)} invocations (resumed)" if len(runs) > 1 else ""
    return [*table(["step", "minutes"], rows), "",
            f"{len(data['settings']['trainers'])} trainers x {budget['epochs']} epochs x {budget['iterations']} "
            f"iterations on {b['n_train']} training and {b['n_test']} test cases ({b['dim']}D, {b['size']} voxels "
            f"per axis, {b['n_classes']} classes, seed {b['seed']}), device {data['settings']['device']}, started "
            f"{', '.join(run['started'] for run in runs)}{resumed}; {software}."]


@dataclass(frozen=True)
class Renderer:
    source: str  # the results file, relative to the repository root
    render: Callable[[dict], list[str]]
    when_missing: str | None = None  # rendered instead when the file does not exist; None: a missing file fails


def _results(name: str) -> str:
    return str((RESULTS_DIR / f"{name}.json").relative_to(REPOSITORY))


RENDERERS: dict[str, Renderer] = {
    "tubed-skeleton": Renderer(_results("tubed_skeleton"), render_tubed_skeleton),
    "worker-targets": Renderer(_results("worker_targets"), render_worker_targets),
    "losses": Renderer(_results("losses"), render_losses),
    "pipeline-throughput": Renderer(_results("pipeline_throughput"), render_pipeline_throughput),
    "networks": Renderer(_results("networks"), render_networks),
    "network-memory": Renderer(_results("network_memory"), render_network_memory),
    "cldice": Renderer(_results("cldice"), render_cldice),
    "distance-fields": Renderer(_results("distance_fields"), render_distance_fields),
    "hausdorff-weight": Renderer(_results("hausdorff_weight"), render_hausdorff_weight),
    "hausdorff-fields": Renderer(_results("hausdorff_fields"), render_hausdorff_fields),
    "gpu-check": Renderer(_results("gpu_check"), render_gpu_check, when_missing=NOT_MEASURED_GPU),
    "study-2d": Renderer("docs/study/comparison.json", render_study),
    "study-3d": Renderer("docs/study/3d/comparison.json", render_study),
    "study-3d-time": Renderer("docs/study/3d/study.json", render_study_time),
}


def render(name: str, root: Path) -> str:
    """The content of block ``name`` (without its markers); RenderError when it cannot be rendered."""
    renderer = RENDERERS.get(name)
    if renderer is None:
        raise RenderError(f"no renderer named '{name}' (known: {', '.join(RENDERERS)})")
    path = root / renderer.source
    if not path.is_file():
        if renderer.when_missing is not None:
            return renderer.when_missing
        raise RenderError(f"its results file {renderer.source} is missing (run the benchmark that writes it)")
    try:
        data = json.loads(path.read_text())
        lines = renderer.render(data)
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as error:
        raise RenderError(f"{renderer.source} cannot be rendered: {type(error).__name__}: {error}") from error
    return "\n".join([rendered_by(renderer.source), "", *lines])


# ---------------------------------------------------------------------------------------------- blocks


@dataclass
class Block:
    name: str
    line: int  # of the start marker, 1-based
    old: str
    new: str | None  # None: could not be rendered
    problem: str | None = None


def rewrite(text: str, root: Path, cache: dict[str, str | RenderError]) -> tuple[str, list[Block], list[str]]:
    """(the text with every renderable block rendered, its blocks, structural problems such as a missing end)."""
    lines, out, blocks, problems = text.split("\n"), [], [], []
    in_fence, fence, i = False, "", 0
    while i < len(lines):
        line = lines[i]
        fenced = FENCE.match(line)
        if fenced:
            if not in_fence:
                in_fence, fence = True, fenced.group(1)
            elif fenced.group(1) == fence:
                in_fence = False
        start = None if in_fence else START.match(line.strip())
        if start is None:
            if not in_fence and line.strip() == END:
                problems.append(f"line {i + 1}: '{END}' without a '<!-- generated: NAME -->' before it")
            out.append(line)
            i += 1
            continue
        name = start.group(1)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == END or START.match(lines[j].strip())),
                   None)
        if end is None or lines[end].strip() != END:
            problems.append(f"block '{name}' (line {i + 1}) has no '{END}' line before "
                            f"{'the next block' if end is not None else 'the end of the file'}")
            out.append(line)
            i += 1
            continue
        if name not in cache:
            try:
                cache[name] = render(name, root)
            except RenderError as error:
                cache[name] = error
        rendered = cache[name]
        old = "\n".join(lines[i + 1:end])
        if isinstance(rendered, RenderError):
            blocks.append(Block(name, i + 1, old, None, str(rendered)))
            out.extend(lines[i:end + 1])
        else:
            blocks.append(Block(name, i + 1, old, rendered))
            out.extend([line, rendered, lines[end]])
        i = end + 1
    return "\n".join(out), blocks, problems


def run(root: Path, check: bool) -> list[str]:
    """Render (or, with ``check``, compare) every block under ``root``; returns the problems found."""
    cache: dict[str, str | RenderError] = {}
    problems: list[str] = []
    for path in documents(root):
        text = path.read_text()
        new_text, blocks, structural = rewrite(text, root, cache)
        shown = path.relative_to(root)
        problems += [f"{shown}: {p}" for p in structural]
        for block in blocks:
            where = f"{shown}: block '{block.name}' (line {block.line})"
            if block.problem:
                problems.append(f"{where}: {block.problem}")
            elif check and block.new != block.old:
                problems.append(f"{where} differs from what {RENDERERS[block.name].source} renders; run "
                                f"python benchmarks/report.py")
        if not check and new_text != text:
            path.write_text(new_text)
            changed = [b.name for b in blocks if b.new is not None and b.new != b.old]
            print(f"{shown}: rendered {', '.join(changed)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="rewrite nothing; exit 1 when a block differs from what its results render")
    parser.add_argument("--root", type=Path, default=REPOSITORY,
                        help="the repository (README.md, docs/, benchmarks/results/); default: this one")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    problems = run(root, args.check)
    for problem in problems:
        print(f"report.py: {problem}", file=sys.stderr)
    if not problems:
        print(f"report.py: every generated block {'is up to date' if args.check else 'rendered'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
