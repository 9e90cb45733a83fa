"""Custom template folders (tpl-<label>/template_description.json + ico-6 maps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io.custom_template import custom_feature_file, find_custom_template, load_custom_template
from geomorph_bids.io.template_ref import resolve_template
from geomorph_bids.io.gifti import write_metric
from geomorph_bids.io.templates import load_template


def _folder(tmp_path, label="mytpl", base="fsaverage"):
    folder = tmp_path / f"tpl-{label}"
    folder.mkdir()
    (folder / "template_description.json").write_text(json.dumps({"Identifier": label, "BaseTemplate": base}))
    values = np.linspace(-1, 1, 40962)
    write_metric(custom_feature_file(folder, label, "L", "sulc"), values, hemi="L", names=["sulc"])
    return folder, values


def test_load_and_resolve(tmp_path):
    folder, values = _folder(tmp_path)
    tpl = load_custom_template(folder, "L", ("sulc",))
    assert tpl.name == "mytpl" and tpl.hemi == "L" and len(tpl.vertices) == 40962
    assert np.allclose(tpl.features["sulc"], values, atol=1e-6)
    assert np.allclose(tpl.from_fsaverage, np.eye(3))
    assert find_custom_template("mytpl", [tmp_path]) == folder
    assert find_custom_template(folder) == folder
    assert resolve_template(str(folder), "L").name == "mytpl"
    assert resolve_template("fsLR", "L").name == load_template("fsLR", "L").name


def test_errors(tmp_path):
    folder, _ = _folder(tmp_path)
    with pytest.raises(InputError, match="no curv map for hemi L"):
        load_custom_template(folder, "L", ("curv",))
    with pytest.raises(InputError, match="no sulc map for hemi R"):
        load_custom_template(folder, "R", ("sulc",))
    (folder / "template_description.json").write_text("{}")
    with pytest.raises(InputError, match="Identifier"):
        load_custom_template(folder, "L")
    with pytest.raises(InputError, match="not a custom template"):
        load_custom_template(tmp_path, "L")
