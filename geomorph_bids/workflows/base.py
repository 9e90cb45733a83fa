"""Top-level and per-subject workflows of the participant level."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nipype.pipeline import engine as pe

from ..io.discover import SubjectInputs

__all__ = ["RunConfig", "SubjectJob", "init_geomorph_wf", "init_single_subject_wf", "subject_wf_name"]


@dataclass(frozen=True)
class RunConfig:
    """Settings shared by every subject (from the command line).

    Attributes
    ----------
    bids_dir, output_dir, work_dir : folders (absolute)
    template : ``"fsLR"``, ``"fsaverage"`` or a custom template's label (``space-<label>``)
    density : output density label (``io.templates.normalise_density``)
    features : features resampled and written (e.g. ``("sulc", "curv")``)
    channels : features the registration uses (subset of ``features``)
    model : ``""`` (bundled default), ``"rigid"`` or a checkpoint path
    device : ``auto``, ``cpu``, ``cuda``, ``cuda:N``
    gpu : True when the registration runs on a CUDA device (the node then takes every slot)
    omp_nthreads : threads per registration node
    nprocs : process slots of the whole run
    templateflow_home : TemplateFlow folder or ``""``
    density_sources : hemi -> where the output-density sphere comes from (for sidecars)
    batch_dir : batch mode: folder where :func:`~geomorph_bids.workflows.batch.run_batch_registration`
        left every hemisphere's registration (the workflows then read it instead of registering);
        ``""`` registers in each hemisphere's own node
    template_ref : custom template: its folder (``tpl-<label>``, from ``--build-template``)
    base_template : custom template: the bundled template whose coordinates its maps use
    """

    bids_dir: Path
    output_dir: Path
    work_dir: Path
    template: str = "fsLR"
    density: str = "32k"
    features: tuple[str, ...] = ("sulc",)
    channels: tuple[str, ...] = ("sulc",)
    model: str = ""
    device: str = "auto"
    gpu: bool = False
    omp_nthreads: int = 1
    nprocs: int = 1
    templateflow_home: str = ""
    density_sources: dict[str, str] = field(default_factory=dict)
    batch_dir: str = ""
    template_ref: str = ""
    base_template: str = ""

    @property
    def registration_template(self) -> str:
        """What the registration is given: a bundled name or a custom template folder."""
        return self.template_ref or self.template

    @property
    def density_template(self) -> str:
        """The template whose output-density spheres are used (a custom template's base)."""
        return self.base_template or self.template


@dataclass(frozen=True)
class SubjectJob:
    """One subject (and session) to process: the discovered inputs of its hemispheres."""

    subject: str
    session: str | None
    inputs: SubjectInputs


def subject_wf_name(subject: str, session: str | None) -> str:
    """Workflow name of a subject/session, e.g. ``sub_01_ses_pre_wf`` (labels are alphanumeric)."""
    return f"sub_{subject}" + (f"_ses_{session}" if session else "") + "_wf"


def init_single_subject_wf(job: SubjectJob, config: RunConfig) -> pe.Workflow:
    """One subject/session: a :func:`init_hemisphere_wf` per discovered hemisphere."""
    from .hemisphere import init_hemisphere_wf

    wf = pe.Workflow(name=subject_wf_name(job.subject, job.session))
    for hemi in sorted(job.inputs.hemis):
        wf.add_nodes([init_hemisphere_wf(job.inputs.hemis[hemi], config)])
    return wf


def init_geomorph_wf(jobs: list[SubjectJob], config: RunConfig) -> pe.Workflow:
    """The participant-level workflow: one :func:`init_single_subject_wf` per job, run in
    ``config.work_dir`` (Nipype caches every node there, so a rerun resumes)."""
    wf = pe.Workflow(name="geomorph_wf", base_dir=str(config.work_dir))
    for job in jobs:
        if job.inputs.hemis:
            wf.add_nodes([init_single_subject_wf(job, config)])
    return wf
