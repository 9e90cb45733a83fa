"""CUDA correctness and speed checks for a lent GPU (run by scripts/gpu_session.sh).

    PYTHONPATH=. python scripts/device_checks.py correctness --out DIR [--model model.pt]
    PYTHONPATH=. python scripts/device_checks.py speed --out DIR [--model model.pt] [--repeats 3]
    PYTHONPATH=. python scripts/device_checks.py cohort --out BIDS_DIR [--subjects 32]

correctness: the icosphere point locator on CUDA vs the CPU k-d tree; the network forward on
CUDA vs CPU (float32) and bf16 vs float32 on CUDA; ``register()`` of one 164k-vertex hemisphere
on CUDA vs CPU (optimiser alone, network alone, network + refinement): max / median angular
difference of the output spheres and folded triangles.

speed: ``register()`` per 164k hemisphere on CUDA by method (stage seconds from its metrics),
``register_many()`` for batches of 1, 8 and 32 (hemispheres per second, peak GPU memory), the
network forward alone (float32 vs bf16, batch 1 and 32). Medians of ``--repeats`` after a
warm-up. Without ``--model`` a paper-sized network with random weights is timed.

Both write ``<part>.json`` and ``<part>.md`` (tables) to ``--out`` and print the tables.

cohort: a BIDS dataset at ``--out`` of ``--subjects`` FreeSurfer subjects, both hemispheres at
163,842 vertices (the bundled template's sulc and curv on ico-7, moved by one random smooth warp and
rotation per hemisphere, copied to every subject), for an end-to-end batch-mode run of
``geomorph-bids`` (issue 18: hemispheres per second at N = 64). From the bundled templates only: the
device image has no sMRIPrep (benchmarks/cohort.py's 164k cohort reads its atlases).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from geomorph_bids.engine.register import RegistrationItem, register, register_many
from geomorph_bids.io.templates import load_template
from geomorph_bids.model.geomorph import GeoMorph, GeoMorphConfig, StageConfig
from geomorph_bids.model.network import NetworkConfig
from geomorph_bids.model.optimise import REFINEMENT
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator, unit
from geomorph_bids.sphere.resample import barycentric_weights
from geomorph_bids.sphere.rotation import rotation_matrix

#: The short refinement timed after a network (what register(model=...) runs by default).
SHORT = REFINEMENT


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = unit(a), unit(b)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), (a * b).sum(1)))


#: the subjects' icosphere level: 7 (163,842 vertices); the rehearsal sets 6 (40,962), 4x less CPU time
LEVEL = {"level": 7}


def subject(seed: int = 0, template: str = "fsaverage") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 164k-vertex hemisphere (:data:`LEVEL`): ico-7 sphere under a random rotation, sulc = the template's
    ico-6 sulc upsampled, sharpened and noisy. Returns (vertices mm, faces, sulc)."""
    rng = np.random.default_rng(seed)
    tpl = load_template(template, "L", ("sulc",))
    v7, f7 = icosphere(LEVEL["level"])
    sulc = barycentric_weights((tpl.vertices, tpl.faces), v7) @ np.asarray(tpl.features["sulc"], float)
    sulc = sulc + 0.15 * sulc.std() * rng.standard_normal(len(sulc))
    axis = rng.standard_normal(3)
    rot = rotation_matrix(axis / np.linalg.norm(axis), float(rng.uniform(10, 30)))
    return v7 @ rot.T, f7, sulc


def random_network(channels: int = 1) -> GeoMorph:
    net = NetworkConfig(in_channels=channels, label_block=False)
    torch.manual_seed(0)
    return GeoMorph(GeoMorphConfig(stages=(StageConfig(network=net),))).eval()


def _peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float:
    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else float("nan")


