"""The ``nnunet-ext`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nnunet_ext.commands.nnunet_runs import trainers_path

DESCRIPTION = """\
nnunet_ext adds topology-aware training (Skeleton Recall, clDice, cbDice, clCE, Combo, Hausdorff DT, U-Net
weight maps; UNet 3+, U-Net v2) to your stock nnU-Net v2. You keep using nnU-Net's own commands; this tool
sets them up and evaluates topology.

Quick start:
  export nnUNet_extTrainer=$(nnunet-ext trainers-path)
  nnUNetv2_plan_and_preprocess -d 42 -c 3d_fullres
  nnUNetv2_train 42 3d_fullres 0 -tr nnUNetTrainerSkeletonRecall
  nnUNetv2_predict -i IN -o OUT -d 42 -c 3d_fullres -tr nnUNetTrainerSkeletonRecall
  nnunet-ext evaluate GT_FOLDER OUT -djfile dataset.json -pfile nnUNetPlans.json
  nnunet-ext plan-network -d 42 -n UNet3Plus        # then: nnUNetv2_train ... -p nnUNetPlansUNet3Plus
"""


def _trainers_path_command(_args: argparse.Namespace) -> int:
    print(trainers_path())
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    from nnunet_ext.commands.demo import run_demo  # noqa: PLC0415 - heavy imports only when needed

    if args.cases < 5:
        print("error: --cases must be at least 5 (nnU-Net splits the training cases into 5 folds)", file=sys.stderr)
        return 2
    if args.epochs < 1 or args.iterations < 1:
        print("error: --epochs and --iterations must be at least 1", file=sys.stderr)
        return 2
    return run_demo(Path(args.workdir), epochs=args.epochs, iterations=args.iterations, cases=args.cases)


def _evaluate_command(args: argparse.Namespace) -> int:
    from nnunet_ext.evaluation.evaluate import DEFAULT_OUTPUT_NAME, EvaluationError, evaluate_folders  # noqa: PLC0415

    output = Path(args.o) if args.o else Path(args.pred_folder) / DEFAULT_OUTPUT_NAME
    try:
        summary = evaluate_folders(args.gt_folder, args.pred_folder, args.djfile, args.pfile, output,
                                   num_processes=args.np, overwrite=args.overwrite, chill=args.chill)
    except EvaluationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    print("foreground mean: " + ", ".join(f"{name} {value:.4f}" for name, value in summary["foreground_mean"].items()))
    return 0


def _make_dataset_command(args: argparse.Namespace) -> int:
    from nnunet_ext.data.synthetic import (  # noqa: PLC0415
        classes_in_training_cases,
        existing_dataset_folder,
        write_raw_dataset,
    )
    from nnunet_ext.data.synthetic_image import ImageParams  # noqa: PLC0415

    raw = args.raw or os.environ.get("nnUNet_raw")
    if not raw:
        print("error: nnUNet_raw is not set; export nnUNet_raw=/path/to/nnUNet_raw or pass --raw FOLDER",
              file=sys.stderr)
        return 2
    if args.cases < 5:
        print("error: --cases must be at least 5 (nnU-Net splits the training cases into 5 folds)", file=sys.stderr)
        return 2
    # nnU-Net resolves an id through all three roots: one taken anywhere would become ambiguous
    roots = [raw] + [os.environ[v] for v in ("nnUNet_preprocessed", "nnUNet_results") if os.environ.get(v)]
    in_use = next(filter(None, (existing_dataset_folder(Path(root), args.dataset_id) for root in roots)), None)
    if in_use is not None:
        print(f"error: dataset id {args.dataset_id} is taken by {in_use}; pick another id (nothing was written)",
              file=sys.stderr)
        return 1
    name = args.name or f"ThinStructures{args.dim}D"
    size = args.size if args.size is not None else (128 if args.dim == 2 else 64)
    try:
        image_params = None if args.easy else ImageParams(contrast=args.contrast, noise=args.noise,
                                                           gaps_per_case=args.gaps)
        folder = write_raw_dataset(raw, args.dataset_id, name, args.dim, n_train=args.cases,
                                   n_test=args.test_cases, size=size, n_classes=args.classes, seed=args.seed,
                                   image_params=image_params, regions=args.regions)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write the dataset into {raw} ({error.strerror or error}); pass a writable --raw folder "
              f"(or export nnUNet_raw)", file=sys.stderr)
        return 2
    print(f"wrote {folder} ({args.cases} training cases, {args.test_cases} test cases with labels in labelsTs)")
    absent = sorted(set(range(1, args.classes + 1)) - classes_in_training_cases(folder))
    if absent:
        shown = ", ".join(map(str, absent[:10])) + (" ..." if len(absent) > 10 else "")
        print(f"warning: {len(absent)} of the {args.classes} classes occur in no training case ({shown}): a tree of "
              f"{size}-voxel images has few branches; use fewer --classes or a larger --size", file=sys.stderr)
    return 0


def _show_skeleton_command(args: argparse.Namespace) -> int:
    from nnunet_ext.pictures.show_skeleton import CaseFiles, ShowSkeletonError, case_from_dataset, render_skeleton  # noqa: PLC0415

    try:
        if args.d is not None:
            if len(args.inputs) != 1:
                raise ShowSkeletonError("with -d DATASET give one case id, e.g. -d 42 case_007")
            files = case_from_dataset(args.d, args.inputs[0], args.raw, args.ignore_label)
        elif len(args.inputs) == 2:
            files = CaseFiles(Path(args.inputs[0]), Path(args.inputs[1]), args.ignore_label)
        else:
            raise ShowSkeletonError("give IMAGE LABEL files, or -d DATASET CASE_ID")
        if args.tube_radius < 0:
            raise ShowSkeletonError(f"--tube-radius must be >= 0, got {args.tube_radius}")
        written = render_skeleton(files, args.o, args.tube_radius, args.per_class, args.overwrite)
    except ShowSkeletonError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    return 0


def _plan_network_command(args: argparse.Namespace) -> int:
    from nnunet_ext.planning.command import PlanNetworkError, describe, plan_network  # noqa: PLC0415
    from nnunet_ext.planning.networks import NETWORKS  # noqa: PLC0415

    try:
        output, decisions = plan_network(args.d, args.n, args.gpu_memory_target, args.c, args.overwrite)
    except PlanNetworkError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    network = NETWORKS[args.n]
    print(f"wrote {output}")
    for decision in decisions:
        print("  " + describe(decision, network, args.gpu_memory_target))
    names = [decision.name for decision in decisions]
    configuration = "3d_fullres" if "3d_fullres" in names else names[0]
    print(f"train: nnUNetv2_train {args.d} {configuration} 0 -p {network.plans_identifier} "
          f"[-tr {network.trainer}]  (nnUNetPlans' preprocessed data is shared: run nnUNetv2_preprocess "
          f"-d {args.d} if you have not yet)")
    return 0


def _grouped(names: list[str], values: list) -> dict[str, list]:
    """name -> its values in order: a name given several times groups repeats of one method."""
    groups: dict[str, list] = {}
    for name, value in zip(names, values):
        groups.setdefault(name, []).append(value)
    return groups


def _compare_summaries_from_args(args: argparse.Namespace) -> dict:
    """name -> per-case values of each repeat (one summary, or several where --names repeats a name), from SUMMARY
    files or from trainers' cross-validation in nnUNet_results."""
    from nnunet_ext.evaluation.compare import (  # noqa: PLC0415
        ComparisonError,
        cross_validation_summary,
        load_summary,
        refuse_repeated_files,
    )

    if args.summaries and args.d is not None:
        raise ComparisonError("give SUMMARY files or -d DATASET -c CONFIGURATION -tr TRAINERS, not both")
    if args.d is None:
        if len(args.summaries) < 2:
            raise ComparisonError(f"need at least two SUMMARY files (the first is the baseline), got "
                                  f"{len(args.summaries)}")
        if args.names is None or len(args.names) != len(args.summaries):
            given = "none" if args.names is None else len(args.names)
            raise ComparisonError(f"--names must give one name per SUMMARY ({len(args.summaries)}), got {given}")
        _check_repeated_names(args.names, "SUMMARY")
        values = [load_summary(path) for path in args.summaries]
        refuse_repeated_files({name if args.names.count(name) == 1 else f"{name} (summary {i + 1})": path
                               for i, (name, path) in enumerate(zip(args.names, args.summaries))})
        return _grouped(args.names, values)
    if args.c is None or not args.tr or len(args.tr) < 2:
        raise ComparisonError("with -d give -c CONFIGURATION and at least two trainers with -tr (the first is the "
                              "baseline)")
    if len(set(args.tr)) < len(args.tr):
        raise ComparisonError(f"-tr must name distinct trainers (a trainer compared with itself shows no difference), "
                              f"got {args.tr}")
    results = os.environ.get("nnUNet_results")
    if not results:
        raise ComparisonError("nnUNet_results is not set; export it as for nnUNetv2_train")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name  # noqa: PLC0415

    try:
        dataset_name = maybe_convert_to_dataset_name(args.d)
    except RuntimeError as error:
        raise ComparisonError(f"unknown dataset {args.d!r}: {error}") from None
    names = args.names or args.tr
    if len(names) != len(args.tr):
        raise ComparisonError(f"--names must give one name per trainer ({len(args.tr)}), got {names}")
    _check_repeated_names(names, "trainer")
    return _grouped(names, [cross_validation_summary(Path(results), dataset_name, args.c, trainer, args.p, args.f)
                            for trainer in args.tr])


