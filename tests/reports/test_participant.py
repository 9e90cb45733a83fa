"""The participant report: figures, HTML links, degraded mode, errors, Chromium rendering."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.reports import build_participant_report
from geomorph_bids.reports.figures import SphereCamera, png_size, zscore
from geomorph_bids.reports.views import views_for
from geomorph_bids.derivatives import report_name
from geomorph_bids.reports.outputs import find_hemispheres

REGISTRATION_SIZE = (1050, 510)  # 5 columns x 2 views, 100 dpi
DISTORTION_SIZE = (860, 440)     # 4 views x 2 measures
SURFACE_WIDTH = 1530             # 5 columns of 300-pixel views (the height follows the surface's shape)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.imgs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(a[key])


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text())
    return p


def _pixels(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(str(path))[..., :3]


def _non_background(img: np.ndarray) -> float:
    return float(np.mean(np.any(np.abs(img - 1.0) > 0.05, axis=-1)))


def test_camera_and_zscore():
    cam = SphereCamera(views_for("L")[0], pixels=40)
    assert cam.points.shape[0] == cam.inside.sum()
    assert np.allclose(np.linalg.norm(cam.points, axis=1), 100.0)
    assert np.all(cam.points[:, 0] < 1e-9)  # the lateral view of a left hemisphere sees x <= 0
    z = zscore(np.array([0.0, 1.0, 2.0, 3.0]))
    assert np.isnan(z[0]) and abs(np.nanmean(z)) < 1e-12


def test_report_figures(outputs):
    t = time.perf_counter()
    html = build_participant_report(outputs, "sub-01")
    seconds = time.perf_counter() - t
    assert html == outputs / "sub-01.html" and html.is_file()
    figs = sorted((outputs / "sub-01" / "figures").glob("*.png"))
    assert [p.name for p in figs] == [
        "sub-01_hemi-L_space-fsaverage_desc-distortion_sphere.png",
        "sub-01_hemi-L_space-fsaverage_desc-registrationSulc_inflated.png",
        "sub-01_hemi-L_space-fsaverage_desc-registrationSulc_sphere.png",
        "sub-01_hemi-R_space-fsaverage_desc-distortion_sphere.png",
        "sub-01_hemi-R_space-fsaverage_desc-registrationSulc_inflated.png",
        "sub-01_hemi-R_space-fsaverage_desc-registrationSulc_sphere.png"]
    for p in figs:
        size = png_size(p)
        if "inflated" in p.name:
            assert size[0] == SURFACE_WIDTH and 300 < size[1] < 0.5 * SURFACE_WIDTH, size
            img = _pixels(p)
            # the map panels of the lateral (top) and medial (bottom) rows differ
            rows = img[60:-70]
            half = rows.shape[0] // 2
            assert np.abs(rows[:half] - rows[half:2 * half]).mean() > 0.05, p.name
            assert img.std() > 0.1 and _non_background(img) > 0.2, p.name
            continue
        assert size == (DISTORTION_SIZE if "distortion" in p.name else REGISTRATION_SIZE)
        assert p.stat().st_size > 20_000
        img = _pixels(p)
        assert img.std() > 0.1 and _non_background(img) > 0.3, p.name
    assert seconds < 60  # a few seconds on 2 cores; generous for a busy host


def test_html_links_exist(outputs):
    html = build_participant_report(outputs, "01")
    p = _parse(html)
    assert len(p.imgs) == 6
    for link in p.links:
        if link.startswith("#"):
            assert link[1:] in p.ids, link
            continue
        assert not re.match(r"^[a-z]+:", link), f"absolute link {link}"
        assert (html.parent / link).is_file(), link
    text = html.read_text()
    for needle in ("Metrics", "CC after registration", "Errors and warnings", "Methods and citation",
                   "<i>geomorph-bids</i>", "Suliman", "numpy"):
        assert needle in text, needle


def test_degrades_without_native_outputs(outputs):
    html = build_participant_report(outputs, "02")
    figs = sorted(p.name for p in (outputs / "sub-02" / "figures").glob("*.png"))
    assert figs == ["sub-02_hemi-L_space-fsaverage_desc-registrationSulc_sphere.png",
                    "sub-02_hemi-R_space-fsaverage_desc-registrationSulc_sphere.png"]
    text = html.read_text()
    assert "sub-02_hemi-L_sphere.surf.gii" in text  # names the missing optional output
    assert all(png_size(outputs / "sub-02" / "figures" / f) == REGISTRATION_SIZE for f in figs)


def test_errors_and_missing_hemisphere(outputs):
    html = build_participant_report(outputs, "03")
    text = html.read_text()
    assert "feature has NaN values" in text and "hemi_R_wf.register" in text
    assert "no outputs for hemi-R" in text
    assert "feature has NaN values" not in build_participant_report(outputs, "01").read_text()


def test_subject_without_outputs_and_sessions(outputs):
    import json

    html = build_participant_report(outputs, "99")
    assert "no outputs for hemi-L" in html.read_text()
    src = outputs / "sub-01" / "anat"
    ses = outputs / "sub-04" / "ses-a" / "anat"
    ses.mkdir(parents=True)
    for p in src.iterdir():
        shutil.copy(p, ses / p.name.replace("sub-01", "sub-04_ses-a"))
        if p.name.endswith("_metrics.json"):  # what it records matches its name, or it is no row (check_metrics)
            doc = json.loads(p.read_text())
            (ses / p.name.replace("sub-01", "sub-04_ses-a")).write_text(json.dumps({**doc, "subject": "04",
                                                                                   "session": "a"}))
    assert [(h.session, h.hemi, h.problem) for h in find_hemispheres(outputs, "04")] == [("a", "L", None),
                                                                                       ("a", "R", None)]
    whole = build_participant_report(outputs, "04").read_text()
    assert '<a href="#sub-04_ses-a_hemi-L_space-fsaverage">ses-a hemi-L</a>' in whole  # not "a hemi-L"
    one = build_participant_report(outputs, "04", session="a")
    assert one.name == report_name("04", "a") == "sub-04_ses-a.html"
    assert len(_parse(one).imgs) == 6


def test_surface_figure_degrades(outputs):
    import json

    text = build_participant_report(outputs, "02").read_text()
    assert text.count("no inflated or midthickness surface among the inputs: maps drawn on the sphere only") == 4
    metrics = outputs / "sub-01" / "anat" / "sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(metrics.read_text())
    surface = Path(doc["input_surface_path"])
    moved = surface.with_name("gone.inflated")
    doc["input_surface_path"] = str(moved)                    # the input moved away: one line, the rest drawn
    metrics.write_text(json.dumps(doc))
    html = build_participant_report(outputs, "01")
    text = html.read_text()
    assert f"the inflated surface {moved} (recorded in the metrics) is not readable here" in text
    assert len(_parse(html).imgs) == 5
    from geomorph_bids.io.gifti import write_surface
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(2)                                       # 162 vertices, not the native mesh's
    wrong = surface.with_name("wrong.surf.gii")
    write_surface(wrong, np.asarray(v), np.asarray(f), hemi="L", geometric_type="Inflated")
    doc["input_surface_path"] = str(wrong)
    metrics.write_text(json.dumps(doc))
    text = build_participant_report(outputs, "01").read_text()
    assert "the inflated surface has 162 vertices, the native sphere 2562: not drawn" in text


def test_the_surface_in_the_dataset_is_found_through_dataset_links(outputs):
    """The metrics recorded the inflated surface by its absolute path (a user's folders, stale once the study
    moved); inside the dataset it is now recorded relative to it alone, and the report opens it in the folder
    ``dataset_description.json``'s ``DatasetLinks`` ``raw`` names (relative to the outputs)."""
    import json
    import os

    metrics = outputs / "sub-01" / "anat" / "sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(metrics.read_text())
    drawn = len(_parse(build_participant_report(outputs, "01")).imgs)
    surface = Path(doc.pop("input_surface_path"))
    dataset = surface.parents[3]  # DATASET/inputs/sub-01/surf/lh.inflated
    doc["input_surface"] = surface.relative_to(dataset).as_posix()
    metrics.write_text(json.dumps(doc))
    link = os.path.relpath(dataset, outputs)
    assert not Path(link).is_absolute()
    (outputs / "dataset_description.json").write_text(json.dumps({"DatasetLinks": {"raw": link}}))
    html = build_participant_report(outputs, "01")
    assert len(_parse(html).imgs) == drawn and "not readable here" not in html.read_text()
    (outputs / "dataset_description.json").unlink()  # no link: said, the rest drawn
    text = build_participant_report(outputs, "01").read_text()
    assert f"the inflated surface {doc['input_surface']} (recorded in the metrics) is not readable here" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _screenshot(browser: str, html: Path, png: Path) -> None:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,2600", f"--screenshot={png}", html.as_uri()],
                   check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium; "
                                                  "scripts/install.sh --test installs it)")
