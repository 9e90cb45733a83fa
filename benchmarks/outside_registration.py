"""CPU seconds per hemisphere of batch mode's stages outside the registration (read, resample, write).

    PYTHONPATH=. .venv/bin/python benchmarks/outside_registration.py [--subjects 4] [--cache DIR]
                                                                      [--keep OUT] [--profile FILE]

Builds the 164k cohort of ``benchmarks/cohort.py`` (``--subjects`` copies of its FreeSurfer-layout
subject; installed sMRIPrep needed), then runs ``geomorph-bids BIDS OUT participant --batch-size 8
--reports deferred`` in this process: the pool's workers replaced by the calling process (so that
``--profile`` sees the stages), the registrations unpickled from ``--cache`` (registered there on
the first run, keyed by the sphere's bytes and hemisphere), and the stage timers of
``batch.tasks`` reading ``time.process_time``. Prints the CPU seconds per hemisphere of reading,
resampling and writing. Run it from two checkouts in alternation (each with its own ``--cache``:
the registration's results may carry fields the other does not) to compare them on a busy host;
``--keep`` keeps the output folder, to compare the files.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pickle
import shutil
import sys
import tempfile
import time
import types
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Inline:
    """A pool that runs each task at once in this process."""

    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - as a worker would report it
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _cached(real, cache: Path):
    """``register_many`` reading each result from ``cache`` (registering the missing ones)."""
    import numpy as np

    def register_many(items, template, **kwargs):
        keys = [hashlib.sha1(np.asarray(getattr(it.moving_sphere, "vertices", None)).tobytes()
                             + it.hemi.encode()).hexdigest() for it in items]
        paths = [cache / f"{k}.pkl" for k in keys]
        missing = [i for i, p in enumerate(paths) if not p.is_file()]
        if missing:
            done = real([items[i] for i in missing], template, **{**kwargs, "batch_size": len(missing)})
            for i, result in zip(missing, done):
                paths[i].write_bytes(pickle.dumps(result))
        return [pickle.loads(p.read_bytes()) for p in paths]

    return register_many


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=4, help="participants (2 hemispheres each; default 4: one chunk)")
    p.add_argument("--cache", type=Path, default=None, help="registrations cache (default: a temporary folder)")
    p.add_argument("--keep", type=Path, default=None, help="keep the output folder here")
    p.add_argument("--profile", type=Path, default=None, help="write a cProfile of the run here")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cohort

    import geomorph_bids.batch.pipeline as pipeline
    import geomorph_bids.batch.tasks as tasks
    import geomorph_bids.engine.register as register
    from geomorph_bids.cli.bids import main as cli

    tmp = Path(tempfile.mkdtemp(prefix="geomorph-outside-"))
    cache = args.cache or tmp / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    out = args.keep or tmp / "out"
    shutil.rmtree(out, ignore_errors=True)
    try:
        bids = cohort.cohort_164k(tmp / "bids", args.subjects)
        pipeline.worker_pool = lambda *args, **kwargs: _Inline()  # whatever the pool would be given
        register.register_many = _cached(register.register_many, cache)
        tasks.time = types.SimpleNamespace(perf_counter=time.process_time)  # stage seconds: CPU seconds
        labels = [f"{s:03d}" for s in range(1, args.subjects + 1)]
        argv = [str(bids), str(out), "participant", "--participant-label", *labels, "-w", str(tmp / "work"),
                "--nprocs", "1", "--batch-size", "8", "--reports", "deferred"]
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        code = cli(argv)
        if profile:
            profile.disable()
            profile.dump_stats(args.profile)
        stages = json.loads(next((tmp / "work").glob("timings-*.json")).read_text()).get("stages") or {}
        hemis = 2 * args.subjects
        print(f"exit {code}; CPU seconds per hemisphere: "
              + " ".join(f"{k} {stages.get(k, 0.0) / hemis:.4f}" for k in ("read", "resample", "write")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