def _check_repeated_names(names: list[str], what: str) -> None:
    """ComparisonError unless there are two methods or more and each is named equally often (its repeats)."""
    from nnunet_ext.evaluation.compare import ComparisonError  # noqa: PLC0415

    counts = {name: names.count(name) for name in names}
    if len(counts) < 2:
        raise ComparisonError(f"--names must name at least two distinct methods (the first is the baseline; a name "
                              f"given several times groups repeats), got {names}")
    if len(set(counts.values())) > 1:
        raise ComparisonError(f"--names gives methods different numbers of repeats ({counts}): name each method "
                              f"once per {what}, the same number of times (one {what} per repeat)")


def _compare_command(args: argparse.Namespace) -> int:
    from nnunet_ext.evaluation.compare import (  # noqa: PLC0415
        SummaryError,
        compare_repeats,
        compare_summaries,
        markdown_table,
        mean_over_repeats,
        write_comparison,
    )

    try:
        repeats = _compare_summaries_from_args(args)
        if max(len(runs) for runs in repeats.values()) == 1:
            summaries = {name: runs[0] for name, runs in repeats.items()}
            comparison = compare_summaries(summaries, chill=args.chill)
        else:
            summaries = {name: mean_over_repeats(runs, args.chill) for name, runs in repeats.items()}
            comparison = compare_repeats(repeats, chill=args.chill)
        written = write_comparison(comparison, summaries, args.o, overwrite=args.overwrite)
    except SummaryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(markdown_table(comparison))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _study_command(args: argparse.Namespace) -> int:
    from dataclasses import replace  # noqa: PLC0415

    from nnunet_ext.commands.study import (  # noqa: PLC0415
        BENCHMARKS,
        DEFAULT_BUDGETS,
        DEFAULT_TRAINERS,
        ESTIMATED_CPU_MINUTES,
        FULL_EPOCHS,
        FULL_ITERATIONS,
        TINY,
        Budget,
        StudySettings,
        run_study,
    )

    if args.full and (args.epochs is not None or args.iterations is not None):
        print("error: --full is nnU-Net's own budget (1000 x 250); leave out --epochs / --iterations", file=sys.stderr)
        return 2
    if args.tiny and args.dim != 2:
        print("error: --tiny is a 2D smoke run; leave out --dim", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print(f"error: --repeats must be >= 1 (trainings per trainer, each with its own seed), got {args.repeats}",
              file=sys.stderr)
        return 2
    if args.slice_step < 1 or (args.slice_step > 1 and args.dim != 3):
        print(f"error: --slice-step must be >= 1, and > 1 only with --dim 3 (thick slices); got {args.slice_step}",
              file=sys.stderr)
        return 2
    if args.full:
        budget = Budget(FULL_EPOCHS, FULL_ITERATIONS)
    else:
        default = Budget(1, 2) if args.tiny else DEFAULT_BUDGETS[args.dim]
        try:
            budget = Budget(default.epochs if args.epochs is None else args.epochs,
                            default.iterations if args.iterations is None else args.iterations)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    trainers = tuple(args.tr or DEFAULT_TRAINERS)
    if len(set(trainers)) < len(trainers) or len(trainers) < 2:
        print(f"error: -tr needs at least two distinct trainers (the first is the baseline), got {list(trainers)}",
              file=sys.stderr)
        return 2
    device = args.device
    if device is None:
        import torch  # noqa: PLC0415

        device = "cuda" if torch.cuda.is_available() else "cpu"
    benchmark = TINY if args.tiny else replace(BENCHMARKS[args.dim], slice_step=args.slice_step)
    settings = StudySettings(benchmark, budget, trainers, device, args.repeats)
    estimate = ESTIMATED_CPU_MINUTES.get(args.dim)
    if (not args.tiny and device == "cpu" and estimate and budget == DEFAULT_BUDGETS[args.dim]
            and trainers == DEFAULT_TRAINERS and args.repeats == 1 and args.slice_step == 1):
        print(f"estimated wall time on 2 CPU cores: about {estimate} min (an estimate from timed training "
              f"iterations, not a measured run; see docs/evaluation.md)", flush=True)
    return run_study(Path(args.workdir), settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-ext", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    tp = commands.add_parser(
        "trainers-path", help="print the folder to put in nnUNet_extTrainer",
        description="Print the folder that holds nnunet_ext's nnU-Net trainers. nnU-Net searches the folders "
                    "listed in the nnUNet_extTrainer environment variable (separated by ':' on Linux/macOS, "
                    "';' on Windows) for the trainer named with -tr. Use: "
                    "export nnUNet_extTrainer=$(nnunet-ext trainers-path)")
    tp.set_defaults(func=_trainers_path_command)

    demo = commands.add_parser(
        "demo", help="plain nnU-Net vs Skeleton Recall on a generated 2D vessel dataset: train, predict, "
                     "evaluate, table and figure (CPU, ~10 min)",
        description="End-to-end demo with nnU-Net's own commands: writes a hard synthetic 2D vessel dataset, "
                    "runs nnUNetv2_plan_and_preprocess, short nnUNetv2_train runs of plain nnU-Net and of "
                    "Skeleton Recall on the CPU, nnUNetv2_predict on the test images, evaluates both "
                    "(Dice, clDice, Betti errors, ...), prints a side-by-side table and saves WORKDIR/demo.png. "
                    "A short CPU run is a smoke test of the pipeline, not a trained model.")
    demo.add_argument("--workdir", default="nnunet_ext_demo",
                      help="folder for nnUNet_raw/preprocessed/results of the demo; must not exist yet "
                           "(default: ./nnunet_ext_demo)")
    demo.add_argument("--epochs", type=int, default=5, help="training epochs per trainer (default 5)")
    demo.add_argument("--iterations", type=int, default=40, help="iterations per epoch (default 40)")
    demo.add_argument("--cases", type=int, default=10, help="training cases to generate, >= 5 (default 10)")
    demo.set_defaults(func=_demo_command)

    make = commands.add_parser(
        "make-dataset", help="write a synthetic thin-structure dataset (branching tubes) into nnUNet_raw",
        description="Write DatasetID_NAME in nnU-Net's raw format: branching tubes whose radius shrinks down to "
                    "one voxel, optionally several classes, in hard images (low contrast, noise, smooth "
                    "intensity inhomogeneity, background clutter, and short occluded gaps where the label "
                    "continues), so that connectivity needs context. Test images get labels in labelsTs. "
                    "An id that exists in nnUNet_raw, nnUNet_preprocessed or nnUNet_results is refused.")
    make.add_argument("dataset_id", type=int, help="nnU-Net dataset id (1..999)")
    make.add_argument("--dim", type=int, choices=(2, 3), required=True, help="2D or 3D images")
    make.add_argument("--cases", type=int, default=20, help="training cases, >= 5 (default 20)")
    make.add_argument("--test-cases", type=int, default=5, help="test cases in imagesTs/labelsTs (default 5)")
    make.add_argument("--classes", type=int, default=1, help="foreground classes, assigned by branch (default 1)")
    make.add_argument("--size", type=int, default=None, help="edge length in voxels (default 128 in 2D, 64 in 3D)")
    make.add_argument("--name", default=None, help="dataset name (default ThinStructures2D / ThinStructures3D)")
    make.add_argument("--seed", type=int, default=0, help="random seed; case i uses seed + i (default 0)")
    make.add_argument("--raw", default=None, help="the nnUNet_raw folder (default: $nnUNet_raw)")
    make.add_argument("--contrast", type=float, default=0.6, help="vessel brightness over background (default 0.6)")
    make.add_argument("--noise", type=float, default=0.25, help="noise standard deviation (default 0.25)")
    make.add_argument("--gaps", type=int, default=4, help="occluded gaps per case (default 4)")
    make.add_argument("--regions", action="store_true",
                      help="declare overlapping regions for nnU-Net's region-based training (needs --classes >= 2): "
                           "the whole tree, then each class >= 2 on its own")
    make.add_argument("--easy", action="store_true",
                      help="bright vessels plus noise only: no inhomogeneity, clutter or gaps")
    make.set_defaults(func=_make_dataset_command)

    show = commands.add_parser(
        "show-skeleton", help="PNG of an image, its label and the tubed skeleton nnU-Net trains on",
        description="Render image, label and tubed skeleton (the Skeleton Recall target) of one case into a PNG: "
                    "2D directly, 3D as maximum-intensity projections along each axis plus the middle slices. "
                    "Give IMAGE LABEL files (any format nnU-Net reads; the image's first channel is shown) or "
                    "-d DATASET CASE_ID for a case of a dataset in nnUNet_raw.")
    show.add_argument("inputs", nargs="+", metavar="CASE_OR_FILES", help="IMAGE LABEL, or CASE_ID with -d")
    show.add_argument("-o", required=True, help="output .png; never overwritten unless --overwrite")
    show.add_argument("-d", default=None, help="dataset id or name in nnUNet_raw (then give a case id)")
    show.add_argument("--raw", default=None, help="the nnUNet_raw folder (default: $nnUNet_raw)")
    show.add_argument("--tube-radius", type=int, default=2, help="dilations of the skeleton (default 2, as trained)")
    show.add_argument("--per-class", action="store_true", help="skeletonize each class on its own")
    show.add_argument("--ignore-label", type=int, default=None,
                      help="label value to treat as background, as nnU-Net's ignore label (with -d: read from "
                           "dataset.json)")
    show.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    show.set_defaults(func=_show_skeleton_command)

    evaluate = commands.add_parser(
        "evaluate", help="Dice, clDice, Betti, pixel, Rand and warping errors of a prediction folder",
        description="Like nnUNetv2_evaluate_folder, with topology metrics: per case and foreground class Dice, "
                    "clDice (hard skeletons), Betti number errors (b0, b1, and b2 in 3D), pixel error, adapted "
                    "Rand error and warping error, written as JSON in the shape of nnU-Net's summary.json. "
                    "Connectivity: foreground 8 (2D) / 26 (3D), background 4 / 6.")
    evaluate.add_argument("gt_folder", help="folder with the ground-truth segmentations")
    evaluate.add_argument("pred_folder", help="folder with the predicted segmentations (same file names)")
    evaluate.add_argument("-djfile", required=True, help="the dataset's dataset.json")
    evaluate.add_argument("-pfile", required=True, help="the plans file (e.g. nnUNetPlans.json)")
    evaluate.add_argument("-o", default=None, help="output .json (default: PRED_FOLDER/summary_topology.json); "
                                                   "never overwritten unless --overwrite")
    evaluate.add_argument("-np", type=int, default=2, help="worker processes (default 2; 0: in this process)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    evaluate.add_argument("--chill", action="store_true",
                          help="evaluate only the predicted cases instead of refusing missing predictions")
    evaluate.set_defaults(func=_evaluate_command)

    plan = commands.add_parser(
        "plan-network", help="plan UNet 3+ / U-Net v2 for nnU-Net's GPU memory target: nnUNetPlans<NETWORK>.json",
        description="Re-plan a dataset's nnU-Net default plans (nnUNetPlans.json) for UNet3Plus or UNetV2 the way "
                    "nnU-Net's residual-encoder planners do: with this network's memory estimate, keep nnU-Net's "
                    "patch size by lowering cat_channels (UNet3Plus: 64 -> 16) / sdi_channels (UNetV2: 32 -> 16) "
                    "if that fits the target, else shrink the patch with nnU-Net's own search; batch size >= 2. "
                    "Writes nnUNet_preprocessed/DatasetXXX/nnUNetPlans<NETWORK>.json, sharing nnUNetPlans' "
                    "preprocessed data; train with nnUNetv2_train ID CONF FOLD -p nnUNetPlans<NETWORK>.")
    plan.add_argument("-d", required=True, metavar="DATASET", help="dataset id or name")
    plan.add_argument("-n", required=True, metavar="NETWORK", help="UNet3Plus or UNetV2")
    plan.add_argument("--gpu-memory-target", type=float, default=8.0, metavar="GB",
                      help="GPU memory to plan for, as nnUNetv2_plan_experiment -gpu_memory_target (default 8)")
    plan.add_argument("-c", nargs="+", default=None, metavar="CONFIGURATION",
                      help="configurations to plan (default: all of nnUNetPlans.json; parents and cascade stages "
                           "they need are added)")
    plan.add_argument("--overwrite", action="store_true", help="replace an existing nnUNetPlans<NETWORK>.json")
    plan.set_defaults(func=_plan_network_command)

    compare = commands.add_parser(
        "compare", help="paired statistics of several methods on the same cases (mean difference, bootstrap CI, "
                        "Wilcoxon p) with a table and a figure",
        description="Compare methods on the same cases, the first one the baseline. Give summary files "
                    "(summary_topology.json from `nnunet-ext evaluate` or a trainer's final validation, or nnU-Net's "
                    "summary.json) with --names, or -d/-c/-tr to gather each trainer's cross-validation summaries "
                    "(fold_X/validation) from nnUNet_results. Cases pair up by the reference file's name; a case's "
                    "value is the NaN-ignoring mean over foreground classes. Writes OUT_DIR/comparison.json, "
                    "comparison.md (the table) and comparison.png (each case's values under every method).")
    compare.add_argument("summaries", nargs="*", metavar="SUMMARY", help="summary JSON files, baseline first")
    compare.add_argument("--names", nargs="+", default=None,
                         help="one name per SUMMARY (or per trainer); a name given several times groups repeated "
                              "trainings of one method (per-case means, the spread between repeats reported)")
    compare.add_argument("-d", default=None, help="dataset id or name (gather cross-validation summaries)")
    compare.add_argument("-c", default=None, help="configuration, with -d (e.g. 2d, 3d_fullres)")
    compare.add_argument("-tr", nargs="+", default=None, help="trainers, baseline first, with -d")
    compare.add_argument("-p", default="nnUNetPlans", help="plans identifier, with -d (default nnUNetPlans)")
    compare.add_argument("-f", nargs="+", type=int, default=None, help="folds, with -d (default: all trained folds)")
    compare.add_argument("-o", required=True, help="output folder for comparison.json/.md/.png")
    compare.add_argument("--chill", action="store_true", help="compare only the cases every summary has")
    compare.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in OUT_DIR")
    compare.set_defaults(func=_compare_command)

    study = commands.add_parser(
        "study", help="reproducible topology study: generated benchmark, nnU-Net train/predict for several "
                      "trainers with the same budget, evaluate, compare (resumable)",
        description="Run the whole comparison through nnU-Net's own commands on a fixed generated benchmark (2D: "
                    "40 training and 40 test cases of 128x128 hard vessel images; 3D: two touching artery/vein-like "
                    "classes, see docs/evaluation.md): nnUNetv2_plan_and_preprocess, "
                    "nnUNetv2_train (fold 0) for every trainer with the same number of epochs x iterations, "
                    "nnUNetv2_predict on the test images, nnunet-ext evaluate and nnunet-ext compare (the first "
                    "trainer is the baseline). Run the same command again to resume: finished steps are kept. "
                    "Writes WORKDIR/comparison/comparison.md, .json and .png.")
    study.add_argument("--workdir", default="topology_study", help="the study's folder (default ./topology_study)")
    study.add_argument("-tr", nargs="+", default=None,
                       help="trainers, baseline first (default: nnUNetTrainer nnUNetTrainerSkeletonRecall "
                            "nnUNetTrainerClDice)")
    study.add_argument("--dim", type=int, choices=(2, 3), default=2,
                       help="2D (default) or 3D benchmark (two touching, crossing vessel classes)")
    study.add_argument("--epochs", type=int, default=None, help="epochs per trainer (default 8 in 2D, 2 in 3D)")
    study.add_argument("--iterations", type=int, default=None,
                       help="iterations per epoch (default 250 in 2D, 60 in 3D)")
    study.add_argument("--repeats", type=int, default=1,
                       help="train every trainer N times with seeds 0..N-1 and compare the per-case means, with the "
                            "spread between repeats beside each difference (default 1)")
    study.add_argument("--slice-step", type=int, default=1,
                       help="3D only: keep every K-th slice (spacing 1 x 1 x K, anisotropic); default 1")
    study.add_argument("--full", action="store_true", help="nnU-Net's own budget, 1000 epochs x 250 (a GPU's job)")
    study.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    study.add_argument("--tiny", action="store_true", help="a smoke run: 5 + 6 cases of 32x32, 1 epoch x 2 "
                                                           "iterations")
    study.set_defaults(func=_study_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
