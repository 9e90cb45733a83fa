"""Register one hemisphere (rigid pre-alignment + GeoMorph) through :func:`engine.register`.

The node is given the run's decisions as they were taken at the command line: the model
choice (:class:`~geomorph_bids.engine.model_choice.ModelChoice`), the template reference
(:class:`~geomorph_bids.io.template_ref.TemplateRef`), both as their ``to_dict()``, and the
resolved device; it re-derives none of them.

GPU slot: with a CUDA device the registration holds the device's lock file
(:func:`geomorph_bids.engine.gpu_slot.gpu_lock`), so several processes on one machine never run
on the same GPU at once, whatever Nipype plugin schedules them. The workflow also gives the
node every process slot (MultiProc then runs nothing else beside it).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nipype.interfaces.base import File, SimpleInterface, TraitedSpec, isdefined, traits

from ..engine.gpu_slot import gpu_lock
from ..errors import InputError
from ..results.metrics import registration_record
from .base import KeyedInputSpec

if TYPE_CHECKING:
    from ..engine.model_choice import ModelChoice
    from ..engine.register import Registration

try:  # a node's memory from its inputs when it is scheduled: nipype 1.11's MultiProc
    from nipype.utils.ram_estimator import RamEstimator as _RamEstimator
except ImportError:  # an earlier nipype: the node's fixed mem_gb alone
    _RamEstimator = object  # type: ignore[assignment,misc]

__all__ = ["Register", "SphereMemory", "gpu_lock", "write_registration"]


class SphereMemory(_RamEstimator):  # type: ignore[misc,valid-type]
    """A registration node's memory (GB) from its sphere's vertex count, read from the header when MultiProc
    schedules the node (its inputs then known: a workflow input, as ``--fmriprep-compat``'s ``sphere``):
    :func:`~geomorph_bids.engine.device.registration_needs_gb`, 0.66 GB up to 163,842 vertices (or a count
    that cannot be read), 1.15 GB at 655,362. Set as the node's ``ram_estimator`` (nipype 1.11 and later;
    earlier ones keep the node's ``mem_gb``); the largest of a list of spheres (a MapNode's)."""

    def __init__(self) -> None:  # (RamEstimator's multipliers are for image voxels: none here)
        pass

    def __call__(self, inputs: Any) -> tuple[float, str]:
        """(memory in GB, the line Nipype's node report records) for the node's ``inputs``."""
        from ..engine.device import registration_needs_gb
        from ..io.discover import surface_vertex_count

        spheres = inputs.sphere if isdefined(inputs.sphere) else []
        counts = [n for n in (surface_vertex_count(p) for p in ([spheres] if isinstance(spheres, str) else spheres))
                  if n is not None]
        most = max(counts) if counts else None
        gb = registration_needs_gb(most)[0]
        return gb, f"sphere: {'unknown' if most is None else f'{most:,}'} vertices -> {gb:g} GB"


class _RegisterInputSpec(KeyedInputSpec):
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
    source_files = traits.List(traits.Str, desc="the input files the features came from, in feature_names' "
                                                "order (named in error messages instead of the node's copies)")
    content_key = traits.Str("", usedefault=True, desc="RunConfig.registration_key: the content of the template "
                                                      "maps and checkpoint read (named above by path only), part "
                                                      "of the cache key")


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
        from ..model.determinism import torch_threads

        hemi, subject = self.inputs.hemi, self.inputs.subject or None
        names = list(self.inputs.feature_names)
        choice = ModelChoice.from_dict(self.inputs.model)
        channels = list(choice.channels)
        unknown = [c for c in channels if c not in names]
        if unknown:
            raise InputError(f"registration feature(s) {', '.join(unknown)} not among the inputs "
                             f"({', '.join(names)})", subject=subject, hemi=hemi)
        with torch_threads(self.inputs.num_threads):  # the process's own count again afterwards
            self._register(runtime, hemi, subject, names, choice, channels)
        return runtime

    def _register(self, runtime, hemi: str, subject: str | None, names: list[str], choice: "ModelChoice",
                  channels: list[str]) -> None:
        from ..engine.register import RegistrationItem, register_many
        from ..io import read_feature, read_sphere
        from ..io.template_ref import TemplateRef
        from ..io.validate import SphereWarning

        try:
            with warnings.catch_warnings():  # LoadFeatures' copies: what a SphereWarning says of them (a mesh
                warnings.simplefilter("ignore", SphereWarning)  # past MAX_VERTICES) was said of the user's file
                sphere = read_sphere(self.inputs.sphere)
                reg = read_sphere(self.inputs.sphere_reg).vertices if isdefined(self.inputs.sphere_reg) else None
            files = dict(zip(names, self.inputs.feature_files))
            maps = {c: read_feature(files[c], n_vertices=len(sphere.vertices)) for c in channels}
            template = TemplateRef.from_dict(self.inputs.template)
            cortex = self.inputs.cortex_mask if isdefined(self.inputs.cortex_mask) else None
            device = self.inputs.device
            # LoadFeatures' maps: io.validate.no_data ran there (its mask is cortex_mask), not again
            item = RegistrationItem(sphere, maps, hemi, reg, self.inputs.sphere_reg_space, cortex, maps_checked=True)
            result = register_many([item], template, device=device, on_error="raise",
                                   device_slot=lambda: gpu_lock(device), **choice.register_arguments())[0]
        except InputError as exc:
            sources = dict(zip(names, self.inputs.source_files)) if isdefined(self.inputs.source_files) else None
            raise exc.with_context(subject=subject, hemi=hemi, feature_files=sources) from None
        out_sphere, metrics_file = write_registration(
            runtime.cwd, result, hemi, registration_record(result, choice, reg is not None))
        self._results["out_sphere"] = str(out_sphere)
        self._results["metrics_file"] = str(metrics_file)


def write_registration(folder: str | Path, result: Registration, hemi: str, record: dict) -> tuple[Path, Path]:
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
