"""Register one hemisphere (rigid pre-alignment + GeoMorph) through :func:`engine.register`.

GPU slot: with a CUDA device the network step holds an exclusive lock file per device
(``<tempdir>/geomorph_bids-cuda<N>.lock``), so several processes on one machine never run
inference on the same GPU at once, whatever Nipype plugin schedules them. The workflow also
gives the node every process slot (MultiProc then runs nothing else beside it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from nipype.interfaces.base import (BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined,
                                    traits)

from ..errors import InputError

__all__ = ["Register", "gpu_lock", "model_argument"]


def model_argument(model: str) -> tuple[str | None, bool]:
    """``--model`` value -> (``model`` for register(), ``rigid_only``): ``""``/``"default"``
    is the bundled default (None), ``"rigid"`` the rigid stage only, anything else a path."""
    if model in ("", "default"):
        return None, False
    if model == "rigid":
        return None, True
    return model, False


@contextlib.contextmanager
def gpu_lock(device: str) -> Iterator[None]:
    """Hold an exclusive per-GPU lock file while the block runs (no-op for CPU devices)."""
    if not str(device).startswith("cuda"):
        yield
        return
    import fcntl

    index = str(device).partition(":")[2] or "0"
    path = Path(tempfile.gettempdir()) / f"geomorph_bids-cuda{index}.lock"
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _RegisterInputSpec(BaseInterfaceInputSpec):
    sphere = File(exists=True, mandatory=True, desc="native sphere (validated, radius 100)")
    feature_files = traits.List(File(exists=True), mandatory=True, desc="features, FreeSurfer sign")
    feature_names = traits.List(traits.Str, mandatory=True)
    channels = traits.List(traits.Str, desc="features the registration uses (default: all given)")
    template = traits.Str("fsLR", usedefault=True)
    hemi = traits.Enum("L", "R", mandatory=True)
    model = traits.Str("", usedefault=True, desc="'' (bundled default), 'rigid' or a checkpoint path")
    device = traits.Str("auto", usedefault=True, desc="auto, cpu, cuda or cuda:N")
    sphere_reg = File(exists=True, desc="FreeSurfer sphere.reg: rotation from correspondence")
    num_threads = traits.Int(0, usedefault=True, desc="torch threads (0: leave as is)")
    subject = traits.Str("", usedefault=True, desc="subject label, for error messages")


class _RegisterOutputSpec(TraitedSpec):
    out_sphere = File(exists=True, desc="the native mesh moved into template space (.surf.gii)")
    metrics_file = File(exists=True, desc="JSON: register() metrics, rotation, method")


class Register(SimpleInterface):
    """Run :func:`geomorph_bids.engine.register.register` on files; write the registered
    sphere (same vertices/triangles as the input) and the registration metrics."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        from ..engine.register import register, resolve_device
        from ..io import read_feature, read_sphere, write_surface

        hemi, subject = self.inputs.hemi, self.inputs.subject or None
        names = list(self.inputs.feature_names)
        channels = list(self.inputs.channels) if isdefined(self.inputs.channels) and self.inputs.channels else names
        unknown = [c for c in channels if c not in names]
        if unknown:
            raise InputError(f"registration feature(s) {', '.join(unknown)} not among the inputs "
                             f"({', '.join(names)})", subject=subject, hemi=hemi)
        model, rigid_only = model_argument(self.inputs.model)
        if self.inputs.num_threads > 0:
            import torch

            torch.set_num_threads(int(self.inputs.num_threads))
        try:
            sphere = read_sphere(self.inputs.sphere)
            files = dict(zip(names, self.inputs.feature_files))
            maps = {c: read_feature(files[c], n_vertices=len(sphere.vertices)) for c in channels}
            reg = read_sphere(self.inputs.sphere_reg).vertices if isdefined(self.inputs.sphere_reg) else None
            device = "cpu" if rigid_only else str(resolve_device(self.inputs.device))
            with gpu_lock(device):
                result = register((sphere.vertices, sphere.faces), maps, template=self.inputs.template,
                                  hemi=hemi, model=model, device=device, rigid_only=rigid_only, reg_sphere=reg)
        except InputError as exc:
            raise exc.with_context(subject=subject, hemi=hemi) from None
        out_sphere = write_surface(os.path.join(runtime.cwd, "registered_sphere.surf.gii"), result.sphere,
                                   result.faces, hemi=hemi, geometric_type="Spherical")
        metrics = {"method": "rigid" if rigid_only else ("optimise" if model is None else "geomorph"),
                   "registration_features": channels,
                   "model_argument": self.inputs.model or "default",
                   "used_sphere_reg": reg is not None,
                   **_jsonable(result.metrics),  # register()'s own "method" wins when it gives one
                   "rotation": np.round(result.rotation, 10).tolist()}
        metrics_file = Path(runtime.cwd) / "registration.json"
        metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        self._results["out_sphere"] = str(out_sphere)
        self._results["metrics_file"] = str(metrics_file)
        return runtime


def _jsonable(d: dict) -> dict:
    """numpy scalars/arrays -> plain Python, NaN/Inf -> None (strict JSON)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out[str(k)] = v
    return out