def test_chromium_renders_figures(outputs, tmp_path):
    browser = _chromium()
    html = build_participant_report(outputs, "01")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<img") == 6 and "Errors and warnings" in dom
    shot = tmp_path / "report.png"
    _screenshot(browser, html, shot)
    img = _pixels(shot)
    # the same page with its figures gone (broken images) is the baseline
    broken_dir = tmp_path / "broken"
    shutil.copytree(outputs, broken_dir)
    shutil.rmtree(broken_dir / "sub-01" / "figures")
    shutil.copy(html, broken_dir / html.name)
    broken = tmp_path / "broken.png"
    _screenshot(browser, broken_dir / html.name, broken)
    base = _pixels(broken)
    assert img.shape == base.shape
    assert _non_background(img) > 0.25 and img.std() > 0.15
    assert _non_background(img) > 3 * _non_background(base)


def test_workflow_records_the_surface_for_the_report(tmp_path):
    """The hemisphere workflow puts the discovered surface into the metrics JSON's provenance
    (what the report opens); a hemisphere without one records None."""
    from geomorph_bids.io.discover import HemiInputs
    from geomorph_bids.workflows import RunConfig
    from geomorph_bids.workflows.hemisphere import init_hemisphere_wf

    bids = tmp_path / "bids"
    surf = bids / "derivatives" / "freesurfer" / "sub-01" / "surf"
    surf.mkdir(parents=True)
    for name in ("sphere", "sulc", "inflated"):
        (surf / f"lh.{name}").touch()
    config = RunConfig(bids_dir=bids, output_dir=tmp_path / "out", work_dir=tmp_path / "work", features=("sulc",),
                       omp_nthreads=1, nprocs=1)
    base = dict(subject="01", session=None, hemi="L", source="freesurfer", sphere=surf / "lh.sphere", sphere_reg=None,
                features={"sulc": surf / "lh.sulc"}, sulc_sign="freesurfer")
    info = init_hemisphere_wf(HemiInputs(**base, surface=surf / "lh.inflated", surface_kind="inflated"),
                              config).get_node("write_outputs").inputs.info
    assert info["input_surface"] == "derivatives/freesurfer/sub-01/surf/lh.inflated"
    assert info["input_surface_kind"] == "inflated"
    assert info["input_surface_path"] is None  # in the BIDS folder: found through DatasetLinks' raw
    info = init_hemisphere_wf(HemiInputs(**base), config).get_node("write_outputs").inputs.info
    assert info["input_surface"] is None and info["input_surface_path"] is None


