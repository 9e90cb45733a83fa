"""The settings every participant workflow receives, decided once at the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..engine.model_choice import ModelChoice, default_registration
from ..io.discover import SubjectInputs
from ..io.template_ref import TemplateRef
from ..quality import DEFAULT_THRESHOLDS, QualityThresholds

__all__ = ["RunConfig", "SubjectJob"]


@dataclass(frozen=True)
class RunConfig:
    """Settings shared by every subject (resolved by :mod:`geomorph_bids.cli.settings`).

    Attributes
    ----------
    bids_dir, output_dir, work_dir : folders (absolute)
    template : the registration template (its ``label`` is the outputs' ``space-``, its ``base``
        gives the output-density spheres)
    density : output density label (``io.templates.normalise_density``)
    features : features resampled and written (e.g. ``("sulc", "curv")``; the registration's
        own features first)
    model : what the registration runs, with its features (:attr:`channels`)
    device : the resolved device (``cpu``, ``cuda``, ``cuda:N``)
    omp_nthreads : threads per registration (a node, or a batch-mode worker)
    nprocs : process slots of the whole run (batch mode: its worker processes)
    templateflow_home : TemplateFlow folder, or ``""``: none (``TEMPLATEFLOW_HOME`` was unset when the run
        was decided; the resampling does not read it again)
    density_sources : hemi -> where the output-density sphere comes from (for sidecars)
    batch_size : 0: the Nipype workflow (one node per step and hemisphere); N > 0: batch mode
        (:mod:`geomorph_bids.batch`), N hemispheres per registration batch
    reports : ``"parallel"`` (each participant's report as soon as its outputs are written,
        beside the registrations) or ``"deferred"`` (none; ``--reports-only`` builds them later)
    quality : the thresholds of the quality gates (:class:`~geomorph_bids.quality.QualityThresholds`,
        ``--min-cc`` and the other gate options); every hemisphere's metrics record its verdict
    fmriprep_compat : also write the registered sphere under sMRIPrep's names
        (:data:`~geomorph_bids.derivatives.FMRIPREP_SPHERES`; template fsLR or fsaverage)
    cifti : also write one CIFTI-2 dscalar of both hemispheres' features per subject/session
        (fsLR-based template at 32k or 59k)
    software : the build of geomorph-bids that runs (:func:`geomorph_bids.io.digest.software_id`):
        an input of every workflow node and part of batch mode's resume key, so that results an
        earlier build cached in the work folder are computed again after an upgrade
    dataset_links : (name, folder) of the input folders outside the BIDS folder that
        ``dataset_description.json``'s ``DatasetLinks`` names (``--derivatives NAME=PATH``, the
        FreeSurfer subjects folder): the sidecars' ``Sources`` name inputs there as ``bids:NAME:...``
    """

    bids_dir: Path
    output_dir: Path
    work_dir: Path
    template: TemplateRef = field(default_factory=lambda: TemplateRef.bundled("fsLR"))
    density: str = "32k"
    features: tuple[str, ...] = ("sulc",)
    model: ModelChoice = field(default_factory=lambda: default_registration("fsLR"))
    device: str = "cpu"
    omp_nthreads: int = 1
    nprocs: int = 1
    templateflow_home: str = ""
    density_sources: dict[str, str] = field(default_factory=dict)
    batch_size: int = 0
    reports: str = "parallel"
    quality: QualityThresholds = DEFAULT_THRESHOLDS
    fmriprep_compat: bool = False
    cifti: bool = False
    software: str = ""
    dataset_links: tuple[tuple[str, str], ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        """The features the registration uses (the model's)."""
        return self.model.channels

    @property
    def gpu(self) -> bool:
        """True when the registration runs on a CUDA device (its node then takes every slot)."""
        return self.device.startswith("cuda")

    @cached_property
    def results_key(self) -> str:
        """A short hash (12 hex digits) of every setting that changes a hemisphere's files, wherever
        they are written: template (and its maps' checksums: another template source is another
        result), model, features, density, quality thresholds, ``--fmriprep-compat``, the content of a
        network's checkpoint (one retrained into the same folder, ``geomorph-train --overwrite``, is
        another network under the same path), the build of geomorph-bids (:attr:`software`), and the
        names of the :attr:`dataset_links` outside the BIDS folder (the sidecars name inputs there by them,
        ``bids:<name>:...``; those in it ``bids:raw:...``, so another pipeline's folder added to
        ``derivatives/`` changes nothing; the folders themselves are not: inputs are named relative to them,
        and a dataset moved with its outputs is still theirs), a custom template's base template (its rotation
        and output spheres) and folder as the sidecars name it (``bids::tpl-<label>`` for a population template
        in the output folder: moved with it, still the same maps, whose checksums are in the key). Where the
        output-density sphere comes from is per hemisphere (:attr:`density_sources` holds those of ``--hemi``
        alone): the records that take this key add it (``resume_record``, ``batch.state.stamp``)).
        Computed once per run (the maps' and checkpoint's checksums are read). Batch mode's resume
        records key on it with the output folder (:func:`geomorph_bids.batch.state.settings_key`); each
        metrics JSON records it (:func:`geomorph_bids.workflows.outputs.resume_record`)."""
        import hashlib
        import json

        from .uris import folder_name, input_uri

        folder = "" if self.template.folder is None else folder_name(
            self.template.folder, self.bids_dir, self.dataset_links, self.output_dir, self.templateflow_home)
        maps = [self._content[h] for h in ("L", "R")]
        outside = sorted(name for name, f in self.dataset_links
                         if not input_uri(f, self.bids_dir).startswith("bids:raw:"))
        doc = [self.template.label, self.template.base, folder, self.model.to_dict(), list(self.features),
               self.density, maps, self.quality.to_dict(), bool(self.fmriprep_compat),
               self.software, self._content["checkpoint"],
               outside]
        return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def registration_key(self, hemi: str) -> str:
        """The content of what a registration of ``hemi`` reads besides the subject's own files, as one
        string: the SHA-256 of the template's maps it registers to and of the network's checkpoint. The
        workflow's registration node takes it as an input (its cache key): the node's other inputs name
        these files by path, so maps rebuilt in place (``group --build-template`` into the same
        ``tpl-<label>``, a ``--template-dir`` folder updated) or a network retrained into the same file
        gave the earlier registration from Nipype's cache, recorded as this run's."""
        return f"template {self._content[hemi]}; checkpoint {self._content['checkpoint'] or 'none'}"

    @cached_property
    def _content(self) -> dict[str, str]:
        """``{"L": sha256, "R": sha256, "checkpoint": sha256 or ""}``: the template maps each hemisphere's
        registration reads (those of :meth:`~ModelChoice.template_hemi`) and the network's checkpoint,
        hashed once per run (:func:`~geomorph_bids.io.template_sources.files_sha256`)."""
        from ..io.template_sources import files_sha256

        out = {h: str(self.template.provenance(self.model.template_hemi(h), self.channels)["template_sha256"])
               for h in ("L", "R")}
        out["checkpoint"] = "" if self.model.checkpoint is None else files_sha256([self.model.checkpoint])
        return out


@dataclass(frozen=True)
class SubjectJob:
    """One subject (and session) to process: the discovered inputs of its hemispheres."""

    subject: str
    session: str | None
    inputs: SubjectInputs
