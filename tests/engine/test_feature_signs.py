"""engine/feature_signs.py: a curv (or sulc) of the other sign is refused before registration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.engine.feature_signs import check_signs
from geomorph_bids.engine.register import register
from geomorph_bids.errors import InputError
from geomorph_bids.io import read_feature, write_metric
from geomorph_bids.sphere.icosphere import icosphere

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"


def _maps(level: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """sulc-like folds, a curv tied to them (+ noise) and an unrelated 'myelin', on ico-``level``."""
    v = np.asarray(icosphere(level)[0], np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    sulc = np.sin(5 * v[:, 0]) * np.cos(4 * v[:, 1]) + 0.5 * v[:, 2]
    return {"sulc": sulc, "curv": sulc + 0.8 * rng.standard_normal(len(v)),
            "myelin": rng.standard_normal(len(v))}


def test_a_curvature_of_the_other_sign_is_refused_naming_its_file():
    tpl, sub = _maps(seed=0), _maps(seed=1)
    check_signs(sub, tpl, ("sulc", "curv", "myelin"))  # FreeSurfer signs: fine
    check_signs({**sub, "curv": -sub["curv"]}, tpl, ("sulc",))  # one channel: nothing to compare
    with pytest.raises(InputError, match=r"'curv' correlates -0\.\d\d with sulc .* \+0\.\d\d: curv \(or sulc\) "
                                         r"has the other sign") as exc:
        check_signs({**sub, "curv": -sub["curv"]}, tpl, ("sulc", "curv"))
    assert exc.value.feature == "curv"  # callers name its file
    assert str(exc.value.with_context(feature_files={"curv": "/data/rh.curvature"})).startswith("/data/rh.curvature: ")
    # a map the template does not tie to sulc (myelin: +0.1) is not judged, whatever its sign
    check_signs({**sub, "myelin": -sub["sulc"]}, tpl, ("sulc", "myelin"))
    # a curvature that carries little sulcal information (r ~ -0.1) is not refused either
    noisy = sub["curv"] - sub["sulc"] + 0.1 * np.random.default_rng(2).standard_normal(len(sub["sulc"]))
    check_signs({**sub, "curv": -0.1 * sub["sulc"] + noisy}, tpl, ("sulc", "curv"))


def test_register_refuses_an_hcp_signed_curvature_before_any_work(tmp_path):
    surf = EXAMPLE / "derivatives" / "freesurfer" / "sub-01" / "surf"
    flipped = write_metric(tmp_path / "lh.curvature.shape.gii", -read_feature(surf / "lh.curv"), hemi="L",
                           names=["curv"])
    with pytest.raises(InputError, match="has the other sign") as exc:
        register(surf / "lh.sphere", {"sulc": surf / "lh.sulc", "curv": flipped}, "fsaverage", "L",
                 template_dir="bundled")
    assert str(flipped) in str(exc.value)
    ok = register(surf / "lh.sphere", {"sulc": surf / "lh.sulc", "curv": surf / "lh.curv"}, "fsaverage", "L",
                  template_dir="bundled", rigid_only=True)
    assert ok.metrics["cc_curv_rigid"] > 0.5