_BUILD_UNDER_LIMIT = """
import json, sys
from pathlib import Path
from geomorph_bids.batch.tasks import build_report, incomplete_report_line
o = build_report(Path(sys.argv[1]), "01", True)
print(json.dumps({"path": str(o.path), "error": o.error, "line": incomplete_report_line(o)}))
"""


def test_figures_a_write_limit_refused_are_drawn_by_the_next_run_as_are_deleted_ones(outputs):
    """Round nine: under a file-size limit (``ulimit -f``; a full disk does the same) the
    report's PNGs could not be written: the report said so inside, the terminal said nothing
    (exit 0), and every later run reused that report, since it was newer than the outputs, so
    the figures never came. Figures deleted by hand were never drawn again either (the report
    kept linking them). Now the run warns on one line naming the file, and a report missing a
    figure it links, or built without some, is rebuilt."""
    import json
    import resource
    import signal
    import sys

    def limit():  # the PNGs are hundreds of KiB, the page itself ~20 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = subprocess.run([sys.executable, "-c", _BUILD_UNDER_LIMIT, str(outputs)], capture_output=True, text=True,
                          preexec_fn=limit, timeout=600)
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.splitlines()[-1])
    html, figures = Path(first["path"]), outputs / "sub-01" / "figures"
    assert first["error"] is None and html.is_file()
    assert first["line"].startswith("sub-01: report written without some figures (sub-01 hemi-L: figures failed: "
                                    "file too large (the file size limit) writing " + str(figures))
    assert "the next run of the same command (or --reports-only) draws them" in first["line"]
    assert not [p for p in figures.glob("*") if p.suffix != ".png"]  # no temporary file left
    assert "figures failed" in html.read_text()

    from geomorph_bids.batch.tasks import build_report
    second = build_report(outputs, "01", True)  # the limit lifted: the same command again
    assert second.incomplete == () and "figures failed" not in html.read_text()
    linked = _parse(html).imgs
    assert len(linked) == 6 and all((outputs / rel).is_file() for rel in linked)
    stamp = html.stat().st_mtime_ns
    assert build_report(outputs, "01", True).path == html and html.stat().st_mtime_ns == stamp  # current: kept

    gone = outputs / linked[0]
    gone.unlink()  # a user cleans up the figures folder
    build_report(outputs, "01", True)
    assert gone.is_file() and html.stat().st_mtime_ns != stamp


