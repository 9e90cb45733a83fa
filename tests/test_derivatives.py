"""derivatives.py: every output name, built and parsed in one place, matching what the sinks write."""

from __future__ import annotations

from pathlib import Path

from geomorph_bids import derivatives as d


def test_hemisphere_output_names_and_order():
    out = d.hemisphere_outputs("/o", "01", "pre", "L", "fsaverage", "41k", ("sulc", "myelin"), ("sulc",))
    assert out.anat == Path("/o/sub-01/ses-pre/anat")
    assert [p.name for p in out.files()] == [
        "sub-01_ses-pre_hemi-L_space-fsaverage_desc-geomorph_sphere.surf.gii",
        "sub-01_ses-pre_hemi-L_space-fsaverage_desc-geomorph_sphere.json",
        "sub-01_ses-pre_hemi-L_space-fsaverage_desc-geomorph_metrics.json",
        "sub-01_ses-pre_hemi-L_space-fsaverage_den-41k_desc-geomorph_sulc.shape.gii",
        "sub-01_ses-pre_hemi-L_space-fsaverage_den-41k_desc-geomorph_sulc.json",
        "sub-01_ses-pre_hemi-L_space-fsaverage_den-41k_desc-geomorph_myelinw.shape.gii",
        "sub-01_ses-pre_hemi-L_space-fsaverage_den-41k_desc-geomorph_myelinw.json",
        "sub-01_ses-pre_hemi-L_sphere.surf.gii", "sub-01_ses-pre_hemi-L_sphere.json",
        "sub-01_ses-pre_hemi-L_sulc.shape.gii", "sub-01_ses-pre_hemi-L_sulc.json"]
    assert d.parse_metrics_name(out.metrics.name) == ("01", "pre", "L", "fsaverage")
    assert d.parse_metrics_name("sub-01_hemi-L_sphere.surf.gii") is None


def test_sink_entities_build_the_same_names(tmp_path):
    """The niworkflows patterns of the sink turn each output's entities into its name."""
    from bids.layout.writing import build_path

    out = d.hemisphere_outputs(tmp_path, "01", None, "R", "fsLR", "32k", ("curv",), ("curv",))
    cases = [(d.REGISTERED_SPHERE, None, out.registered_sphere), (d.METRICS, None, out.metrics),
             (d.RESAMPLED_FEATURE, "curv", out.resampled_feature("curv")), (d.NATIVE_SPHERE, None, out.native_sphere),
             (d.NATIVE_FEATURE, "curv", out.native_feature("curv"))]
    for kind, feature, path in cases:
        ents = {"subject": "01", "hemi": "R", "extension": kind.extension, "datatype": "anat",
                **kind.entities("fsLR", "32k", feature)}
        assert build_path(ents, d.SINK_PATTERNS) == str(path.relative_to(tmp_path))


def test_other_names():
    assert d.report_name("01") == "sub-01.html" and d.report_name("01", "a") == "sub-01_ses-a.html"
    assert d.crash_dir("/o", "abc") == Path("/o/logs/crash-abc")
    assert d.sidecar("/x/a_b.surf.gii") == Path("/x/a_b.json")
    assert d.GROUP_TSV == "group_desc-geomorph_metrics.tsv"


def test_fmriprep_names_are_what_smriprep_queries(tmp_path):
    """--fmriprep-compat: each sphere's entities are exactly the query of its key in sMRIPrep's
    data/io_spec.json, and the sink's patterns build the name."""
    import json
    from importlib.resources import files

    from bids.layout.writing import build_path

    spec = json.loads((files("smriprep") / "data" / "io_spec.json").read_text())["queries"]["surfaces"]
    for template, kinds in d.FMRIPREP_SPHERES.items():
        out = d.hemisphere_outputs(tmp_path, "01", "2", "L", template, "32k", ("sulc",), ("sulc",), fmriprep=True)
        assert set(out.fmriprep_spheres) == set(kinds)
        for key, kind in kinds.items():
            query = spec[key]
            ents = kind.entities(template)
            allowed = query["space"] if isinstance(query["space"], list) else [query["space"]]
            assert ents["space"] in allowed and ents["desc"] == query["desc"] and ents["suffix"] == query["suffix"]
            assert kind.extension == query["extension"]
            built = build_path({"subject": "01", "session": "2", "hemi": "L", "datatype": "anat",
                                "extension": kind.extension, **ents}, d.SINK_PATTERNS)
            assert built == str(out.fmriprep_spheres[key].relative_to(tmp_path))
            assert out.fmriprep_spheres[key] in out.files() and d.sidecar(out.fmriprep_spheres[key]) in out.files()
    plain = d.hemisphere_outputs(tmp_path, "01", None, "L", "fsLR", "32k", ("sulc",), ("sulc",))
    assert plain.fmriprep_spheres == {} and not any("msmsulc" in p.name for p in plain.files())