def _device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (rehearsal)"


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def correctness(args: argparse.Namespace) -> dict:
    out: dict = {"device": _device_name()}
    lines = ["| check | result |", "|---|---|"]
    # 1. point location
    from geomorph_bids.model.ico_locate import ico_locator
    v6, f6 = icosphere(6)
    pts = np.random.default_rng(1).standard_normal((20_000 if args.rehearse else 500_000, 3))
    ref_face, ref_w = SphereLocator(v6, f6).locate(pts)
    got = ico_locator(6).locate(torch.as_tensor(pts, dtype=torch.float32, device=args.dev)).cpu().numpy()
    same = float((got == ref_face).mean())
    out["locate_same_face"] = same
    lines.append(f"| ico-6 locate, {len(pts)} random points, {args.dev} hierarchy vs CPU k-d tree | same face {same:.6f} |")
    # 2. network forward CUDA vs CPU, bf16 vs fp32
    model = args.model_obj
    k = model.config.in_channels
    g = torch.Generator().manual_seed(2)
    mov, fix = torch.randn(2, 40962, k, generator=g), torch.randn(2, 40962, k, generator=g)
    with torch.inference_mode():
        w_cpu = model.cpu()(mov, fix).warp
        m_gpu = model.to(args.dev)
        w_gpu = m_gpu(mov.to(args.dev), fix.to(args.dev)).warp.cpu()
        with torch.autocast(args.dev, dtype=torch.bfloat16):
            w_bf = m_gpu(mov.to(args.dev), fix.to(args.dev)).warp.float().cpu()
    d_gpu = _angle(w_cpu.reshape(-1, 3).double().numpy(), w_gpu.reshape(-1, 3).double().numpy())
    d_bf = _angle(w_gpu.reshape(-1, 3).double().numpy(), w_bf.reshape(-1, 3).double().numpy())
    out["forward_cuda_vs_cpu_deg"] = {"max": float(d_gpu.max()), "median": float(np.median(d_gpu))}
    out["forward_bf16_vs_fp32_deg"] = {"max": float(d_bf.max()), "median": float(np.median(d_bf))}
    lines.append(f"| network warp, {args.dev} fp32 vs CPU fp32 (2 random pairs) | max {d_gpu.max():.2e} deg, "
                 f"median {np.median(d_gpu):.2e} |")
    lines.append(f"| network warp, {args.dev} bf16 vs {args.dev} fp32 | max {d_bf.max():.3f} deg, median {np.median(d_bf):.4f} |")
    # 3. register() at 164k, CUDA vs CPU
    v, f, sulc = subject(3, args.template)
    cases = {"optimise": dict(model=None), "network": dict(model=model, optimise=False),
             "network+short": dict(model=model, optimise=SHORT)}
    out["register"] = {}
    for name, kw in cases.items():
        res = {}
        for dev in ("cpu", args.dev):
            r = register((v, f), {"sulc": sulc}, args.template, "L", device=dev, **kw)
            res[dev] = r
        if name == "optimise":
            first_sphere = res[args.dev].sphere
        d = _angle(res["cpu"].sphere, res[args.dev].sphere)
        row = {"max_deg": float(d.max()), "median_deg": float(np.median(d)),
               "folds_cpu": int(res["cpu"].metrics["n_folded"]), "folds_cuda": int(res[args.dev].metrics["n_folded"]),
               "cc_cpu": res["cpu"].metrics["cc_sulc_after"], "cc_cuda": res[args.dev].metrics["cc_sulc_after"]}
        out["register"][name] = row
        lines.append(f"| register() 164k, {name}: {args.dev} vs CPU output sphere | max {d.max():.3e} deg, median "
                     f"{np.median(d):.2e}; folds {row['folds_cpu']}/{row['folds_cuda']}; CC {row['cc_cpu']:.4f}/"
                     f"{row['cc_cuda']:.4f} |")
    # 4. the optimiser's promise: the same bits from run to run on one device (deterministic algorithms
    # are on for the call, warn-only: a GPU kernel without a deterministic version warns and runs)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = register((v, f), {"sulc": sulc}, args.template, "L", device=args.dev).sphere
    first = out["register"]["optimise"]
    same = bool(np.array_equal(again, first_sphere))
    nondet = sorted({str(w.message).splitlines()[0][:160] for w in caught if "deterministic" in str(w.message)})
    out["register_repeat_identical"] = same
    out["nondeterministic_warnings"] = nondet
    lines.append(f"| register() 164k, optimise, twice on {args.dev} | identical bits: {'yes' if same else 'NO'}; "
                 f"max {_angle(again, first_sphere).max():.2e} deg; {len(nondet)} nondeterminism warning(s) "
                 f"(CC {first['cc_cuda']:.4f}) |")
    out["table"] = lines
    return out