def test_a_report_reads_whole_only_its_subjects_crash_files(tmp_path, monkeypatch):
    """Each participant report read every crash file of the output folder whole (up to 16 MiB
    each) to find its subject's: with 1% of 100,000 hemispheres failed, 50,000 reports x 1,000
    crash files. Now only the subject's own are read whole; of the others the first line, once
    per process."""
    from geomorph_bids.crashfiles import crash_nodes
    from geomorph_bids.reports import participant

    folder = tmp_path / "logs" / "crash-run1"
    folder.mkdir(parents=True)
    for subject in ("01", "02", "03", "04"):
        (folder / f"crash-20260101-000000-u-register-{subject}.txt").write_text(
            f"Node: geomorph_wf.sub_{subject}_wf.hemi_L_wf.register\n\nTraceback:\n"
            f"geomorph_bids.errors.InputError: sub-{subject} lh.sulc: NaN\n" + "x" * 10000 + "\n")
    whole = []
    real = participant.read_crash_file
    monkeypatch.setattr(participant, "read_crash_file", lambda p: whole.append(p) or real(p))
    found = participant.crash_reports(tmp_path, "03", None)
    assert [(f, n) for f, n, _ in found] == [("logs/crash-run1/crash-20260101-000000-u-register-03.txt",
                                              "hemi_L_wf.register")]
    assert "InputError: sub-03 lh.sulc: NaN" in found[0][2] and len(whole) == 1
    assert crash_nodes(folder / "crash-20260101-000000-u-register-01.txt") == (
        "geomorph_wf", "sub_01_wf", "hemi_L_wf", "register")
    assert crash_nodes(tmp_path / "missing.txt") == ()


def test_a_report_is_current_only_for_this_version_and_after_the_subjects_crash_files(outputs):
    """--reports-only drew every report again (a second pass after a stop or a cluster time
    limit started from zero: ~1 core-second per hemisphere). It now keeps current reports, so
    "current" also means: drawn by this version of geomorph-bids (an upgrade redraws it) and
    after the subject's own crash files (a failure since then is listed)."""
    import os

    from geomorph_bids.batch.tasks import build_report
    from geomorph_bids.reports.participant import report_is_current

    first = build_report(outputs, "03", True)
    html = first.path
    assert not first.kept and report_is_current(outputs, "03") and build_report(outputs, "03", True).kept
    stamp = html.stat().st_mtime_ns

    crash = next((outputs / "logs" / "crash-abc").glob("crash-*.txt"))  # sub-03's, hemi-R
    os.utime(crash, ns=(stamp + 1000, stamp + 1000))  # a failure after the report (the redraw comes later still)
    assert not report_is_current(outputs, "03") and report_is_current(outputs, "01") is False  # 01: never drawn
    again = build_report(outputs, "03", True)
    assert not again.kept and report_is_current(outputs, "03")

    text = html.read_text()
    marker = next(line for line in text.splitlines() if "geomorph-bids report, version" in line)
    html.write_text(text.replace(marker, "<!-- geomorph-bids report, version 0.0.1 -->"))
    os.utime(html, ns=(stamp + 2 * 10 ** 9,) * 2)  # still newer than everything
    assert not report_is_current(outputs, "03")  # drawn by another version
    assert not build_report(outputs, "03", True).kept and marker in html.read_text()


