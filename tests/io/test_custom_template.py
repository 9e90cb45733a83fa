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


def test_an_identifier_its_maps_are_not_named_for_is_one_line_not_a_traceback(tmp_path, one_line):
    """Found by the fuzz pass (fix-ak): template_description.json with an Identifier that the maps'
    names do not carry (``"other"``, or the number 5) ended `geomorph-register --template FOLDER` in an
    IndexError traceback (no map offered for any --feature). Now one line naming the file and the
    names the maps do carry."""
    from geomorph_bids.cli.register import main

    folder, _ = _folder(tmp_path)
    desc = folder / "template_description.json"
    for identifier, says in (("other", "Identifier is 'other' but the folder holds no "
                                       "tpl-other_hemi-<L|R>_den-ico6_<map>.shape.gii (its maps are named tpl-mytpl_...: "
                                       "the Identifier and the maps' names must agree)"),
                             (5, "template_description.json needs an alphanumeric 'Identifier'")):
        desc.write_text(json.dumps({"Identifier": identifier, "BaseTemplate": "fsaverage"}))
        with pytest.raises(InputError) as e:
            load_custom_template(folder, "L")
        assert one_line(e, desc).endswith(says)
        with pytest.raises(InputError) as e:
            resolve_template(str(folder), "L")
        assert says in str(e.value)
    from geomorph_bids.resources import example_dir
    import contextlib
    import io

    surf = example_dir() / "sub-01" / "surf"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--template",
                     str(folder), "--model", "rigid", "--out", str(tmp_path / "o.surf.gii")])
    assert code == 1 and "Traceback" not in err.getvalue() and str(desc) in err.getvalue(), err.getvalue()
    for f in folder.glob("*.shape.gii"):
        f.unlink()
    desc.write_text(json.dumps({"Identifier": "mytpl", "BaseTemplate": "fsaverage"}))
    with pytest.raises(InputError, match=r"holds no tpl-mytpl_hemi-<L\|R>_den-ico6_<map>.shape.gii \(it holds no maps\)"):
        load_custom_template(folder, "L")


def test_loaded_template_says_where_its_maps_came_from(tmp_path):
    """A Template from load_custom_template carries its provenance, so that register(template=tpl)
    records template_source 'custom' as docs/api.md says (its metrics had no template_* field)."""
    import hashlib

    from geomorph_bids import register
    from geomorph_bids.io.template_ref import resolve_template_ref
    from geomorph_bids.resources import example_dir

    folder, _ = _folder(tmp_path)
    write_metric(custom_feature_file(folder, "mytpl", "L", "sulc"), load_template("fsaverage", "L").features["sulc"],
                 hemi="L", names=["sulc"])
    tpl = load_custom_template(folder, "L", ("sulc",))
    sha = hashlib.sha256(custom_feature_file(folder, "mytpl", "L", "sulc").read_bytes()).hexdigest()
    assert tpl.provenance["template_source"] == "custom"
    assert tpl.provenance["template_sha256"] == sha
    assert tpl.provenance == resolve_template_ref(folder).provenance("L", ("sulc",))
    surf = example_dir() / "sub-01" / "surf"
    reg = register(surf / "lh.sphere", {"sulc": surf / "lh.sulc"}, template=tpl, hemi="L", rigid_only=True)
    assert reg.metrics["template_source"] == "custom"
    assert reg.metrics["template_source_path"] == str(folder)
    assert reg.metrics["template_sha256"] == sha


def test_a_template_built_for_one_hemisphere_says_how_to_register_or_build_the_other(tmp_path):
    """QA: `group --build-template 1 --hemi L`, then `participant --template LABEL` (both
    hemispheres, the default) ended on `has no sulc map for hemi R (it has: none)`: whether the
    folder lacked a file or was built for the other hemisphere only was not said, nor what to do."""
    folder, _ = _folder(tmp_path)
    doc = json.loads((folder / "template_description.json").read_text())
    (folder / "template_description.json").write_text(json.dumps({**doc, "Hemispheres": {"L": {"Subjects": 3}}}))
    with pytest.raises(InputError) as err:
        load_custom_template(folder, "R", ("sulc",))
    assert err.value.reason.endswith("no sulc map for hemi R (it has: none); it was built for hemi-L only: register "
                                     "--hemi L, or build hemi-R too (group --build-template N --hemi R "
                                     "--template-label mytpl)")
    with pytest.raises(InputError) as err:  # the hemisphere was built and its map is gone: no such hint
        load_custom_template(folder, "L", ("curv",))
    assert "it was built for" not in err.value.reason


@pytest.mark.parametrize("values, says", [
    (np.zeros(40962), "template map 'sulc' is all zero"),
    (np.where(np.arange(40962) < 1000, np.linspace(-1, 1, 40962), 0.0), "template map 'sulc'"),
])
def test_a_template_map_that_carries_nothing_is_named(tmp_path, values, says):
    """Found by the fuzz pass (fix-ak): a custom template's sulc all zero, or cast to integers (sulc's
    -2..2 truncated to mostly 0), ended the run on `hemi-L: fixed features: fewer than 5% of vertices are
    valid (non-zero, finite, in mask)`, naming no file. Now the map's file is named."""
    folder, _ = _folder(tmp_path)
    path = custom_feature_file(folder, "mytpl", "L", "sulc")
    write_metric(path, values, hemi="L", names=["sulc"])
    with pytest.raises(InputError) as e:
        load_custom_template(folder, "L", ("sulc",))
    assert str(path) in str(e.value) and says in str(e.value)
