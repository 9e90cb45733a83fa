"""BIDS-Derivatives writing: niworkflows' DerivativesDataSink with our file patterns,
made atomic (each file is written in a staging folder inside the output directory and
renamed into place, so an interrupted run never leaves a half-written output)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from niworkflows.interfaces.bids import DerivativesDataSink

__all__ = ["GeomorphDataSink", "STAGING_DIR", "PATTERNS"]

#: staging folder (inside the output directory) for atomic writes; removed by the CLI
STAGING_DIR = ".geomorph-staging"

_STEM = "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]_hemi-{hemi<L|R>}"
#: output names (sMRIPrep's conventions for surfaces; ``myelinw`` as sMRIPrep names myelin maps)
PATTERNS = (
    _STEM + "[_space-{space}][_den-{density}][_desc-{desc}]"
    "_{suffix<sphere|sulc|curv|thickness|myelinw>}{extension<.surf.gii|.shape.gii|.func.gii>}",
    _STEM + "[_space-{space}][_den-{density}][_desc-{desc}]_{suffix<metrics>}{extension<.json>}",
)


class GeomorphDataSink(DerivativesDataSink):
    """DerivativesDataSink writing straight into ``base_directory`` (no pipeline sub-folder),
    with geomorph's file patterns, atomically."""

    out_path_base = ""
    _file_patterns = PATTERNS

    def _run_interface(self, runtime):
        final = Path(self.inputs.base_directory).absolute()
        stage = final / STAGING_DIR / uuid.uuid4().hex
        stage.mkdir(parents=True)
        self.inputs.base_directory = str(stage)
        try:
            runtime = super()._run_interface(runtime)
            for key in ("out_file", "out_meta"):  # data files first, then sidecars
                value = self._results.get(key)
                if not value:
                    continue
                moved = [self._commit(Path(p), stage, final) for p in
                         (value if isinstance(value, list) else [value])]
                self._results[key] = moved if isinstance(value, list) else moved[0]
        finally:
            self.inputs.base_directory = str(final)
            shutil.rmtree(stage, ignore_errors=True)
        return runtime

    @staticmethod
    def _commit(path: Path, stage: Path, final: Path) -> str:
        dest = final / path.relative_to(stage)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not _same_file_content(path, dest):  # a rerun leaves an identical finished file untouched
            os.replace(path, dest)
        return str(dest)


def _same_file_content(new: Path, old: Path) -> bool:
    """Whether ``old`` exists with exactly the bytes of ``new`` (same inode: hard links)."""
    import filecmp

    try:
        return old.is_file() and (os.path.samefile(new, old) or filecmp.cmp(new, old, shallow=False))
    except OSError:
        return False