def test_the_report_judges_with_the_thresholds_the_run_used(outputs):
    """The run judged with --min-cc 0.99 (its thresholds recorded in the metrics JSON beside the
    verdict) and printed FLAGGED, while the report judged with the defaults and said "No errors or
    warnings": the report now uses the recorded thresholds and states each hemisphere's verdict."""
    import json

    path = outputs / "sub-01" / "anat" / "sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(path.read_text())
    text = build_participant_report(outputs, "01").read_text()
    assert "FLAGGED" not in text and text.count("quality: <span class=\"ok\">ok</span>") == 2
    cc = doc["registration"]["cc_sulc_after"]
    doc["quality"] = {"flagged": True, "reasons": ["correlation"], "thresholds": {"min_cc_after": round(cc + 0.01, 3)}}
    path.write_text(json.dumps(doc))
    text = build_participant_report(outputs, "01").read_text()
    # the hemisphere's verdict, and the top of the page (Needs attention) naming it
    assert text.count('<span class="err">FLAGGED</span>') == 1 and text.count("FLAGGED by the quality gates") == 1
    assert f"(minimum {round(cc + 0.01, 3):g})" in text
    assert 'id="sub-01_hemi-L_space-fsaverage"' in text and 'id="sub-01_hemi-R_space-fsaverage"' in text


@pytest.mark.parametrize("change", ["deleted", "renamed"])
def test_a_report_is_not_current_after_a_hemispheres_outputs_were_deleted_or_renamed(outputs, change):
    """A QC rater's ``--reports-only`` after a hemisphere's outputs were deleted (or renamed: a
    backup kept beside them) reused the report, which still showed that hemisphere as ok with its
    figures: ``report_is_current`` compared the report with the files left, none newer. A
    folder whose entries changed after the report (its mtime) now makes the report stale."""
    import os

    from geomorph_bids.batch.tasks import build_report
    from geomorph_bids.reports.participant import report_is_current

    html = build_report(outputs, "01", True).path
    assert report_is_current(outputs, "01") and "sub-01 hemi-R" in html.read_text()
    anat = outputs / "sub-01" / "anat"
    late = html.stat().st_mtime_ns + 1000  # the change comes after the report (and before the rebuilt one)
    for path in anat.glob("sub-01_hemi-R_*"):
        stamp = path.stat().st_mtime_ns  # deleting or renaming keeps the other files' times
        if change == "deleted":
            path.unlink()
        else:
            path.rename(path.with_name("old_" + path.name))
            os.utime(path.with_name("old_" + path.name), ns=(stamp, stamp))
    os.utime(anat, ns=(late, late))
    assert not report_is_current(outputs, "01")
    again = build_report(outputs, "01", True)
    assert not again.kept and "sub-01_hemi-R_space-fsaverage" not in _parse(again.path).ids
    assert "no outputs for hemi-R" in html.read_text() and report_is_current(outputs, "01")


