"""--bids-filter-file in fMRIPrep's nested form (geomorph_bids.cli.selection.read_filter)."""

from __future__ import annotations

import json

import pytest

from geomorph_bids.cli.selection import read_filter
from geomorph_bids.errors import InputError

from .conftest import make_dataset
from .test_bids import anat, run


def _filter(tmp_path, doc) -> object:
    path = tmp_path / "filter.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("doc,expected", [
    # fMRIPrep's documented form: datatype/suffix/part restate the query; bold's entities are not ours
    ({"t1w": {"datatype": "anat", "suffix": "T1w", "session": "1", "part": ["mag", None]},
      "bold": {"datatype": "func", "suffix": "bold", "task": "rest", "session": "2"}}, {"session": ["1"]}),
    ({"t1w": {"session": "1"}, "bold": {"task": "rest", "session": "1"}}, {"session": ["1"]}),
    ({"t1w": {"subject": "sub-01"}, "t2w": {"subject": ["01"], "extension": ".nii.gz"}}, {"subject": ["01"]}),
    ({"subject": "01", "t1w": {"session": "ses-pre"}, "fmap": {"datatype": "fmap"}},
     {"subject": ["01"], "session": ["pre"]}),
    ({"bold": {"session": "2"}}, {}),
])
def test_the_nested_form_selects_by_the_anatomical_queries_only(tmp_path, doc, expected):
    """QA pass (fix-a): every nested query was merged with dict.update, so {"t1w": {"session": "1"},
    "bold": {"session": "2"}} registered session 2, exit 0; and bold's "task" (fMRIPrep's ordinary
    filter files) or the documented datatype/suffix keys refused the whole file."""
    notes: list[str] = []
    assert read_filter(_filter(tmp_path, doc), notes) == expected
    ignored = [q for q in doc if q in ("bold", "fmap")]
    assert len(notes) == (1 if ignored else 0)
    if ignored:
        assert notes[0] == (f"{tmp_path / 'filter.json'}: the BIDS filter file's {', '.join(ignored)} query "
                            "ignored (the surfaces are selected by fMRIPrep's anatomical queries only: t1w, t2w, "
                            "flair, roi)")


@pytest.mark.parametrize("doc,words", [
    ({"t1w": {"session": "1"}, "t2w": {"session": "2"}},
     "the BIDS filter file selects session 1 in query 't1w' and 2 in query 't2w': the surfaces are made from one "
     "anatomy, give one session selection"),
    ({"session": "1", "t1w": {"session": ["1", "2"]}},
     "the BIDS filter file selects session 1 in the top level and 1, 2 in query 't1w'"),
    ({"t1w": {"suffix": "T2w"}}, "query 't1w' of the BIDS filter file: suffix \"T2w\" selects other images than "
                                 "the query's"),
    ({"t1w": {"datatype": "func"}}, "query 't1w' of the BIDS filter file: datatype \"func\" selects other images"),
    ({"t1w": {"acquisition": "mprage"}}, "query 't1w' of the BIDS filter file: unsupported entity 'acquisition'"),
    ({"T1w": {"session": "1"}}, "unknown query 'T1w' in the BIDS filter file: did you mean 't1w'?"),
    ({"t1w": {"session": None}}, "query 't1w': 'session' in the BIDS filter file must be a label or a list of "
                                 "labels, got null"),
])
def test_anatomical_queries_that_disagree_or_select_what_we_cannot_are_refused(tmp_path, doc, words):
    path = _filter(tmp_path, doc)
    with pytest.raises(InputError) as exc:
        read_filter(path)
    assert str(exc.value).startswith(f"{path}: {words}") and "\n" not in str(exc.value)


def test_a_nested_filter_registers_the_t1w_session_not_the_bold_one(tmp_path):
    """End to end: the session of fMRIPrep's t1w query is registered, bold's is not; one note line
    names the query ignored."""
    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="2")
    filt = _filter(tmp_path, {"t1w": {"session": "1"}, "bold": {"session": "2", "task": "rest"}})
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--bids-filter-file", filt, "--hemi", "L", "--model", "rigid",
                       "-w", tmp_path / "w", "--nprocs", "1", "--reports", "deferred")
    assert code == 0, err
    assert err.splitlines()[0] == (f"geomorph-bids: note: {filt}: the BIDS filter file's bold query ignored (the "
                                   "surfaces are selected by fMRIPrep's anatomical queries only: t1w, t2w, flair, roi)")
    assert (anat(out, "01", "1") / "sub-01_ses-1_hemi-L_space-fsLR_desc-geomorph_metrics.json").is_file()
    assert not (out / "sub-01" / "ses-2").exists()


def test_per_session_anatomy_registers_every_session_even_when_one_lacks_a_hemisphere(tmp_path, capsys):
    """sMRIPrep sessionwise outputs (no session-less anatomy) where ses-2 has hemi-L only: without a
    session selection, every session is processed on its own. Before, discovery without a session
    took hemi-R from its lone ses-1 folder and failed hemi-L with "spheres in several sessions
    (ses-1, ses-2), pass a session": ses-1's hemi-L and ses-2 were never registered. A raw session
    of functional scans alone (no anat folder, no derivatives) is named on one note line, not failed."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="2")
    for f in (tmp_path / "bids" / "derivatives" / "smriprep" / "sub-01" / "ses-2" / "anat").glob("*hemi-R*"):
        f.unlink()
    (bids / "sub-01" / "ses-3" / "func").mkdir(parents=True)  # a functional-only session
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"]),
                                  ["sulc"])
    got = [(j.subject, j.session, sorted(j.inputs.hemis), sorted({h.session for h in j.inputs.hemis.values()}))
           for j in jobs]
    assert got == [("01", "1", ["L", "R"], ["1"]), ("01", "2", ["L"], ["2"])]
    assert [(f.subject, f.session, f.hemi) for f in failures] == [("01", "2", "R")]
    assert failures[0].reason.startswith("no inputs; looked for sMRIPrep sub-01/[ses-*/]anat/sub-01[_ses-2]_hemi-R")
    err = capsys.readouterr().err
    assert err == (f"geomorph-bids: note: sub-01: session ses-3 left out: no anat folder in {bids / 'sub-01'}, and "
                   "no derivatives hold it (no anatomy to register)\n")
    # session-less anatomy shared by the sessions stays one job, written without a session
    shared = make_dataset(tmp_path / "shared", "smriprep", subjects=("01",))
    (shared / "sub-01" / "ses-1" / "anat").mkdir(parents=True)
    (shared / "sub-01" / "ses-2" / "anat").mkdir(parents=True)
    jobs, failures = collect_jobs(build_parser().parse_args([str(shared), str(tmp_path / "o2"), "participant"]),
                                  ["sulc"])
    assert [(j.subject, j.session, sorted(j.inputs.hemis)) for j in jobs] == [("01", None, ["L", "R"])]
    assert not failures
