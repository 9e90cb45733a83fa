"""io/template_ref.py: the registration template decided once, with one search path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io.custom_template import custom_feature_file
from geomorph_bids.io.gifti import write_metric
from geomorph_bids.io.template_ref import TemplateRef, resolve_template_ref, template_search_path
from geomorph_bids.io.templates import load_template


def _custom(root, label="pop", base="fsaverage"):
    folder = root / f"tpl-{label}"
    folder.mkdir(parents=True)
    (folder / "template_description.json").write_text(json.dumps({"Identifier": label, "BaseTemplate": base}))
    values = load_template(base, "L", ("sulc",)).features["sulc"] * 2.0
    write_metric(custom_feature_file(folder, label, "L", "sulc"), values.astype(np.float32), hemi="L")
    return folder


def test_bundled_templates():
    ref = resolve_template_ref("fsLR")
    assert ref == TemplateRef.bundled("fsLR") and not ref.is_custom and ref.base == "fsLR" and ref.label == "fsLR"
    assert [s.kind for s in ref.candidates("L")] == ["bundled"]  # no search given: the bundled maps only
    tpl = ref.load("R", ("sulc",))
    assert tpl.features["sulc"].shape == (40962,) and tpl.provenance["template_source"] == "bundled"
    assert tpl.provenance["template_vertices"] == 40962  # the ico-6 maps as read
    assert tpl.provenance["template_built_from_vertices"] == 163842  # built from sMRIPrep's 164k refsulc
    assert TemplateRef.from_dict(ref.to_dict()) == ref


def test_custom_template_by_label_in_the_search_path_and_by_folder(tmp_path):
    folder = _custom(tmp_path / "out" / "templates")
    search = template_search_path(tmp_path / "out")
    by_label = resolve_template_ref("pop", search)
    by_folder = resolve_template_ref(folder)
    assert by_label == by_folder == TemplateRef("pop", "fsaverage", folder.absolute())
    tpl = by_label.load("L", ("sulc",))
    assert tpl.provenance["template_source"] == "custom" and tpl.provenance["template_source_path"] == str(folder)
    np.testing.assert_allclose(tpl.features["sulc"], 2.0 * load_template("fsaverage", "L").features["sulc"],
                               rtol=1e-6)
    assert TemplateRef.from_dict(by_label.to_dict()) == by_label


def test_unknown_template_and_bad_base(tmp_path):
    with pytest.raises(InputError, match="no custom template folder") as e:
        resolve_template_ref("nosuch", template_search_path(tmp_path))
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    # no search folder: the sentence ends at "that path" (before: "... or in no search folder")
    with pytest.raises(InputError) as e:
        resolve_template_ref("nosuch", ())
    assert str(e.value).endswith("(tpl-<label> with template_description.json) at that path")
    # a path with a typo is said not to exist (round four)
    with pytest.raises(InputError) as e:
        resolve_template_ref(str(tmp_path / "tpl-pop"), ())
    assert str(e.value) == (f"unknown template {str(tmp_path / 'tpl-pop')!r}: no such folder (a template is "
                            "fsLR, fsaverage, or a folder of its maps)")
    bad = _custom(tmp_path, "odd", base="fsaverage")
    (bad / "template_description.json").write_text(json.dumps({"Identifier": "odd", "BaseTemplate": "MNI"}))
    with pytest.raises(InputError, match="BaseTemplate 'MNI'"):
        resolve_template_ref(bad)
    with pytest.raises(ValueError, match="not a bundled template"):
        TemplateRef.bundled("odd")


@pytest.mark.parametrize("name, expected", [
    ("fsaverage6", "fsaverage at 41k vertices: register to template fsaverage and ask for output density 41k"),
    ("fsaverage5", "--template fsaverage --output-density 10k"),
    ("fsaverage", None),  # a template: no error
    ("fsaverage4", "not a density geomorph-bids writes"),
    ("fsLR32k", "--template fsLR --output-density 32k"),
    ("fs_LR_164k", "--template fsLR --output-density 164k"),
    ("fslr", "did you mean fsLR?"),
    ("FSAverage", "did you mean fsaverage?"),
    ("MNI152NLin2009cAsym", "is a volume template"),
    ("mytemplate", "no custom template folder"),
])
def test_names_users_type_for_templates_get_a_hint(name, expected, tmp_path):
    """fMRIPrep's space names (a density in the name), other capitalisations and volume templates
    are answered with what to type instead, on one line."""
    if expected is None:
        assert resolve_template_ref(name).base == name
        return
    with pytest.raises(InputError) as e:
        resolve_template_ref(name, search=(tmp_path,))
    msg = str(e.value)
    assert "\n" not in msg and f"unknown template {name!r}" in msg and expected in msg


def test_a_template_folder_under_another_name_says_which_label_its_outputs_get(tmp_path):
    """QA: an earlier build kept aside as `cp -r tpl-pop tpl-first` and registered to with
    `--template first` wrote space-pop outputs (beside, or over, those of the current tpl-pop)
    while the run's line read 'template maps: pop from .../tpl-first'. It now says why the
    outputs are named space-pop; a folder of its own name says nothing more."""
    import shutil

    folder = _custom(tmp_path)
    assert resolve_template_ref(folder).describe(("sulc",)) == f"pop from {folder.absolute()}"
    copy = tmp_path / "tpl-first"
    shutil.copytree(folder, copy)
    ref = resolve_template_ref("first", [tmp_path])
    assert ref.label == "pop"
    assert ref.describe(("sulc",)) == (f"pop from {copy.absolute()} (the Identifier in its template_description.json: "
                                       "outputs are named space-pop)")


def test_a_template_dir_a_custom_template_does_not_use_is_said(tmp_path):
    """QA: `--template geomorphPopulation --template-dir $FREESURFER_HOME/subjects/fsaverage` (a
    script's usual options, the template switched) registered to the population template's maps
    and said nothing of the folder it was given. Now one warning line (geomorph-bids,
    geomorph-register; a TemplateWarning in Python); without --template-dir nothing."""
    from geomorph_bids.io.template_sources import TemplateSearch

    folder = _custom(tmp_path)
    assert resolve_template_ref(folder, where=TemplateSearch()).warnings(("sulc",)) == []
    ref = resolve_template_ref(folder, where=TemplateSearch(template_dir=tmp_path / "fsaverage"))
    assert ref.warnings(("sulc",)) == [f"--template-dir {tmp_path / 'fsaverage'} is not used (template_dir= in "
                                       f"Python): template pop is a custom template folder ({folder.absolute()}), "
                                       "whose maps are its own"]
    assert TemplateRef.from_dict(ref.to_dict()) == ref
    assert resolve_template_ref(folder, where=TemplateSearch(bundled_only=True)).warnings(("sulc",)) == []
