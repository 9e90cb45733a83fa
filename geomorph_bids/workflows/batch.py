"""Batch mode (``--batch-size N``): register every hemisphere of the run in this process.

For large cohorts, one process per subject pays the model load, the imports and the index
tables again for every subject. In batch mode the CLI calls :func:`run_batch_registration`
before the participant workflow: it registers all hemispheres that have no outputs yet
(:func:`geomorph_bids.interfaces.registration.register_batch`: one model load, the warp
optimisation vectorised over ``batch_size`` pairs), leaving each result in its own folder
under ``<work_dir>/batch``. The per-hemisphere workflows then read those results
(``PrecomputedRegistration``) and write exactly the same derivatives as without batch mode.
"""

from __future__ import annotations

from pathlib import Path

from ..interfaces.registration import BatchItem, register_batch
from .base import RunConfig, SubjectJob
from .hemisphere import batch_item_dir, hemi_outputs

__all__ = ["run_batch_registration"]


def run_batch_registration(jobs: list[SubjectJob], config: RunConfig, batch_size: int) -> dict[tuple, str]:
    """Register every hemisphere of ``jobs`` whose outputs are not all there yet.

    Results go to :func:`~geomorph_bids.workflows.hemisphere.batch_item_dir` folders under
    ``config.batch_dir``; a hemisphere whose folder already holds a result is not redone
    (an interrupted batch run resumes). Returns {(subject, session, hemi): error line} for the
    hemispheres whose input was bad (their workflows fail with that line).
    """
    items: list[BatchItem] = []
    keys: list[tuple] = []
    for job in jobs:
        for hemi in sorted(job.inputs.hemis):
            h = job.inputs.hemis[hemi]
            folder = batch_item_dir(config.batch_dir, h)
            if all(p.is_file() for p in hemi_outputs(h, config)) or (folder / "registration.json").is_file():
                continue
            items.append(BatchItem(folder=folder, subject=h.subject, hemi=hemi, sphere=Path(h.sphere),
                                   features={c: Path(h.features[c]) for c in config.channels},
                                   signs={c: h.sign(c) for c in config.channels},
                                   sphere_reg=Path(h.sphere_reg) if h.sphere_reg else None))
            keys.append((job.subject, job.session, hemi))
    if not items:
        return {}
    if config.omp_nthreads > 0:
        import torch

        torch.set_num_threads(int(config.omp_nthreads))
    errors = register_batch(items, list(config.channels), config.registration_template, config.model, config.device,
                            batch_size)
    return {keys[i]: line for i, line in errors.items()}
