"""The ``nnunet-ext`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
nnunet_ext adds topology-aware training (Skeleton Recall, clDice, Combo; UNet 3+, U-Net v2) to your
stock nnU-Net v2. You keep using nnU-Net's own commands; this tool sets them up and evaluates topology.

Quick start:
  export nnUNet_extTrainer=$(nnunet-ext trainers-path)
  nnUNetv2_plan_and_preprocess -d 42 -c 3d_fullres
  nnUNetv2_train 42 3d_fullres 0 -tr nnUNetTrainerSkeletonRecall
  nnUNetv2_predict -i IN -o OUT -d 42 -c 3d_fullres -tr nnUNetTrainerSkeletonRecall
"""


def trainers_path() -> Path:
    """The folder to put in ``nnUNet_extTrainer`` (where nnU-Net finds our trainers)."""
    import nnunet_ext.trainers as trainers  # noqa: PLC0415 - keep `--help` fast

    return Path(trainers.__file__).resolve().parent


def _trainers_path_command(_args: argparse.Namespace) -> int:
    print(trainers_path())
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    from nnunet_ext.demo import run_demo  # noqa: PLC0415 - heavy imports only when needed

    if args.cases < 5:
        print("error: --cases must be at least 5 (nnU-Net splits the training cases into 5 folds)", file=sys.stderr)
        return 2
    if args.epochs < 1 or args.iterations < 1:
        print("error: --epochs and --iterations must be at least 1", file=sys.stderr)
        return 2
    return run_demo(Path(args.workdir), epochs=args.epochs, iterations=args.iterations, cases=args.cases)


def _evaluate_command(args: argparse.Namespace) -> int:
    from nnunet_ext.evaluation import DEFAULT_OUTPUT_NAME, EvaluationError, evaluate_folders  # noqa: PLC0415

    output = Path(args.o) if args.o else Path(args.pred_folder) / DEFAULT_OUTPUT_NAME
    try:
        summary = evaluate_folders(args.gt_folder, args.pred_folder, args.djfile, args.pfile, output,
                                   num_processes=args.np, overwrite=args.overwrite)
    except EvaluationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    print("foreground mean: " + ", ".join(f"{name} {value:.4f}" for name, value in summary["foreground_mean"].items()))
    return 0


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
        "demo", help="generate a small synthetic vessel dataset, train Skeleton Recall briefly on the CPU, predict",
        description="End-to-end smoke demo with nnU-Net's own commands: writes a synthetic 2D vessel dataset, "
                    "runs nnUNetv2_plan_and_preprocess, a short nnUNetv2_train with a Skeleton Recall "
                    "variant on the CPU, and nnUNetv2_predict. A short CPU run shows that everything works; "
                    "it is not a trained model.")
    demo.add_argument("--workdir", default="nnunet_ext_demo",
                      help="folder for nnUNet_raw/preprocessed/results of the demo; must not exist yet "
                           "(default: ./nnunet_ext_demo)")
    demo.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    demo.add_argument("--iterations", type=int, default=25, help="iterations per epoch (default 25)")
    demo.add_argument("--cases", type=int, default=10, help="training cases to generate, >= 5 (default 10)")
    demo.set_defaults(func=_demo_command)

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
    evaluate.set_defaults(func=_evaluate_command)
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
