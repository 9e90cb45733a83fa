"""An attacker who controls what a run reads or a folder it shares: links planted in the output
folder, a colleague's pickles in a shared work folder. Each asserts on the exit code, the one line
the user reads and the files outside the output folder (never written). The matrix is in
docs/reliability.md (twenty-second session, fix-at); what the app trusts is in docs/security.md
(the README's "Security: what the app trusts" until the twenty-fifth session)."""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geomorph_bids.cli.paths import check_work_folder
from geomorph_bids.errors import InputError

from .test_bids import run

RIGID = ("--model", "rigid", "--hemi", "L", "--participant-label", "01")


@pytest.fixture(scope="module")
def bids(dataset_factory):
    return dataset_factory("freesurfer", subjects=("01",))


class _Planted:
    """A pickle that, loaded, creates the file ``marker`` (as a colleague's could run anything)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line]


def test_reports_only_refuses_a_figures_link_leading_out_of_the_output_folder(bids, tmp_path):
    """`--reports-only` wrote the six figures of sub-01 through ``OUT/sub-01/figures``, a link a
    colleague planted in the shared output folder, into the folder it led to (the participant level
    and the group level refused such a link; --reports-only did not look)."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w")
    assert code == 0, err
    (out / "sub-01.html").unlink()
    figures = out / "sub-01" / "figures"
    for p in figures.iterdir():
        p.unlink()
    figures.rmdir()
    figures.symlink_to(victim, target_is_directory=True)
    code, _, err = run(bids, out, "participant", "--reports-only", "--participant-label", "01")
    assert code == 1, err
    assert _errors(err) == [f"geomorph-bids: error: {figures}: is a link to {victim.resolve()}, outside the output "
                            f"directory {out}; geomorph-bids writes only inside the output directory: remove the link"]
    assert list(victim.iterdir()) == []
    assert not (out / "sub-01.html").exists()


def test_file_links_planted_in_the_output_folder_are_replaced_not_written_through(bids, tmp_path):
    """Outputs, sidecars, the report, the citation and the top-level files replaced by links to a
    victim's files: the rerun replaces each link by its file (an atomic rename replaces the link
    itself), and the victim's files keep their bytes."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w")
    assert code == 0, err
    anat = out / "sub-01" / "anat"
    planted = [*sorted(anat.glob("sub-01_hemi-L_*")), out / "sub-01.html", out / "dataset_description.json",
               out / "logs" / "CITATION.md", out / ".bidsignore", *sorted((out / "sub-01" / "figures").glob("*.png"))]
    assert len(planted) > 10
    for i, p in enumerate(planted):
        target = victim / f"{i}-{p.name}"
        target.write_text(f"victim {i}\n")
        p.unlink()
        p.symlink_to(target)
    code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w")
    assert code == 0, err
    for i, p in enumerate(planted):
        assert (victim / f"{i}-{p.name}").read_text() == f"victim {i}\n"
        assert p.is_file() and not p.is_symlink(), p


def _poison(work: Path, marker: Path) -> Path:
    """Replace the cached result of sub-01's registration step in ``work`` by a planted pickle."""
    result = work / "geomorph_wf" / "sub_01_wf" / "hemi_L_wf" / "register" / "result_register.pklz"
    assert result.is_file()
    with gzip.open(result, "wb") as fh:
        pickle.dump(_Planted(marker), fh)
    return result


@pytest.mark.parametrize("how", ["writable by everyone", "another user's"])
def test_a_pickle_another_user_could_have_planted_in_the_work_folder_is_never_loaded(bids, tmp_path, how):
    """`-w` on a shared /scratch: a colleague replaced a cached ``result_register.pklz`` of a
    finished run; the rerun (its metrics JSON gone) unpickled it, running the colleague's code as
    this user (the marker file was made). Now the file is refused, before anything is loaded or
    written, on one line naming it and its owner."""
    if how == "another user's" and os.geteuid() != 0:
        pytest.skip("chown needs root")
    out, work, marker = tmp_path / "out", tmp_path / "w", tmp_path / "ran"
    code, _, err = run(bids, out, "participant", *RIGID, "-w", work)
    assert code == 0, err
    result = _poison(work, marker)
    if how == "another user's":
        os.chown(result, 4242, -1)
    else:
        result.chmod(0o666)
    metrics = out / "sub-01" / "anat" / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    metrics.unlink()
    code, _, err = run(bids, out, "participant", *RIGID, "-w", work)
    assert not marker.exists()
    assert code == 1, err
    why = ("is writable by every user (made under umask 000?)" if how == "writable by everyone"
           else "belongs to uid 4242, not to you")
    assert _errors(err) == [
        f"geomorph-bids: error: {result}: {why}; Nipype loads the pickled results in the work folder, and loading a "
        f"pickle can run any code: use a work folder of your own (-w), or delete {work / 'geomorph_wf'} (a cache: it "
        "is made again)"]
    assert not metrics.exists()


