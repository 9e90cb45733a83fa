"""Register one hemisphere (rigid pre-alignment + GeoMorph) through :func:`engine.register`.

The node is given the run's decisions as they were taken at the command line: the model
choice (:class:`~geomorph_bids.engine.model_choice.ModelChoice`), the template reference
(:class:`~geomorph_bids.io.template_ref.TemplateRef`), both as their ``to_dict()``, and the
resolved device; it re-derives none of them.

GPU slot: with a CUDA device the network step holds an exclusive lock file per device
(``<tempdir>/geomorph_bids-cuda<N>.lock``), so several processes on one machine never run
inference on the same GPU at once, whatever Nipype plugin schedules them. The workflow also
gives the node every process slot (MultiProc then runs nothing else beside it).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from nipype.interfaces.base import (BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined,
                                    traits)

from ..errors import InputError

__all__ = ["Register", "PrecomputedRegistration", "BatchItem", "register_batch", "gpu_lock",
           "registration_record", "write_registration"]


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
    template = traits.Dict(mandatory=True, desc="the run's TemplateRef.to_dict()")
    hemi = traits.Enum("L", "R", mandatory=True)
    model = traits.Dict(mandatory=True, desc="the run's ModelChoice.to_dict() (its channels are used)")
    device = traits.Str("cpu", usedefault=True, desc="the resolved device: cpu, cuda or cuda:N")
    sphere_reg = File(exists=True, desc="a registered sphere (same mesh): rotation from correspondence")
    sphere_reg_space = traits.Enum("fsaverage", "template", usedefault=True,
                                   desc="where sphere_reg lives: fsaverage (FreeSurfer's sphere.reg) or the "
                                        "template's space (e.g. sMRIPrep's space-fsLR_desc-reg sphere)")
    cortex_mask = File(exists=True, desc="cortex mask (1 on the cortex): medial wall left out of the similarity")
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
        from ..engine.model_choice import ModelChoice
        from ..engine.register import register
        from ..io import read_feature, read_sphere
        from ..io.template_ref import TemplateRef

        hemi, subject = self.inputs.hemi, self.inputs.subject or None
        names = list(self.inputs.feature_names)
        choice = ModelChoice.from_dict(self.inputs.model)
        channels = list(choice.channels)
        unknown = [c for c in channels if c not in names]
        if unknown:
            raise InputError(f"registration feature(s) {', '.join(unknown)} not among the inputs "
                             f"({', '.join(names)})", subject=subject, hemi=hemi)
        if self.inputs.num_threads > 0:
            import torch

            torch.set_num_threads(int(self.inputs.num_threads))
        try:
            sphere = read_sphere(self.inputs.sphere)
            files = dict(zip(names, self.inputs.feature_files))
            maps = {c: read_feature(files[c], n_vertices=len(sphere.vertices)) for c in channels}
            reg = read_sphere(self.inputs.sphere_reg).vertices if isdefined(self.inputs.sphere_reg) else None
            template = TemplateRef.from_dict(self.inputs.template)
            cortex = self.inputs.cortex_mask if isdefined(self.inputs.cortex_mask) else None
            with gpu_lock(self.inputs.device):
                result = register((sphere.vertices, sphere.faces), maps, template=template, hemi=hemi,
                                  device=self.inputs.device, reg_sphere=reg,
                                  reg_sphere_space=self.inputs.sphere_reg_space, cortex_mask=cortex,
                                  **choice.register_arguments())
        except InputError as exc:
            raise exc.with_context(subject=subject, hemi=hemi) from None
        out_sphere, metrics_file = write_registration(
            runtime.cwd, result, hemi, registration_record(result, choice, reg is not None))
        self._results["out_sphere"] = str(out_sphere)
        self._results["metrics_file"] = str(metrics_file)
        return runtime


def registration_record(result, choice, used_sphere_reg: bool) -> dict:
    """The registration metrics document (JSON-able) of one :class:`Registration` made with the
    :class:`~geomorph_bids.engine.model_choice.ModelChoice` ``choice`` (``method`` is what
    register() reports it did)."""
    return {"registration_features": list(choice.channels),
            "model_argument": choice.name,
            "used_sphere_reg": bool(used_sphere_reg),
            **_jsonable(result.metrics),
            "rotation": np.round(result.rotation, 10).tolist()}


def write_registration(folder: str | Path, result, hemi: str, record: dict) -> tuple[Path, Path]:
    """Write ``registered_sphere.surf.gii`` and ``registration.json`` into ``folder``."""
    from ..io import write_surface
    from ..io.atomic import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out_sphere = write_surface(folder / "registered_sphere.surf.gii", result.sphere, result.faces, hemi=hemi,
                               geometric_type="Spherical")
    metrics_file = folder / "registration.json"  # written last and atomically: batch mode resumes on it
    atomic_write_bytes(metrics_file, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return Path(out_sphere), metrics_file


# ------------------------------------------------------------------------------ batch mode

@dataclass
class BatchItem:
    """One hemisphere for :func:`register_batch`: its inputs (``signs`` convert each feature
    to FreeSurfer's sign) and the folder its results go to."""

    folder: Path
    subject: str
    hemi: str
    sphere: Path
    features: dict[str, Path]
    signs: dict[str, float]
    sphere_reg: Path | None = None
    cortex_mask: Path | None = None


def register_batch(items: list[BatchItem], choice, template, device: str, batch_size: int) -> dict[int, str]:
    """Register many hemispheres in this process (one model load, batched optimisation,
    :func:`geomorph_bids.engine.register.register_many`) with the run's
    :class:`~geomorph_bids.engine.model_choice.ModelChoice` ``choice``,
    :class:`~geomorph_bids.io.template_ref.TemplateRef` ``template`` and resolved ``device``.
    Each item's folder receives ``registered_sphere.surf.gii`` + ``registration.json``, or
    ``error.txt`` (one line) when its input is bad. Returns {item index: error line} for the
    failed ones."""
    from ..engine.register import RegistrationItem, register_many
    from ..io.hemisphere import read_hemisphere

    channels = list(choice.channels)
    errors: dict[int, str] = {}
    ready: list[tuple[int, RegistrationItem]] = []
    for i, item in enumerate(items):
        try:
            native = read_hemisphere(item.sphere, {c: item.features[c] for c in channels}, signs=item.signs,
                                     sphere_reg=item.sphere_reg, cortex_mask=item.cortex_mask)
            sphere = native.sphere
            reg = native.sphere_reg.vertices if native.sphere_reg is not None else None
            ready.append((i, RegistrationItem((sphere.vertices, sphere.faces), native.features, item.hemi, reg,
                                              cortex_mask=native.cortex)))
        except InputError as exc:
            errors[i] = str(exc.with_context(subject=item.subject, hemi=item.hemi))
        except (ValueError, OSError) as exc:
            errors[i] = f"sub-{item.subject} hemi-{item.hemi}: {' '.join(str(exc).split())}"
    with gpu_lock(device):  # register_many loads each hemisphere's template once
        results = register_many([req for _, req in ready], template, device=device, batch_size=batch_size,
                                on_error="return", **choice.register_arguments())
    for (i, req), result in zip(ready, results):
        item = items[i]
        if isinstance(result, Exception):
            exc = result.with_context(subject=item.subject, hemi=item.hemi) if isinstance(result, InputError) else result
            errors[i] = " ".join(str(exc).split())
            continue
        write_registration(item.folder, result, item.hemi,
                           registration_record(result, choice, req.reg_sphere is not None))
    for i, line in errors.items():
        items[i].folder.mkdir(parents=True, exist_ok=True)
        (items[i].folder / "error.txt").write_text(line + "\n")
    return errors


class _PrecomputedInputSpec(BaseInterfaceInputSpec):
    folder = traits.Str(mandatory=True, desc="the item folder written by register_batch")
    subject = traits.Str("", usedefault=True)
    hemi = traits.Enum("L", "R", mandatory=True)


class PrecomputedRegistration(SimpleInterface):
    """Hand on a registration computed by :func:`register_batch` (batch mode); a failed item
    raises its one-line error, so only that hemisphere fails."""

    input_spec = _PrecomputedInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        folder = Path(self.inputs.folder)
        error = folder / "error.txt"
        if error.is_file():
            raise InputError(error.read_text().strip())
        sphere, metrics = folder / "registered_sphere.surf.gii", folder / "registration.json"
        if not (sphere.is_file() and metrics.is_file()):
            raise InputError("batch registration produced no result", subject=self.inputs.subject or None,
                             hemi=self.inputs.hemi, path=folder)
        self._results["out_sphere"] = str(sphere)
        self._results["metrics_file"] = str(metrics)
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
