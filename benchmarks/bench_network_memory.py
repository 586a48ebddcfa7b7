"""Benchmark: the planner's memory estimate against measured peak memory, for PlainConvUNet, UNet 3+, U-Net v2.

For 2D and 3D nnU-Net-style plans (the arch_kwargs nnU-Net writes: InstanceNorm, LeakyReLU, 2 convs per
stage), every (case, network) runs in a fresh process (see ``fresh_process.py``): the network is built
through nnU-Net's ``get_network_from_plans`` with deep supervision on (as trained), warmed up on a small
input (kernels, gradient buffers), and then one forward + backward of the case's batch (loss = sum of the
outputs' means) is measured on the CPU in float32: the rise of the resident-set high-water mark above the
resident set before the step. The gradients of the warm-up stay allocated, so the rise is what the step
adds: kept activations and the backward pass's temporaries.

The estimate is ``network.compute_conv_feature_map_size(patch) * batch`` (PlainConvUNet: its own count in
dynamic_network_architectures; ours: ``nnunet_ext.networks.feature_map_size``'s rules), with the same deep
supervision setting as the measured network. The script prints estimate and measurement side by side, the
bytes measured per estimated unit, and that ratio relative to PlainConvUNet's in the same case: 1.00 means
one unit of our estimate costs what one unit of PlainConvUNet's does, so nnU-Net's reference values apply.

The measurements go to benchmarks/results/network_memory.json (``--no-save``: not; a ``--quick`` run is not saved).

Run:  .venv/bin/python benchmarks/bench_network_memory.py [--quick] [--no-save] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import results_io
import torch
from fresh_process import current_rss_mib, load_average, max_rss_mib, run_worker
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_ext.planning.memory import estimated_gb

MIB = 2**20
PLAIN = "PlainConvUNet"
CLASS_NAMES = {PLAIN: "dynamic_network_architectures.architectures.unet.PlainConvUNet",
               "UNet3Plus": "nnunet_ext.networks.UNet3Plus", "UNetV2": "nnunet_ext.networks.UNetV2"}
REQUIRES_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]


def plans_arch_kwargs(dim: int, features: list[int], strides: list[list[int]]) -> dict:
    """arch_kwargs as nnU-Net's default planner writes them (PlainConvUNet, InstanceNorm, LeakyReLU)."""
    n = len(features)
    return {"n_stages": n, "features_per_stage": features, "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": [[3] * dim] * n, "strides": strides, "n_conv_per_stage": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}


S2 = [[1, 1]] + [[2, 2]] * 5
S3 = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
# name: (batch, patch, features, strides, [(network, own kwargs), ...]). Sized for a 2-core CPU with 24 GB.
CASES = {
    "2D 256^2 b2": (2, (256, 256), [32, 64, 128, 256, 512, 512], S2,
                    [(PLAIN, {}), ("UNet3Plus", {"cat_channels": 16}), ("UNet3Plus", {"cat_channels": 32}),
                     ("UNetV2", {"sdi_channels": 16}), ("UNetV2", {"sdi_channels": 32})]),
    "3D 32x64x64 b2": (2, (32, 64, 64), [32, 64, 128, 256, 320], S3,
                       [(PLAIN, {}), ("UNet3Plus", {"cat_channels": 16}), ("UNet3Plus", {"cat_channels": 32}),
                        ("UNetV2", {"sdi_channels": 16}), ("UNetV2", {"sdi_channels": 32})]),
}
QUICK_CASES = {
    "2D 64^2 b2": (2, (64, 64), [8, 16, 32, 64], [[1, 1]] + [[2, 2]] * 3,
                   [(PLAIN, {}), ("UNet3Plus", {"cat_channels": 8}), ("UNetV2", {"sdi_channels": 8})]),
    "3D 16x32x32 b1": (1, (16, 32, 32), [8, 16, 32, 64], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                       [(PLAIN, {}), ("UNet3Plus", {"cat_channels": 8}), ("UNetV2", {"sdi_channels": 8})]),
}


def build(network: str, own_kwargs: dict, patch: tuple, features: list[int], strides: list, num_classes: int = 3):
    arch = {**plans_arch_kwargs(len(patch), features, strides), **own_kwargs}
    return get_network_from_plans(CLASS_NAMES[network], arch, REQUIRES_IMPORT, 1, num_classes, deep_supervision=True)


