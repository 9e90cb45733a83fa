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

import json
import shutil
from pathlib import Path

from ..interfaces.registration import BatchItem, register_batch
from ..io.digest import input_digest
from .config import RunConfig, SubjectJob
from .hemisphere import batch_item_dir

__all__ = ["run_batch_registration"]

#: per-item record of the inputs a batch result was computed from (paths and content hash)
FINGERPRINT = "inputs.json"


def _fingerprint(paths: list, digest: str) -> str:
    """JSON of the input paths and their content hash (``HemiInputs.digest``, computed once by
    the command line): a result is reused only for the same bytes, whatever their timestamps."""
    return json.dumps({"files": [str(Path(p).absolute()) for p in paths if p is not None], "sha1": digest})


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def run_batch_registration(jobs: list[SubjectJob], config: RunConfig, batch_size: int
                           ) -> tuple[int, dict[tuple, str]]:
    """Register every hemisphere of ``jobs`` that has no up-to-date batch result yet.

    Results go to :func:`~geomorph_bids.workflows.hemisphere.batch_item_dir` folders under
    ``config.batch_dir``; a hemisphere whose folder already holds a result computed from the
    same input files (paths and content hash) is not redone (an interrupted batch run resumes);
    a changed input is registered again, even with the same size and modification time. Returns the number of hemispheres attempted
    and {(subject, session, hemi): error line} for those whose input was bad (their workflows
    fail with that line).
    """
    items: list[BatchItem] = []
    keys: list[tuple] = []
    for job in jobs:
        for hemi in sorted(job.inputs.hemis):
            h = job.inputs.hemis[hemi]
            folder = batch_item_dir(config.batch_dir, h)
            files = [h.sphere, h.sphere_reg, h.cortex_mask, *(h.features[c] for c in config.channels)]
            stamp = _fingerprint(files, h.digest or input_digest(files))
            done = (folder / "registration.json").is_file() and _read(folder / FINGERPRINT) == stamp
            if done:  # (outputs alone are not enough: the workflow reads this folder)
                continue
            shutil.rmtree(folder, ignore_errors=True)  # stale or failed: the inputs may have changed
            folder.mkdir(parents=True)
            (folder / FINGERPRINT).write_text(stamp)
            items.append(BatchItem(folder=folder, subject=h.subject, hemi=hemi, sphere=Path(h.sphere),
                                   features={c: Path(h.features[c]) for c in config.channels},
                                   signs={c: h.sign(c) for c in config.channels},
                                   sphere_reg=Path(h.sphere_reg) if h.sphere_reg else None,
                                   cortex_mask=Path(h.cortex_mask) if h.cortex_mask else None))
            keys.append((job.subject, job.session, hemi))
    if not items:
        return 0, {}
    if config.omp_nthreads > 0:
        import torch

        torch.set_num_threads(int(config.omp_nthreads))
    errors = register_batch(items, config.model, config.template, config.device, batch_size)
    return len(items), {keys[i]: line for i, line in errors.items()}
