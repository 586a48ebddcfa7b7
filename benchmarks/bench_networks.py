"""Benchmark: UNet 3+ and U-Net v2 against nnU-Net's PlainConvUNet built from the same plans.

For a 2D and a 3D nnU-Net-style plan (the arch_kwargs nnU-Net writes: stages, features, strides,
InstanceNorm, LeakyReLU), builds the three networks through nnU-Net's own ``get_network_from_plans``
with deep supervision on (as in training), and measures

- parameters;
- forward + backward time of one training step's network part (sum of all deep-supervision outputs
  as the loss), the median of ``--repeats`` runs after one warm-up;
- peak memory of one forward + backward: on the CPU, the rise of the process's resident-set
  high-water mark, every (case, network) in a fresh process (see ``fresh_process.py``); on CUDA,
  ``torch.cuda.max_memory_allocated`` above the memory in use before the step.

and prints them with ratios to PlainConvUNet, side by side.

Every timed step goes to benchmarks/results/networks.json (``--no-save``: not; a ``--quick`` run is not saved).

Run:  .venv/bin/python benchmarks/bench_networks.py [--repeats 3] [--device cpu|cuda] [--quick] [--cases 2D]
          [--no-save] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import results_io
import torch
from fresh_process import load_average, max_rss_mib, run_worker
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

NETWORKS = {
    "PlainConvUNet": ("dynamic_network_architectures.architectures.unet.PlainConvUNet", {}),
    "UNet3Plus": ("nnunet_ext.networks.UNet3Plus", {"cat_channels": 64}),
    "UNetV2": ("nnunet_ext.networks.UNetV2", {"sdi_channels": 32}),
}


def plans_arch_kwargs(dim: int, features: list[int], strides: list[list[int]]) -> dict:
    """arch_kwargs as nnU-Net's default planner writes them (PlainConvUNet, InstanceNorm, LeakyReLU)."""
    n = len(features)
    return {"n_stages": n, "features_per_stage": features, "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": [[3] * dim] * n, "strides": strides, "n_conv_per_stage": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}


# name: (batch, patch size, features, strides). Sized for a 2-core CPU (a step of UNet 3+ takes tens of
# seconds there); nnU-Net's GPU plans are larger (2D 512^2 batch 12, 3D 128^3 batch 2).
CASES = {
    "2D": (2, (128, 128), [32, 64, 128, 256, 512], [[1, 1]] + [[2, 2]] * 4),
    "3D": (1, (16, 64, 64), [32, 64, 128, 256, 320],
           [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]),
}
QUICK_CASES = {
    "2D": (1, (64, 64), [8, 16, 32, 64], [[1, 1]] + [[2, 2]] * 3),
    "3D": (1, (16, 32, 32), [8, 16, 32, 64], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
}
REQUIRES_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]


def build(network: str, case: tuple, num_classes: int = 3) -> torch.nn.Module:
    _, patch, features, strides = case
    class_name, own_kwargs = NETWORKS[network]
    arch = {**plans_arch_kwargs(len(patch), features, strides), **own_kwargs}
    return get_network_from_plans(class_name, arch, REQUIRES_IMPORT, 1, num_classes, deep_supervision=True)


def step(net: torch.nn.Module, x: torch.Tensor) -> None:
    net.zero_grad(set_to_none=True)
    outputs = net(x)
    sum(o.float().mean() for o in outputs).backward()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def worker(case_name: str, network: str, repeats: int, quick: bool, device: str) -> dict:
    case = (QUICK_CASES if quick else CASES)[case_name]
    batch, patch = case[0], case[1]
    net = build(network, case).to(device)
    params = sum(p.numel() for p in net.parameters())
    # Warm-up on the smallest input the network takes (kernels, libraries), then allocate the input:
    # the peak of the first full-size step is then the memory of the step itself.
    smallest = [int(v) for v in np.prod(np.array(case[3]), axis=0)]
    step(net, torch.randn(1, 1, *[2 * v for v in smallest], device=device))
    net.zero_grad(set_to_none=True)
    x = torch.randn(batch, 1, *patch, device=device)
    synchronize(device)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(net, x)
        synchronize(device)
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        high_before = max_rss_mib()
        step(net, x)
        peak = max_rss_mib() - high_before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(net, x)
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return {"params": params, "median_ms": statistics.median(times), "times_ms": [round(t, 3) for t in times],
            "peak_mib": peak, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per case and network (>= 1)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="small plans, for a fast check of the script")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), help="run only these cases (default: all)")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "NETWORK"), help=argparse.SUPPRESS)
    results_io.add_arguments(parser)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.worker:
        import json

        print(json.dumps(worker(*args.worker, args.repeats, args.quick, args.device)))
        return

    cases = {name: case for name, case in (QUICK_CASES if args.quick else CASES).items()
             if not args.cases or name in args.cases}
    recording = results_io.Recording("networks", {
        "repeats": args.repeats, "device": args.device, "quick": args.quick,
        "cases": {name: {"batch": batch, "patch": list(patch), "features": features, "strides": strides}
                  for name, (batch, patch, features, strides) in cases.items()},
        "networks": {name: {"class": class_name, **kwargs} for name, (class_name, kwargs) in NETWORKS.items()}},
        args, quick=args.quick)
    print(f"torch {torch.__version__}, device {args.device}, {os.cpu_count()} CPUs, repeats={args.repeats}"
          f"{', quick plans' if args.quick else ''}, deep supervision on, load average {load_average()}")
    header = (f"{'case':4s} {'network':14s} | {'params':>11s} {'ratio':>6s} | {'fwd+bwd ms':>10s} {'ratio':>6s} | "
              f"{'peak MiB':>9s} {'ratio':>6s}")
    rows, measured = [], {}
    for case_name, (batch, patch, features, strides) in cases.items():
        print(f"{case_name}: batch {batch}, patch {'x'.join(map(str, patch))}, features {features}, "
              f"strides {strides}", flush=True)
        results = {}
        for network in NETWORKS:
            worker_args = [case_name, network, "--repeats", str(args.repeats), "--device", args.device]
            results[network] = run_worker(__file__, worker_args + (["--quick"] if args.quick else []))
            print(f"  {network}: {results[network]}", flush=True)
        measured[case_name] = results
        base = results["PlainConvUNet"]
        for network, res in results.items():
            rows.append(f"{case_name:4s} {network:14s} | {res['params']:11,d} {res['params'] / base['params']:6.2f} | "
                        f"{res['median_ms']:10.1f} {res['median_ms'] / base['median_ms']:6.2f} | "
                        f"{res['peak_mib']:9.1f} {res['peak_mib'] / base['peak_mib']:6.2f}")
    print()
    print("ratio = network / PlainConvUNet from the same plans")
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    print(f"load average at the end {load_average()}")
    recording.save({"cases": measured})


if __name__ == "__main__":
    main()