def test_the_work_folder_check_looks_at_the_run_participants_and_trusts_the_group(tmp_path, monkeypatch):
    """Other participants' folders are not entered (a run of sub-02 beside a damaged sub-01's);
    a group-writable file (umask 002, a lab's shared project folder) is trusted; a work folder of
    another user is refused; root trusts the work folder's owner (a container on a user's folder)."""
    work = tmp_path / "w"
    step = work / "geomorph_wf" / "sub_01_wf" / "hemi_L_wf" / "register"
    step.mkdir(parents=True)
    (step / "result_register.pklz").write_bytes(b"x")
    (step / "result_register.pklz").chmod(0o666)
    check_work_folder(work, ["02"])
    check_work_folder(work, ["sub-010"])
    with pytest.raises(InputError, match="is writable by every user"):
        check_work_folder(work, ["sub-01"])
    (step / "result_register.pklz").chmod(0o664)
    check_work_folder(work, None)
    me = os.geteuid()
    if me == 0:  # root trusts the work folder's owner and its files: a container run on a user's folder
        for p in (work, *work.rglob("*")):
            os.chown(p, 4242, -1)
        check_work_folder(work, None)
        owner, me = 4242, 1000
    else:
        owner, me = me, me + 4242
    monkeypatch.setattr(os, "geteuid", lambda: me)
    with pytest.raises(InputError) as exc:
        check_work_folder(work, None)
    assert exc.value.path == work and re.search(rf"is owned by (\S+ \()?uid {owner}\)?, not by you", str(exc.value))


PLANTED = ("sub-01/anat/sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.json",
           "sub-01/anat/sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json", "sub-01.html",
           "sub-01/figures/sub-01_hemi-L_space-fsLR_desc-distortion_sphere.png", "README.md", ".bidsignore",
           "logs/CITATION.md", "dataset_description.json")


@pytest.mark.parametrize("mode", ["workflow", "batch"])
def test_fifos_planted_for_outputs_are_replaced_without_blocking(bids, tmp_path, mode):
    """FIFOs put in a shared output folder in place of a metrics JSON and a sidecar (and the report,
    a figure, the top-level files): the participant level blocked for ever reading them (the metrics
    JSON when it looked for settings changed since, the sidecar when it compared it with the new
    one; killed by the job's time limit). A watchdog here opens them for writing from 60 s on, which
    ends such a read: it must not have been needed, and every FIFO is replaced by its file."""
    import stat
    import threading

    out = tmp_path / "out"
    extra = ("--batch-size", "2") if mode == "batch" else ()
    code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w", *extra)
    assert code == 0, err
    for rel in PLANTED:
        (out / rel).unlink()
        os.mkfifo(out / rel)
    needed = []
    done = threading.Event()

    def watchdog():  # (again every second: each blocked read is ended, so a regression fails, never hangs)
        if done.wait(60):
            return
        while not done.wait(1):
            for rel in PLANTED:
                with contextlib.suppress(OSError):
                    fd = os.open(out / rel, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: no reader waiting
                    needed.append(rel)
                    os.close(fd)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    try:
        code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w", *extra)
    finally:
        done.set()
        thread.join()
    assert needed == []
    assert code == 0, err
    for rel in PLANTED:
        assert stat.S_ISREG((out / rel).lstat().st_mode), rel


_DEV_ZERO = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (2 ** 31, 2 ** 31))
from geomorph_bids.results.metrics import read_document
from geomorph_bids.results.writer import _put_sidecar
folder = Path(sys.argv[1])
(folder / "m.json").symlink_to("/dev/zero")
(folder / "s.json").symlink_to("/dev/zero")
assert read_document(folder / "m.json") is None
_put_sidecar(folder / "s.json", b'{"a": 1}\\n')
assert (folder / "s.json").read_bytes() == b'{"a": 1}\\n' and not (folder / "s.json").is_symlink()
print("ok")
"""


@pytest.mark.skipif(not Path("/dev/zero").exists() or sys.platform != "linux", reason="Linux's /dev/zero")
def test_a_link_to_dev_zero_planted_for_a_metrics_json_or_a_sidecar_is_not_read_without_end(tmp_path):
    """A metrics JSON or sidecar replaced by a link to ``/dev/zero``: read whole, it filled the
    memory (here: MemoryError under a 2 GiB address-space limit; on a node, the job killed). Now
    read at most as many bytes as a document can have, and the sidecar replaced by its file."""
    proc = subprocess.run([sys.executable, "-c", _DEV_ZERO, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


_HUGE_REPORT = """
import os, resource, sys
from pathlib import Path
out = Path(sys.argv[1])
anat = out / "sub-01" / "anat"
anat.mkdir(parents=True)
(anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json").write_text("{}")
os.utime(anat, ns=(1, 1)); os.utime(out / "sub-01", ns=(1, 1)); os.utime(anat / os.listdir(anat)[0], ns=(1, 1))
with open(out / "sub-01.html", "wb") as fh:
    fh.truncate(3 * 2 ** 30)
resource.setrlimit(resource.RLIMIT_AS, (2 ** 31, 2 ** 31))
from geomorph_bids.reports.participant import report_is_current
print(report_is_current(out, "01"))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="sparse files and RLIMIT_AS as Linux has them")
def test_a_huge_file_planted_as_a_report_is_not_read_whole(tmp_path):
    """``sub-01.html`` replaced by a sparse file of gigabytes, newer than the outputs: ``--reports-only``
    read it whole to judge whether it was current (MemoryError under a 2 GiB address-space limit;
    20 GB on a node). Now at most 64 MiB are read: it is not current, and is drawn again."""
    proc = subprocess.run([sys.executable, "-c", _HUGE_REPORT, str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]