def test_cifti_name_has_no_hemisphere(tmp_path):
    from bids.layout.writing import build_path

    path = d.cifti_file(tmp_path, "01", "2", "fsLR", "32k")
    assert path == tmp_path / "sub-01/ses-2/anat/sub-01_ses-2_space-fsLR_den-32k_desc-geomorph_features.dscalar.nii"
    ents = {"subject": "01", "session": "2", "datatype": "anat", "extension": ".dscalar.nii",
            **d.CIFTI_FEATURES.entities("fsLR", "32k")}
    assert build_path(ents, d.SINK_PATTERNS) == str(path.relative_to(tmp_path))


def _ignored(line: str, rel: str) -> bool:
    """Whether a ``.bidsignore`` line (gitignore syntax, as the BIDS validator reads it) covers
    ``rel`` (a path relative to the dataset root): ``/a/b`` anchored, each segment a glob; a line
    without ``/`` matches a file's name at any depth."""
    from fnmatch import fnmatchcase

    parts = rel.split("/")
    if "/" not in line:
        return any(fnmatchcase(p, line) for p in parts)
    pat = line.strip("/").split("/")
    return len(parts) >= len(pat) and all(fnmatchcase(p, q) for p, q in zip(parts, pat))


def test_bidsignore_lines_cover_every_output_and_leave_the_dataset_files_checked():
    """Before round eleven no .bidsignore was written: the BIDS validator (3.0.2) called every
    output NOT_INCLUDED (BIDS 1.11 has no rule for surfaces, shape maps, metrics or reports) and
    each metrics JSON SIDECAR_WITHOUT_DATAFILE. Every name we write is listed, and nothing else."""
    lines = d.bidsignore_lines()
    assert "sub-*_hemi-*_space-*_desc-geomorph_sphere.surf.gii" in lines
    assert "sub-*_hemi-*_space-*_desc-geomorph_metrics.json" in lines
    assert "sub-*_hemi-*_space-*_den-*_desc-geomorph_myelinw.shape.gii" in lines
    assert "sub-*_space-*_den-*_desc-geomorph_features.json" in lines
    # folders without a trailing slash: with one, the validator still flags the folder itself
    assert {"/figures", "/sub-*/figures", "/logs", "/tpl-*"} <= set(lines)
    assert not [line for line in lines if line.endswith("/")]
    written = []
    for space, session in (("fsLR", None), ("fsaverage", "pre")):
        out = d.hemisphere_outputs("/o", "01", session, "L", space, "32k", tuple(d.FEATURE_SUFFIX),
                                   tuple(d.FEATURE_SUFFIX), fmriprep=True)
        written += [p.relative_to("/o").as_posix() for p in out.files()]
        written.append(d.cifti_file("/o", "01", session, space, "32k").relative_to("/o").as_posix())
        written.append(d.sidecar(d.cifti_file("/o", "01", session, space, "32k")).relative_to("/o").as_posix())
    assert any("desc-msmsulc" in w for w in written) and any("space-fsLR_desc-reg" in w for w in written)
    written += [d.report_name("01"), d.report_name("01", "pre"), d.GROUP_HTML, d.GROUP_TSV, d.GROUP_JSON,
                d.GROUP_FIGURE,
                d.CITATION, "logs/crash-1a2b/crash-x.txt",
                "tpl-geomorphPopulation/tpl-geomorphPopulation_hemi-L_sulc.shape.gii",
                (d.figures_dir("", "01") / d.FIGURES["distortion"].format(
                    entities="sub-01", hemi="L", space="fsLR")).as_posix()]
    assert [w for w in written if not any(_ignored(line, w) for line in lines)] == []
    for kept in (d.DATASET_DESCRIPTION, d.README):
        assert not any(_ignored(line, kept) for line in lines), kept


def test_bidsignore_lines_cover_session_outputs_with_each_star_one_label():
    """A multi-session run (``sub-01/ses-1/anat/sub-01_ses-1_hemi-L_...``) drew error NOT_INCLUDED
    for every output (96 on the example with two sessions each, and SIDECAR_WITHOUT_DATAFILE for each
    metrics JSON): the BIDS validator 3.0.2 does not let the "*" of ``sub-*_hemi-*_...`` take
    ``01_ses-1``, though ``fnmatch`` does. Each name we write, with and without a session, is
    covered by a line whose every "*" stands for one entity's label (no ``_`` in it)."""
    import re

    def covered(line: str, name: str) -> bool:
        return re.fullmatch(re.escape(line).replace(r"\*", "[^_/]*"), name) is not None

    lines = [line for line in d.bidsignore_lines() if "/" not in line]
    assert "sub-*_ses-*_hemi-*_space-*_desc-geomorph_sphere.surf.gii" in lines
    assert "sub-*_ses-*_space-*_den-*_desc-geomorph_features.dscalar.nii" in lines
    names = []
    for space, session in (("fsLR", None), ("fsLR", "1"), ("fsaverage", "pre"), ("geomorphPopulation", "10")):
        out = d.hemisphere_outputs("/o", "01", session, "R", space, "32k", tuple(d.FEATURE_SUFFIX),
                                   tuple(d.FEATURE_SUFFIX), fmriprep=space != "geomorphPopulation")
        names += [p.name for p in out.files()]
        cifti = d.cifti_file("/o", "01", session, space, "32k")
        names += [cifti.name, d.sidecar(cifti).name]
    assert sum("_ses-" in n for n in names) > 30
    assert [n for n in names if not any(covered(line, n) for line in lines)] == []