def step(net: torch.nn.Module, x: torch.Tensor) -> None:
    outputs = net(x)
    sum(o.float().mean() for o in outputs).backward()


def worker(case_name: str, index: int, quick: bool) -> dict:
    batch, patch, features, strides, variants = (QUICK_CASES if quick else CASES)[case_name]
    network, own_kwargs = variants[index]
    net = build(network, own_kwargs, patch, features, strides)
    smallest = [int(v) for v in np.prod(np.array(strides), axis=0)]
    step(net, torch.randn(1, 1, *[2 * v for v in smallest]))  # warm-up: kernels, gradient buffers
    net.zero_grad(set_to_none=False)
    x = torch.randn(batch, 1, *patch)
    before = current_rss_mib()
    start = time.perf_counter()
    step(net, x)
    seconds = time.perf_counter() - start
    peak = max_rss_mib() - before
    units = float(net.compute_conv_feature_map_size(list(patch))) * batch
    return {"units": units, "peak_mib": peak, "seconds": seconds, "threads": torch.get_num_threads()}


def label(network: str, own_kwargs: dict) -> str:
    return network + "".join(f" {key.split('_')[0]}={value}" for key, value in own_kwargs.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny plans, for a fast check of the script")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "INDEX"), help=argparse.SUPPRESS)
    results_io.add_arguments(parser)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.quick)))
        return

    cases = QUICK_CASES if args.quick else CASES
    recording = results_io.Recording("network_memory", {
        "quick": args.quick,
        "cases": {name: {"batch": batch, "patch": list(patch), "features": features, "strides": strides,
                         "networks": [label(network, kwargs) for network, kwargs in variants]}
                  for name, (batch, patch, features, strides, variants) in cases.items()}}, args, quick=args.quick)
    measured = []
    print(f"torch {torch.__version__}, CPU float32, {os.cpu_count()} CPUs, deep supervision on, "
          f"load average {load_average()}")
    header = (f"{'case':15s} {'network':18s} | {'estimate Munits':>15s} {'(nnU-Net GB)':>12s} | "
              f"{'measured MiB':>12s} {'bytes/unit':>10s} {'vs plain':>8s} | {'step s':>6s}")
    rows, relative = [], []
    for case_name, (_, patch, _, _, variants) in cases.items():
        dim = len(patch)
        plain_bytes_per_unit = None
        for index, (network, own_kwargs) in enumerate(variants):
            extra = ["--quick"] if args.quick else []
            res = run_worker(__file__, [case_name, str(index), *extra])
            measured.append({"case": case_name, "network": label(network, own_kwargs), "class": network,
                             "estimated_gb": estimated_gb(res["units"], 1, dim), **res})
            bytes_per_unit = res["peak_mib"] * MIB / res["units"]
            if network == PLAIN:
                plain_bytes_per_unit = bytes_per_unit
            else:
                relative.append(bytes_per_unit / plain_bytes_per_unit)
            rows.append(f"{case_name:15s} {label(network, own_kwargs):18s} | {res['units'] / 1e6:15.1f} "
                        f"{estimated_gb(res['units'], 1, dim):12.2f} | {res['peak_mib']:12.1f} "
                        f"{bytes_per_unit:10.2f} {bytes_per_unit / plain_bytes_per_unit:8.2f} | "
                        f"{res['seconds']:6.1f}")
            print(rows[-1], flush=True)
    print()
    print("estimate = compute_conv_feature_map_size(patch) x batch; nnU-Net GB = what nnU-Net's reference "
          "(560e6 x 2 / 85e6 x 12 units <-> 8 GB) makes of it")
    print("measured = rise of the resident-set high-water mark over one forward + backward (CPU, float32)")
    print("vs plain = bytes/unit of the network / bytes/unit of PlainConvUNet in the same case")
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    print(f"our networks' bytes per unit relative to PlainConvUNet's: {min(relative):.2f} - {max(relative):.2f}")
    print(f"load average at the end {load_average()}")
    recording.save({"runs": measured})


if __name__ == "__main__":
    main()