def speed(args: argparse.Namespace) -> dict:
    model = args.model_obj
    out: dict = {"device": _device_name(), "repeats": args.repeats}
    lines = ["| what | seconds (median) | per hemisphere | hemispheres / s | peak GPU memory (GB) |",
             "|---|---|---|---|---|"]
    md = args.out / "speed.md"
    md.write_text("")

    def emit(line: str) -> None:  # written as it comes: a run cut short keeps what it measured
        lines.append(line)
        with open(md, "a") as fh:
            fh.write(line + "\n")
        print(line, flush=True)
        (args.out / "speed.json").write_text(json.dumps(out, indent=1))

    for line in lines[:2]:
        with open(md, "a") as fh:
            fh.write(line + "\n")
    # 1. the network alone (GPU only)
    out["forward"] = {}
    m = model.to(args.dev)
    k = m.config.in_channels
    for b in ((1, 2) if args.rehearse else (1, 8, 32)):
        x = torch.randn(b, 40962, k, device=args.dev)
        for bf in (False, True):
            def fwd() -> None:
                with torch.inference_mode(), torch.autocast(args.dev, dtype=torch.bfloat16, enabled=bf):
                    m(x, x)
            _peak_reset()
            t = _median_time(fwd, args.repeats if args.rehearse else max(args.repeats, 5))
            key = f"batch {b} {'bf16' if bf else 'fp32'}"
            out["forward"][key] = {"wall": t, "per_s": b / t, "peak_gb": _peak_gb()}
            emit(f"| network forward (ico-6), {key} | {t:.4f} | {t / b:.4f} | {b / t:.1f} | {_peak_gb():.2f} |")
    # 2. register() per 164k hemisphere
    v, f, sulc = subject(5, args.template)
    cases = {"rigid": dict(rigid_only=True), "network alone": dict(model=model, optimise=False),
             "network + short refinement": dict(model=model, optimise=SHORT),
             "optimiser alone (default)": dict(model=None)}
    out["register"] = {}
    for name, kw in cases.items():
        holder = {}

        def run() -> None:
            holder["r"] = register((v, f), {"sulc": sulc}, args.template, "L", device=args.dev, **kw)
        _peak_reset()
        t = _median_time(run, args.repeats)
        stages = {k: round(float(val), 4) for k, val in holder["r"].metrics.items() if k.startswith("seconds_")}
        out["register"][name] = {"wall": t, "stages": stages, "peak_gb": _peak_gb()}
        emit(f"| register() 164k, {name} | {t:.3f} | {t:.3f} | {1 / t:.2f} | {_peak_gb():.2f} |")
        emit(f"|  stages: {', '.join(f'{k[8:]} {val:.3f}' for k, val in stages.items())} | | | | |")
    # 3. register_many: one warm-up, then each batch size once
    out["register_many"] = {}
    sizes = (1, 2) if args.rehearse else (1, 8, 32)
    subjects = [subject(100 + i, args.template) for i in range(max(sizes))]
    runs = [("network + short", dict(model=model, optimise=SHORT), n) for n in sizes]
    runs.append(("optimiser", dict(model=None), sizes[1]))
    for name, kw, n in runs:
        items = [RegistrationItem((sv, sf), {"sulc": ss}, "L") for sv, sf, ss in subjects[:n]]
        if not out["register_many"]:
            register_many(items[:1], args.template, device=args.dev, batch_size=1, **kw)  # warm-up
        _peak_reset()
        t0 = time.perf_counter()
        register_many(items, args.template, device=args.dev, batch_size=n, **kw)
        t = time.perf_counter() - t0
        out["register_many"][f"{name} x{n}"] = {"wall": t, "per_s": n / t, "peak_gb": _peak_gb()}
        emit(f"| register_many {name}, batch {n} (164k, CPU stages included) | {t:.2f} | {t / n:.3f} | "
             f"{n / t:.2f} | {_peak_gb():.2f} |")
    out["table"] = lines
    return out


def cohort(root: Path, n_subjects: int, template: str = "fsaverage") -> Path:
    """``root``: a BIDS dataset (``derivatives/freesurfer/sub-NNN/surf/{lh,rh}.{sphere,sulc,curv}``) of
    ``n_subjects`` copies of one synthetic 163,842-vertex subject. Returns ``root``."""
    import shutil

    from geomorph_bids.engine.example_data import synthetic_hemisphere, write_freesurfer

    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "cohort 164k", "BIDSVersion": "1.9.0"}))
    subjects = root / "derivatives" / "freesurfer"
    v7, f7 = icosphere(LEVEL["level"])
    for k, hemi in enumerate(("L", "R")):
        tpl = load_template(template, hemi, ("sulc", "curv"))
        up = barycentric_weights((tpl.vertices, tpl.faces), v7)
        maps = {c: up @ np.asarray(tpl.features[c], float) for c in ("sulc", "curv")}
        write_freesurfer(subjects, "sub-001", synthetic_hemisphere(hemi, 100.0 * v7, f7, maps, seed=[164, k, 2026]))
    for i in range(2, n_subjects + 1):
        shutil.copytree(subjects / "sub-001", subjects / f"sub-{i:03d}")
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("correctness", "speed", "cohort"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default=None, help="a checkpoint (default: paper-sized random network)")
    p.add_argument("--template", default="fsaverage")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--subjects", type=int, default=32, help="cohort: subjects (two hemispheres each)")
    p.add_argument("--rehearse", action="store_true",
                   help="run on the CPU with small sizes (to check the script before a GPU session)")
    args = p.parse_args()
    if args.rehearse:
        LEVEL["level"] = 6
    if args.part == "cohort":  # CPU work: no device needed
        t = time.perf_counter()
        cohort(args.out, args.subjects, args.template)
        print(f"cohort: {args.subjects} subjects x 2 hemispheres of {10 * 4 ** LEVEL['level'] + 2:,} vertices in {args.out} "
              f"({time.perf_counter() - t:.1f} s)", flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    args.dev = "cuda" if torch.cuda.is_available() else "cpu"
    if args.dev == "cpu" and not args.rehearse:
        raise SystemExit("device_checks.py needs CUDA (or --rehearse)")
    if args.model:
        from geomorph_bids.engine.checkpoints import load_model

        args.model_obj = load_model(args.model, ["sulc"], args.template, "L", torch.device("cpu")).net
    else:
        args.model_obj = random_network()
    t = time.perf_counter()
    result = (correctness if args.part == "correctness" else speed)(args)
    result["seconds"] = time.perf_counter() - t
    result["torch"] = torch.__version__
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.part}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{args.part}.md").write_text("\n".join(result["table"]) + "\n")
    if args.part == "correctness":
        print("\n".join(result["table"]), flush=True)


if __name__ == "__main__":
    main()
