"""Fuzzing the readers with hypothesis: valid small files (GIFTI surface and shape, gzipped
GIFTI, FreeSurfer surface and morphometry, MGH, CIFTI-2 dscalar, a geomorph checkpoint) with
bytes flipped, truncated, both, or replaced by random bytes. Property: the reader returns, or
raises our one-line InputError; never another exception, never a hang (per-example deadline)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel import cifti2
from nibabel import freesurfer as nfs

from geomorph_bids.errors import InputError
from geomorph_bids.io import read_feature, read_labels, read_sphere, read_surface
from geomorph_bids.io.gifti import write_metric, write_surface
from geomorph_bids.model.checkpoint import CheckpointMeta, load_checkpoint, read_metadata, save_checkpoint
from geomorph_bids.sphere.icosphere import icosphere

#: examples per reader (about 1.5 s each here); GEOMORPH_FUZZ_EXAMPLES=5000 for a longer campaign
# derandomised (the same examples every run: CI never flakes); GEOMORPH_FUZZ_RANDOM=1 explores anew
FUZZ = settings(max_examples=int(os.environ.get("GEOMORPH_FUZZ_EXAMPLES", "300")), deadline=3000, database=None,
                derandomize=not os.environ.get("GEOMORPH_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` with 1-8 bytes XOR-ed (half of them in the first 64 bytes: the headers), cut
    short, both, or random bytes."""
    kind = draw(st.sampled_from(["flip", "truncate", "flip+truncate", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    data = bytearray(seed)
    if "flip" in kind:
        for _ in range(draw(st.integers(1, 8))):
            hi = min(64, len(data)) if draw(st.booleans()) else len(data)
            data[draw(st.integers(0, hi - 1))] ^= draw(st.integers(1, 255))
    if "truncate" in kind:
        data = data[:draw(st.integers(0, len(data) - 1))]
    return bytes(data)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    """name -> (file name the reader sees, valid bytes)."""
    d = tmp_path_factory.mktemp("seeds")
    v, f = icosphere(1)  # 42 vertices, 80 triangles (radius 100): small files, every byte matters
    values = v[:, 2].astype(np.float32)
    out: dict[str, tuple[str, bytes]] = {}
    write_surface(d / "s.surf.gii", v, f, hemi="L", geometric_type="Spherical")
    out["gifti_surface"] = ("lh.sphere.surf.gii", (d / "s.surf.gii").read_bytes())
    out["gifti_surface_gz"] = ("lh.sphere.surf.gii.gz", gzip.compress(out["gifti_surface"][1], mtime=0))
    write_metric(d / "m.shape.gii", values, hemi="L")
    out["gifti_shape"] = ("lh.sulc.shape.gii", (d / "m.shape.gii").read_bytes())
    nfs.write_geometry(str(d / "lh.sphere"), v.astype(np.float32), f)
    out["fs_surface"] = ("lh.sphere", (d / "lh.sphere").read_bytes())
    nfs.write_morph_data(str(d / "lh.sulc"), values, fnum=len(f))
    out["fs_morph"] = ("lh.sulc", (d / "lh.sulc").read_bytes())
    nib.MGHImage(values.reshape(-1, 1, 1), np.eye(4)).to_filename(str(d / "m.mgh"))
    out["mgh"] = ("lh.sulc.mgh", (d / "m.mgh").read_bytes())
    bm = cifti2.BrainModelAxis.from_mask(np.arange(len(v)) % 4 != 0, name="CortexLeft")
    scalar = cifti2.ScalarAxis(["sulc"])
    cifti2.Cifti2Image(values[bm.vertex][None], header=(scalar, bm)).to_filename(str(d / "x.dscalar.nii"))
    out["cifti"] = ("sulc.dscalar.nii", (d / "x.dscalar.nii").read_bytes())
    meta = CheckpointMeta(name="fuzz", template="fsLR", hemisphere="L", channels=["sulc"], config={"k": 1})
    save_checkpoint(d / "m.pt", {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, meta)
    out["checkpoint"] = ("model.pt", (d / "m.pt").read_bytes())
    return out


def _sphere(p: Path):
    return read_sphere(p)


def _feature(p: Path):
    return read_feature(p, n_vertices=42, hemi="L")


READERS = {
    "gifti_surface": [_sphere, read_surface],
    "gifti_surface_gz": [_sphere],
    "gifti_shape": [_feature],
    "fs_surface": [_sphere, read_surface],
    "fs_morph": [_feature],
    "mgh": [_feature],
    "cifti": [_feature, lambda p: read_labels(p, hemi="L")],
    "checkpoint": [load_checkpoint, read_metadata],
}


def test_the_seeds_are_valid(seeds, tmp_path):
    """Unmutated, every seed reads (so the fuzzing starts from real files)."""
    for name, (fname, data) in seeds.items():
        (tmp_path / fname).write_bytes(data)
        READERS[name][0](tmp_path / fname)


@pytest.mark.filterwarnings("ignore::UserWarning")  # SphereWarning: a mutated sphere may be recentred
@pytest.mark.parametrize("name", sorted(READERS))
def test_mutated_files_fail_cleanly(name, seeds, tmp_path):
    fname, seed = seeds[name]
    path = tmp_path / fname

    @FUZZ
    @given(data=mutated(seed))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        for reader in READERS[name]:
            try:
                reader(path)
            except InputError as exc:
                assert "\n" not in str(exc)
            # anything else propagates and fails the test, with the shrunk bytes

    check()
