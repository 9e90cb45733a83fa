"""BIDS-Derivatives writing: niworkflows' DerivativesDataSink with our file patterns,
made atomic (each file is written in a staging folder inside the output directory and
renamed into place, so an interrupted run never leaves a half-written output), and the gate
(:class:`OutputsReady`) that holds every sink of a hemisphere until all its results exist."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from nipype.interfaces.base import (BaseInterfaceInputSpec, File, InputMultiObject, SimpleInterface, TraitedSpec,
                                    isdefined, traits)
from niworkflows.interfaces.bids import DerivativesDataSink

from ..derivatives import SINK_PATTERNS

__all__ = ["GeomorphDataSink", "OutputsReady", "OUTPUT_FIELDS", "OPTIONAL_OUTPUT_FIELDS", "STAGING_DIR"]

#: staging folder (inside the output directory) for atomic writes; removed by the CLI
STAGING_DIR = ".geomorph-staging"


class GeomorphDataSink(DerivativesDataSink):
    """DerivativesDataSink writing straight into ``base_directory`` (no pipeline sub-folder),
    with geomorph's file patterns (:data:`geomorph_bids.derivatives.SINK_PATTERNS`), atomically."""

    out_path_base = ""
    _file_patterns = SINK_PATTERNS

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


#: the named results of a hemisphere that its derivative sinks write
OUTPUT_FIELDS = ("registered_sphere", "resampled_features", "metrics", "native_sphere", "native_features")
#: results only some runs have (``--fmriprep-compat`` with fsaverage: the sphere carried into fsLR)
OPTIONAL_OUTPUT_FIELDS = ("sphere_reg_fslr",)


class _OutputsInputSpec(BaseInterfaceInputSpec):
    registered_sphere = File(exists=True, mandatory=True, desc="the native mesh in template space")
    resampled_features = InputMultiObject(File(exists=True), mandatory=True,
                                          desc="one map per output feature, in the run's feature order")
    metrics = File(exists=True, mandatory=True, desc="the metrics JSON")
    native_sphere = File(exists=True, mandatory=True, desc="the validated native sphere")
    native_features = InputMultiObject(File(exists=True), mandatory=True,
                                       desc="one native map per registration feature, in the run's channel order")
    sphere_reg_fslr = File(exists=True, desc="--fmriprep-compat, template fsaverage: the sphere carried into fsLR")


class _OutputsOutputSpec(TraitedSpec):
    registered_sphere = File(exists=True)
    resampled_features = traits.List(File(exists=True))
    metrics = File(exists=True)
    native_sphere = File(exists=True)
    native_features = traits.List(File(exists=True))
    sphere_reg_fslr = File(exists=True)


class OutputsReady(SimpleInterface):
    """Pass a hemisphere's results on, by name, once all of them exist: the derivative sinks
    read from this node, so nothing of a hemisphere is written unless every step succeeded.
    (An ``IdentityInterface`` cannot do this: Nipype removes those nodes from the graph.)"""

    input_spec = _OutputsInputSpec
    output_spec = _OutputsOutputSpec

    def _run_interface(self, runtime):
        for name in OUTPUT_FIELDS:
            self._results[name] = getattr(self.inputs, name)
        for name in OPTIONAL_OUTPUT_FIELDS:
            if isdefined(getattr(self.inputs, name)):
                self._results[name] = getattr(self.inputs, name)
        return runtime
