"""Top-level and per-subject workflows of the participant level."""

from __future__ import annotations

from nipype.pipeline import engine as pe

from ..crashfiles import TOP_WF_NAME, subject_wf_name
from .config import RunConfig, SubjectJob
from .hemisphere import init_hemisphere_wf
from .outputs import cifti_output, init_cifti_wf

__all__ = ["init_geomorph_wf", "init_single_subject_wf"]


def init_single_subject_wf(job: SubjectJob, config: RunConfig) -> pe.Workflow:
    """One subject/session: a :func:`init_hemisphere_wf` per discovered hemisphere and, with
    ``config.cifti`` and both hemispheres, :func:`~geomorph_bids.workflows.outputs.init_cifti_wf`
    fed from both hemispheres' ``write_outputs``."""
    wf = pe.Workflow(name=subject_wf_name(job.subject, job.session))
    hemis = {hemi: init_hemisphere_wf(job.inputs.hemis[hemi], config) for hemi in sorted(job.inputs.hemis)}
    wf.add_nodes(list(hemis.values()))
    if cifti_output(job, config) is not None:
        cifti = init_cifti_wf(job.subject, job.inputs.hemis["L"].session, config)
        wf.connect([(hemis[h], cifti, [("write_outputs.resampled_features", f"inputnode.{side}")])
                    for h, side in (("L", "left"), ("R", "right"))])
    return wf


def init_geomorph_wf(jobs: list[SubjectJob], config: RunConfig) -> pe.Workflow:
    """The participant-level workflow: one :func:`init_single_subject_wf` per job, run in
    ``config.work_dir`` (Nipype caches every node there, so a rerun resumes)."""
    wf = pe.Workflow(name=TOP_WF_NAME, base_dir=str(config.work_dir))
    for job in jobs:
        if job.inputs.hemis:
            wf.add_nodes([init_single_subject_wf(job, config)])
    return wf