def test_flagged_failed_and_stale_hemispheres_are_said_at_the_top_of_the_report(outputs):
    """A rater opening sub-X.html saw the summary and the hemispheres' figures first; a hemisphere
    whose run failed (no outputs) was named only in "Errors and warnings" at the end of the page,
    and one whose latest run failed while an earlier run's outputs were kept (the group table's
    ``stale``) read "quality: ok". The page now opens with what needs a look, each flagged
    hemisphere with its gate, value and threshold, and a stale hemisphere's verdict says so."""
    import json

    text = build_participant_report(outputs, "01").read_text()
    assert 'class="attention"' not in text  # nothing to say: nothing said
    text = build_participant_report(outputs, "03").read_text()
    top = text[:text.index('id="summary"')]
    assert 'class="attention"' in top and "no outputs for hemi-R (failed or not requested)" in top
    path = outputs / "sub-01" / "anat" / "sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(path.read_text())
    floor = round(doc["registration"]["cc_sulc_after"] + 0.01, 3)
    doc["quality"] = {"flagged": True, "reasons": [], "thresholds": {"min_cc_after": floor}}
    path.write_text(json.dumps(doc))
    path = outputs / "sub-01" / "anat" / "sub-01_hemi-R_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(path.read_text())
    doc["latest_run_failed"] = {"reason": "InputError: rh.sulc: is empty (0 bytes) (logs/crash-x/crash-y.txt)"}
    path.write_text(json.dumps(doc))
    text = build_participant_report(outputs, "01").read_text()
    top = text[:text.index('id="summary"')]
    assert 'href="#sub-01_hemi-L_space-fsaverage"' in top and f"(minimum {floor:g})" in top
    assert 'href="#sub-01_hemi-R_space-fsaverage"' in top and "the latest run failed: InputError: rh.sulc" in top
    section = text[text.index('id="sub-01_hemi-R_space-fsaverage"'):]
    assert section.split("</p>")[0].endswith(
        'quality: <span class="err">STALE</span>: the latest run failed: InputError: rh.sulc: is empty (0 bytes) '
        "(logs/crash-x/crash-y.txt); these outputs are an earlier run&#x27;s")


@pytest.mark.parametrize("damage", ["metrics not JSON", "registered sphere deleted"])
def test_a_hemisphere_the_group_level_cannot_use_is_not_shown_as_ok(outputs, damage):
    """``--reports-only`` after a metrics file was damaged (or the registered sphere deleted)
    printed ``FAILED <file>: ...; not in its participant's report``, yet the report drew that
    hemisphere with ``quality: ok`` (figures of the files left; n/a metrics, or a note that the
    distortion maps "need the native sphere", which was there). The report now leaves it out as
    the line says, and names it at the top with the same reason."""
    anat = outputs / "sub-01" / "anat"
    if damage == "metrics not JSON":
        target = anat / "sub-01_hemi-R_space-fsaverage_desc-geomorph_metrics.json"
        target.write_text('{"subject": "01", "hemi')
        why = "is not valid JSON"
    else:
        target = anat / "sub-01_hemi-R_space-fsaverage_desc-geomorph_sphere.surf.gii"
        target.unlink()
        why = "is missing beside its metrics file (deleted or moved?)"
    text = build_participant_report(outputs, "01").read_text()
    ids = _parse(outputs / "sub-01.html").ids
    assert "sub-01_hemi-R_space-fsaverage" not in ids and "sub-01_hemi-L_space-fsaverage" in ids
    top = text[:text.index('id="summary"')]
    assert "sub-01 hemi-R fsaverage: not in this report: " in top and f"{target}: {why}" in top
    assert "no outputs for hemi-R" not in text  # it has outputs: they cannot be used
    assert text.count('quality: <span class="ok">ok</span>') == 1


def test_the_summary_names_each_hemispheres_method_where_they_differ(outputs):
    """A rerun of one hemisphere with other settings (``--model rigid --hemi L`` over default
    outputs) left a report whose summary said ``model / method: rigid / rigid`` for the subject,
    from the first hemisphere alone, while hemi-R was still the optimiser's. The summary now
    names each hemisphere's where they differ (as the template maps already did)."""
    import json

    path = outputs / "sub-01" / "anat" / "sub-01_hemi-R_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "model": "default", "method": "optimise", "output_density": "41k"}))
    text = build_participant_report(outputs, "01").read_text()
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert ("hemi-L: rigid / rigid (rigid pre-alignment only); hemi-R: default / optimise (warp optimised for this "
            "hemisphere)") in summary
    assert "hemi-L: 10k; hemi-R: 41k" in summary
    text = build_participant_report(outputs, "02").read_text()  # the same for both: said once
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert "<td class=\"l\">rigid / rigid (rigid pre-alignment only)</td>" in summary and "hemi-L: 10k" not in summary