def test_metrics_files_finds_what_the_glob_found(tmp_path):
    """metrics_files lists ``sub-*[/ses-*]/anat`` with os.scandir instead of pathlib's ``**``
    glob (which listed every folder of every subject, figures included, twice per group level):
    the files the glob found in the folders outputs are written to (:func:`anat_dir`), sorted,
    through a linked subject, session or anat folder; none elsewhere, and none named for another
    subject or session than its folder's (next test)."""
    name = "sub-{s}{ses}_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    files = [f"sub-01/anat/{name.format(s='01', ses='')}", f"sub-01/ses-a/anat/{name.format(s='01', ses='_ses-a')}",
             f"sub-02/ses-b/anat/{name.format(s='02', ses='_ses-b')}", "sub-02/anat/sub-02_hemi-L_sphere.json",
             f"sub-03/x/y/anat/{name.format(s='03', ses='')}", f"sub-01/figures/{name.format(s='01', ses='')}",
             f"other/anat/{name.format(s='09', ses='')}", f"elsewhere/sub-04/ses-b/anat/{name.format(s='04', ses='_ses-b')}",
             f"elsewhere/c/{name.format(s='01', ses='_ses-c')}"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}")
    (tmp_path / "sub-04").symlink_to(tmp_path / "elsewhere" / "sub-04")  # a linked subject: followed
    (tmp_path / "sub-01" / "ses-c").mkdir()
    (tmp_path / "sub-01" / "ses-c" / "anat").symlink_to(tmp_path / "elsewhere" / "c")  # linked anat
    (tmp_path / "sub-03" / "link").symlink_to(tmp_path / "sub-01")  # a linked folder below: not followed
    (tmp_path / "sub-05").write_text("not a folder")
    want = [p for p in sorted(tmp_path.glob("sub-*/**/anat/*_desc-geomorph_metrics.json")) if "x" not in p.parts]
    assert d.metrics_files(tmp_path) == want and len(want) == 5
    for s in ("01", "03", "04", "09"):
        assert d.metrics_files(tmp_path, s) == [p for p in want if p.parts[len(tmp_path.parts)] == f"sub-{s}"]
    assert d.metrics_files(tmp_path / "missing") == []


def test_files_not_named_as_their_folders_results_are_not_results(tmp_path):
    """A backup beside a result (``old_sub-01_..._metrics.json``) gave sub-01 hemi-L a second row
    in the group table, exit 0; macOS's resource file ``._sub-01_..._metrics.json`` (a copy to a
    shared drive) failed the group level, exit 1, with 'rerun the participant level' (which does
    not remove it); sub-02's file copied into ``sub-01/anat`` or into a session it is not of gave
    sub-02 two rows. Only a name that is a result of its folder's subject and session is listed."""
    name = "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    good = tmp_path / "sub-01" / "anat" / name
    session = tmp_path / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    stray = [good.with_name("old_" + name), good.with_name("._" + name),
             good.with_name(name.replace("sub-01", "sub-02")), good.with_name(name.replace("hemi-L", "hemi-X")),
             session.with_name(name), session.with_name(session.name.replace("ses-1", "ses-2"))]
    for path in (good, session, *stray):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert d.metrics_files(tmp_path) == [good, session] == d.metrics_files(tmp_path, "01")


def test_a_link_to_itself_among_the_subjects_costs_only_itself(tmp_path):
    """`ln -s sub-03 OUT/sub-03` (a link to itself) made os.scandir's is_dir raise ELOOP inside the
    listing, whose OSError handler dropped every subject: the group level said 'no participant
    outputs'. The link is skipped, as a session folder linking to itself is."""
    import os

    good = tmp_path / "sub-01" / "anat" / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    good.parent.mkdir(parents=True)
    good.write_text("{}")
    os.symlink("sub-03", tmp_path / "sub-03")
    os.symlink("ses-2", tmp_path / "sub-01" / "ses-2")
    assert d.metrics_files(tmp_path) == [good]
