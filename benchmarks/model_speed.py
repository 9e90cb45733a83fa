"""Benchmark: GeoMorph network speed and memory, hex-form GeoConv vs torch_geometric GMMConv.

Network: the default ``NetworkConfig`` (input ico-6, K=1, encoders [32, 32, 64, 64, 128],
residual classifier [256, 128, 128, 128, 600, 600], control grid ico-4, L=600; "variant A").
Cases, each in a fresh subprocess so that its peak RSS (``resource.getrusage``, includes the
~0.3-0.5 GB of the Python/torch process itself) is its own:

* ``hex fp32``: our GeoConv (gather + dense matmul), float32;
* ``hex bf16``: the same under ``torch.autocast(cpu/cuda, bfloat16)``;
* ``GMMConv fp32``: the same network with torch_geometric's ``GMMConv`` message passing on
  the same neighbourhoods (only when torch_geometric is installed).

Inference = ``net(moving, fixed)`` under ``torch.no_grad()``; train step = forward, a
cross-entropy loss on random labels, backward (no optimiser step). Times are medians of
``--repeats`` runs after one warm-up run. Ratio = GMMConv time / hex time, same run.

Run: ``THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/model_speed.py [--repeats N]
[--device cpu|cuda]`` (default N=5, device cpu); prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before importing torch (faster large allocations)
from geomorph_bids.cli.machine import threads_wait_passively  # noqa: E402

# as the commands run: spinning OpenMP threads slowed the network 5-8x on a busy host, so a timing
# from this script differed from the command's (before numpy and torch start OpenMP)
threads_wait_passively()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from geomorph_bids.model.network import GeoMorphNet, NetworkConfig  # noqa: E402
from geomorph_bids.sphere.icosphere import n_vertices  # noqa: E402

from geomorph_bids.model.gmm_oracle import GMMConvHex  # noqa: E402

CASES = ("hex-fp32", "hex-bf16", "gmm-fp32")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_case(case: str, repeats: int, device: str) -> dict:
    """Time one case in this process; returns medians (s) and peak RSS (GiB)."""
    torch.manual_seed(0)
    cfg = NetworkConfig()
    net = GeoMorphNet(cfg, conv=GMMConvHex) if case.startswith("gmm") else GeoMorphNet(cfg)
    net = net.to(device)
    V = n_vertices(cfg.input_level)
    moving = torch.randn(1, V, cfg.in_channels, device=device)
    fixed = torch.randn(1, V, cfg.in_channels, device=device)
    target = torch.randint(0, cfg.n_labels, (n_vertices(cfg.control_level),), device=device)
    bf16 = case.endswith("bf16")

    def autocast():
        return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)

    def infer() -> None:
        with torch.no_grad(), autocast():
            net(moving, fixed)

    def train_step() -> None:
        net.zero_grad(set_to_none=True)
        with autocast():
            logits = net(moving, fixed)[0]
        nn.functional.cross_entropy(logits.float(), target).backward()

    out = {"case": case, "params": net.n_parameters()}
    for name, fn in (("infer", infer), ("train", train_step)):
        fn()
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    out["rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device == "cuda":
        out["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: one subprocess
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats, args.device)))
        return

    try:
        import torch_geometric  # noqa: F401
        cases = CASES
    except ImportError:
        cases = CASES[:2]
    results = {}
    for case in cases:
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--repeats",
                               str(args.repeats), "--device", args.device],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            results[case] = {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        else:
            results[case] = json.loads(proc.stdout.strip().splitlines()[-1])

    hex32 = results["hex-fp32"]
    print(f"GeoMorphNet default config (input ico-6, control ico-4, L=600, "
          f"{hex32.get('params', 0) / 1e6:.2f} M parameters), device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} runs\n")
    mem_col = "peak RSS (GiB)" + (" / CUDA peak (GiB)" if args.device == "cuda" else "")
    print(f"| implementation | inference (s) | train step (s) | {mem_col} "
          f"| inference vs hex fp32 | train vs hex fp32 |")
    print("|---|---|---|---|---|---|")
    labels = {"hex-fp32": "hex GeoConv, float32", "hex-bf16": "hex GeoConv, bf16 autocast",
              "gmm-fp32": "torch_geometric GMMConv, float32"}
    for case in cases:
        r = results[case]
        if "error" in r:
            print(f"| {labels[case]} | failed: {r['error']} | | | | |")
            continue
        mem = f"{r['rss_gib']:.2f}" + (f" / {r['cuda_peak_gib']:.2f}" if "cuda_peak_gib" in r else "")
        ri = r["infer"] / hex32["infer"] if "infer" in hex32 else float("nan")
        rt = r["train"] / hex32["train"] if "train" in hex32 else float("nan")
        print(f"| {labels[case]} | {r['infer']:.3f} | {r['train']:.3f} | {mem} "
              f"| {ri:.2f}x | {rt:.2f}x |")


if __name__ == "__main__":
    main()