def test_the_summary_names_the_input_layout_as_the_run_does(outputs):
    """fix-as: a subject read from fMRIPrep's outputs had ``input: smriprep`` in its report's summary (the
    layout's key), as if they had been taken for sMRIPrep's; the summary now says the layout as the run's
    ``inputs:`` line does, and the folder; the group table's data dictionary says what ``smriprep`` covers."""
    import json

    from geomorph_bids.reports.group_table import _DESCRIBED

    for hemi in "LR":
        path = outputs / "sub-01" / "anat" / f"sub-01_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json"
        doc = json.loads(path.read_text())
        path.write_text(json.dumps({**doc, "input_source": "smriprep", "input_sphere":
                                    f"derivatives/fmriprep/sub-01/anat/sub-01_hemi-{hemi}_sphere.surf.gii"}))
    text = build_participant_report(outputs, "01").read_text()
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert '<td class="l">sMRIPrep/fMRIPrep layout, derivatives/fmriprep/sub-01/anat</td>' in summary
    text = build_participant_report(outputs, "02").read_text()  # no input_sphere recorded: the layout alone
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert '<td class="l">FreeSurfer layout</td>' in summary
    assert _DESCRIBED["input_source"][0] == ("Layout the inputs were read from: freesurfer, smriprep "
                                                      "(sMRIPrep's and fMRIPrep's layout) or hcp")


def test_the_summary_of_a_subject_registered_to_two_templates_names_each(outputs):
    """A subject registered to fsLR and to fsaverage: the summary listed its hemispheres as
    ``sub-01 hemi-L, sub-01 hemi-L`` and the template maps as ``hemi-L: ...; hemi-L: ...``, not
    saying which template each was; the group summary's template maps did not name it either."""
    import json

    from geomorph_bids.reports import build_group_report

    anat = outputs / "sub-01" / "anat"
    for path in sorted(anat.glob("sub-01_hemi-L_space-fsaverage_desc-geomorph_*")):
        target = anat / path.name.replace("space-fsaverage", "space-fsLR")
        if path.name.endswith("_metrics.json"):
            doc = json.loads(path.read_text())
            target.write_text(json.dumps({**doc, "template": "fsLR"}))
        else:
            target.write_bytes(path.read_bytes())
    text = build_participant_report(outputs, "01").read_text()
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert "sub-01 hemi-L fsLR, sub-01 hemi-L fsaverage, sub-01 hemi-R fsaverage" in summary
    assert "hemi-L fsLR: " in summary and "hemi-L fsaverage: " in summary
    text = build_group_report(outputs).read_text()
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert "fsLR hemi-L: " in summary and "fsaverage hemi-L: " in summary


class _Outline(HTMLParser):
    """Headings, image alternatives, header cells and ids of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.alts: list[str | None] = []
        self.th_scopes: list[str | None] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "img":
            self.alts.append(a.get("alt"))
        if tag == "th":
            self.th_scopes.append(a.get("scope"))
        if "id" in a:
            self.ids.append(a["id"])


def test_the_report_reads_in_order_and_says_what_each_figure_shows(outputs):
    """A screen-reader user heard `registration sub-01_hemi-L_space-fsaverage` for a figure (not
    what it shows), jumped from the Methods' <h2> to an <h5>, and heard the metrics tables'
    numbers without the metric or hemisphere they belong to."""
    html = build_participant_report(outputs, "01")
    p = _Outline()
    p.feed(html.read_text())
    assert p.headings[0] == 1 and all(b <= a + 1 for a, b in zip(p.headings, p.headings[1:])), p.headings
    assert len(p.alts) == 6 and len(set(p.alts)) == 6
    for hemi in "LR":
        mine = [alt for alt in p.alts if f"sub-01 hemi-{hemi}, registered to fsaverage" in alt]
        assert len(mine) == 3, p.alts
        registration = next(alt for alt in mine if alt.startswith("registration figure"))
        assert "sulc" in registration and "before" in registration and "after" in registration
        assert any(alt.startswith("distortion figure") and "areal" in alt for alt in mine)
    assert p.th_scopes and set(p.th_scopes) == {"col", "row"}
    assert len(p.ids) == len(set(p.ids))


def test_errors_warnings_and_notes_say_which_they_are_in_words(outputs):
    """The Errors and warnings list told an error (a crash, a hemisphere without outputs) from a
    warning and a note by the colour of its line only: red, amber and grey, which a reader with
    red-green colour blindness, or a grey-scale print, does not tell apart. The Needs attention box
    above them was a bold paragraph: a reader going from heading to heading skipped it."""
    text = build_participant_report(outputs, "03").read_text()
    outline = _Outline()
    outline.feed(text)
    assert outline.headings[:3] == [1, 2, 2]  # title, Needs attention, Summary
    assert '<div class="attention"><h2 class="err">Needs attention</h2>' in text
    errors = text.split('<section id="errors">')[1].split("</section>")[0]
    items = re.findall(r'<li class="(\w+)">(.*?)</li>', errors)
    assert {cls for cls, _ in items} >= {"err"}
    word = {"err": "<b>error</b>: ", "warn": "<b>warning</b>: ", "note": "note: "}
    for cls, body in items:
        assert body.startswith(word[cls]), (cls, body)
    assert any("<b>error</b>: no outputs for hemi-R" in body for _, body in items)
    assert any("feature has NaN values" in body and body.startswith("<b>error</b>: ") for _, body in items)


def test_a_subjects_sessions_are_in_the_group_tables_order(outputs):
    """A longitudinal subject's report (``sub-X.html``) listed its sessions as text: ``ses-10`` before
    ``ses-2`` and ``ses-9`` (the summary's sessions, the sections and their links), while the group table,
    the run's summary and its ``inputs:`` line put ``ses-2`` first (``label_key``). Now they agree."""
    import json

    src = outputs / "sub-01" / "anat"
    for ses in ("10", "2", "9"):
        dst = outputs / "sub-05" / f"ses-{ses}" / "anat"
        dst.mkdir(parents=True)
        for p in src.iterdir():
            name = p.name.replace("sub-01", f"sub-05_ses-{ses}")
            shutil.copy(p, dst / name)
            if name.endswith("_metrics.json"):  # what it records matches its name (check_metrics)
                (dst / name).write_text(json.dumps({**json.loads(p.read_text()), "subject": "05", "session": ses}))
    assert [(h.session, h.hemi) for h in find_hemispheres(outputs, "05")] == [
        ("2", "L"), ("2", "R"), ("9", "L"), ("9", "R"), ("10", "L"), ("10", "R")]
    html = build_participant_report(outputs, "05").read_text()
    assert 'sessions</th><td class="l">2, 9, 10</td>' in html
    links = re.findall(r'<a href="#sub-05_ses-(\d+)_hemi-L', html)
    assert links == ["2", "9", "10"], links


def test_report_built_with_lists_the_packages_that_drew_it(outputs):
    """Twenty-fourth session: the participant report's "Report built with" listed nipype, niworkflows and torch,
    which drawing a report does not import (a reader took them for the report's, or the registration's, versions).
    Now it lists what drew it, and a fresh interpreter that draws one imports none of the others."""
    import json
    import sys

    from geomorph_bids.reports.html import REPORT_PACKAGES

    text = build_participant_report(outputs, "01").read_text()
    about = text[text.index("<h3>Report built with</h3>"):]
    about = about[:about.index("</table>")]
    assert re.findall(r"<tr><th scope=\"row\"[^>]*>([\w-]+)</th>", about) == [
        "geomorph-bids", "numpy", "scipy", "nibabel", "matplotlib"] == list(REPORT_PACKAGES)
    code = ("import json, sys; from geomorph_bids.reports import build_participant_report; "
            f"build_participant_report({str(outputs)!r}, '02'); "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 0, proc.stderr
    imported = set(json.loads(proc.stdout.splitlines()[-1]))
    assert {"nipype", "niworkflows", "torch"} & imported == set()
    assert {p.replace("geomorph-bids", "geomorph_bids") for p in REPORT_PACKAGES} <= imported
