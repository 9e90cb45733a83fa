"""What a run inside the Apptainer image says about its container (fix-bk: an HPC user's first runs
of the SIF, `apptainer run --containall`/`--cleanenv`/`--no-home`, as a user, not root). The cases
were seen in the image (Apptainer 1.4.5 without setuid, Debian sid); here the container is the
variables Apptainer sets inside (`APPTAINER_CONTAINER`, also under `--cleanenv`) and the image's
(`GEOMORPH_CONTAINER`), and the mounts are monkeypatched."""
from __future__ import annotations

import argparse
import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from geomorph_bids.cli import container, descriptions, paths, preflight as pf, settings
from geomorph_bids.errors import InputError


@pytest.fixture
def apptainer(monkeypatch):
    """Inside the SIF: the image's variable and Apptainer's own."""
    monkeypatch.setenv("GEOMORPH_CONTAINER", "/home/u/geomorph-bids.sif")
    monkeypatch.setenv("APPTAINER_CONTAINER", "/home/u/geomorph-bids.sif")
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)


def _outside(monkeypatch) -> None:
    for name in ("GEOMORPH_CONTAINER", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        monkeypatch.delenv(name, raising=False)


def test_an_input_folder_that_was_not_bound_says_to_bind_it(tmp_path, monkeypatch, apptainer):
    """`apptainer run --containall` (or `--cleanenv`) without `-B /data/bids`: the host's folder is
    not in the container, and the run said `/data/bids: bids_dir does not exist or is not a folder`
    of a folder the user could `ls` on the host. Now the line says to bind it, with Apptainer's
    syntax in the SIF and Docker's in the Docker image; outside the image as before."""
    missing = tmp_path / "data" / "bids"
    args = argparse.Namespace(bids_dir=missing, skip_bids_validation=False)
    with pytest.raises(InputError) as sif:
        settings.validate_arguments(args)
    assert str(sif.value) == (
        f"{missing}: bids_dir does not exist or is not a folder; in this container only the image's files and the "
        f"folders bound into it are there: bind it (apptainer run -B {missing}:{missing}:ro, or "
        f"-B /path/on/host:{missing}:ro)")
    monkeypatch.delenv("APPTAINER_CONTAINER")
    monkeypatch.setenv("GEOMORPH_CONTAINER", "docker://geomorph-bids:test")
    with pytest.raises(InputError) as docker:
        settings.validate_arguments(args)
    assert str(docker.value) == (
        f"{missing}: bids_dir does not exist or is not a folder; in this container only the image's files and the "
        f"folders bound into it are there: bind it (docker run -v /path/on/host:{missing}:ro)")
    _outside(monkeypatch)
    with pytest.raises(InputError) as native:
        settings.validate_arguments(args)
    assert str(native.value) == f"{missing}: bids_dir does not exist or is not a folder"


def test_a_subjects_dir_or_derivatives_folder_that_was_not_bound_says_to_bind_it(tmp_path, apptainer):
    """`--fs-subjects-dir /fs` and `--derivatives smriprep=/deriv` without their binds: the same
    line as the dataset's; a file where the folder should be is not a missing bind."""
    fs, deriv = tmp_path / "fs", tmp_path / "deriv"
    with pytest.raises(InputError) as subjects:
        settings._check_fs_subjects_dir(fs)
    assert str(subjects.value) == (
        f"{fs}: --fs-subjects-dir: no such folder (the FreeSurfer SUBJECTS_DIR holding the subjects); in this "
        f"container only the image's files and the folders bound into it are there: bind it (apptainer run "
        f"-B {fs}:{fs}:ro, or -B /path/on/host:{fs}:ro)")
    with pytest.raises(InputError) as derivatives:
        paths._check_given_folder("smriprep", deriv)
    assert str(derivatives.value).endswith(f"bind it (apptainer run -B {deriv}:{deriv}:ro, or "
                                           f"-B /path/on/host:{deriv}:ro)")
    deriv.write_text("")
    with pytest.raises(InputError) as a_file:
        paths._check_given_folder("smriprep", deriv)
    assert "bind" not in str(a_file.value)


def test_a_work_folder_that_belongs_to_nobody_says_why_and_what_to_bind(tmp_path, monkeypatch, apptainer):
    """The README's `apptainer run ... -B "${TMPDIR:-/tmp}:/work" ... -w /work`, as a user with
    Apptainer without setuid (a user namespace): the shared /tmp is root's, which the namespace shows
    as nobody (uid 65534), and the run stopped on `/work: is owned by nobody (uid 65534), not by you:
    that user can put files in it; ...: use a work folder of your own (-w), or delete
    /work/geomorph_wf`: no geomorph_wf was there, and nothing said why /tmp had become nobody's or
    that the bind is what to change. The refusal stays (anyone can write /tmp); the line now says
    both, and no longer offers to delete a folder that would not help."""
    work = tmp_path / "work"
    work.mkdir()
    if os.geteuid() == 0:  # root's folders are trusted: the folder is another user's
        os.chown(work, 4242, -1)
    owner = work.stat().st_uid
    monkeypatch.setattr(container, "OVERFLOW_UID", owner)  # the folder shows as the namespace's overflow uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)
    with pytest.raises(InputError) as sif:
        paths.check_work_folder(work)
    assert str(sif.value) == (
        f"{work}: is owned by {paths._user(owner)}, not by you: that user can put files in it (uid {owner} is how a "
        "user namespace, Apptainer without setuid or rootless podman, shows a file of root or of any user it does "
        "not map: a shared /tmp bound as the work folder is one); Nipype loads the pickled results in the work "
        "folder, and loading a pickle can run any code: use a work folder of your own (-w); in this container, bind "
        f"a folder of your own there (mkdir -p it on the host, then apptainer run -B /host/folder/of/yours:{work})")
    _outside(monkeypatch)
    monkeypatch.setattr(container, "OVERFLOW_UID", 65534)
    with pytest.raises(InputError) as native:
        paths.check_work_folder(work)
    assert str(native.value) == (
        f"{work}: is owned by {paths._user(owner)}, not by you: that user can put files in it; Nipype loads the "
        "pickled results in the work folder, and loading a pickle can run any code: use a work folder of your own (-w)")


def test_a_folder_on_the_containers_own_memory_file_system_is_named_as_such(tmp_path, monkeypatch, apptainer):
    """`apptainer run --containall` makes /tmp, /var/tmp and the home a 64 MiB tmpfs of the container,
    gone when it ends. The default work folder (./work, in that home) and `-w /tmp/w` stopped on `the
    work directory has 64 MiB free; geomorph-bids needs at least 256 MiB there (disk full?)`, and an
    output folder there (`~/out`) on `the output directory has 64 MiB free; geomorph-bids needs at
    least 64 MiB there (disk full?)` (63.9 free; where a site makes the session larger, the outputs
    were written and lost with the container, exit 0). Now the work line says what the folder is and
    what to bind, and such an output folder is refused as lost, whatever its size; a tmpfs bound
    from the host elsewhere, and runs outside Apptainer, are as before."""
    out, work = tmp_path / "out", tmp_path / "work"
    point = os.path.realpath(tempfile.gettempdir())  # the container's /tmp
    monkeypatch.setattr(pf, "mount_of", lambda folder: (point, "tmpfs"))
    monkeypatch.setattr(pf, "_free_mb", lambda folder: 64.0)
    session = (f"{point} in this Apptainer container is its own memory file system (apptainer run --containall or "
               "--contain make /tmp, /var/tmp and the home so, 64 MiB by default), gone with everything in it when "
               "the run ends: bind a folder of yours for the ")
    with pytest.raises(InputError) as lost:
        pf.check_writable(out, "output")
    assert str(lost.value) == (f"{out}: the output directory would be lost when the run ends; {session}output (mkdir "
                               "-p it on the host, then apptainer run -B /host/folder/of/yours:/out ... /out "
                               "participant)")
    assert not out.exists()
    with pytest.raises(InputError) as small:
        pf.check_writable(work, "work")
    assert str(small.value) == (f"{work}: the work directory has 64 MiB free; geomorph-bids needs at least 256 MiB "
                                f"there; {session}work (mkdir -p it on the host, then apptainer run "
                                "-B /host/folder/of/yours:/work ... -w /work)")
    monkeypatch.setattr(pf, "mount_of", lambda folder: ("/shm", "tmpfs"))  # the host's /dev/shm bound as /shm
    assert pf.check_writable(out, "output")
    _outside(monkeypatch)
    monkeypatch.setattr(pf, "mount_of", lambda folder: (point, "tmpfs"))
    with pytest.raises(InputError) as native:
        pf.check_writable(work, "work")
    assert str(native.value).endswith("needs at least 256 MiB there (disk full?)")


def test_a_folder_of_someone_elses_under_apptainer_is_named_as_outside(tmp_path, monkeypatch, apptainer):
    """Apptainer runs as the user who started it: `/out belongs to uid 65534 ...: run the container as
    the folder's owner (docker run -u "$(id -u):$(id -g)" ...)` was the Docker image's advice, which
    means nothing there. Now the line says whose the folder is and who this run is, as outside a
    container, with why a folder shows as nobody's in a user namespace. A folder not bound (`--no-home
    -B /data ... -w /scratch/hpc/w`) was told `docker run -v ..., apptainer run -B ...; or give the
    container a writable /tmp (docker run --read-only --tmpfs /tmp)`: now Apptainer's bind alone."""
    out = tmp_path / "out"
    out.mkdir()
    owner = out.stat().st_uid
    real = os.access
    monkeypatch.setattr(pf.os, "access", lambda path, mode: False if Path(path) == out else real(path, mode))
    monkeypatch.setattr(container, "OVERFLOW_UID", owner)
    monkeypatch.setattr(pf.os, "geteuid", lambda: owner + 4242)
    with pytest.raises(InputError) as sif:
        pf.check_writable(out, "output")
    text = str(sif.value)
    assert text.startswith(f"{out}: the output directory is not writable (permission denied); {out} belongs to ")
    assert (f"(uid {owner} is how a user namespace, Apptainer without setuid or rootless podman, shows a file of "
            "root or of any user it does not map), and this run is " in text)
    assert "docker run -u" not in text
    # a folder not bound (`--no-home`, `-w /scratch/...` without `-B /scratch`): Apptainer's bind alone
    work = tmp_path / "scratch" / "w"
    assert pf._container_hint("work", work, errno.EROFS) == (
        f"; in this container only folders bound writable can be written: bind a host folder you own there, not :ro "
        f"(apptainer run -B /path/on/host:{work})")


def test_the_container_recorded_in_dataset_description_is_apptainer_for_a_sandbox_folder(tmp_path, monkeypatch):
    """`apptainer build --sandbox` makes a folder, not a `.sif`: inside it `GEOMORPH_CONTAINER` is that folder's
    path (singularity.def: `$APPTAINER_CONTAINER`), which `dataset_description.json` recorded as
    `{"Type": "docker", "Tag": "/home/u/images/geomorph-bids"}` (it looked for `.sif`), with the user's folder in
    it. Apptainer's own variable, or a folder, now says singularity; a local image is named by its file or folder
    name alone (two installs record the same); a URI is kept as it is."""
    sandbox = tmp_path / "images" / "geomorph-bids"
    sandbox.mkdir(parents=True)
    record = container.container_record
    assert record({"GEOMORPH_CONTAINER": str(sandbox), "APPTAINER_CONTAINER": str(sandbox)}) == {
        "Type": "singularity", "Tag": "geomorph-bids"}
    assert record({"GEOMORPH_CONTAINER": f"{sandbox}/"}) == {"Type": "singularity", "Tag": "geomorph-bids"}
    assert record({"GEOMORPH_CONTAINER": "/home/u/geomorph-bids.sif", "SINGULARITY_CONTAINER": "/x"}) == {
        "Type": "singularity", "Tag": "geomorph-bids.sif"}
    assert record({"GEOMORPH_CONTAINER": "/home/u/geomorph-bids.sif"}) == {
        "Type": "singularity", "Tag": "geomorph-bids.sif"}
    assert record({"GEOMORPH_CONTAINER": "oras://ghcr.io/u/geomorph-bids:0.1"}) == {
        "Type": "singularity", "Tag": "oras://ghcr.io/u/geomorph-bids:0.1"}
    assert record({"GEOMORPH_CONTAINER": "docker://geomorph-bids:0.1"}) == {
        "Type": "docker", "Tag": "docker://geomorph-bids:0.1"}
    assert record({}) is None and record({"GEOMORPH_CONTAINER": ""}) is None
    monkeypatch.setenv("GEOMORPH_CONTAINER", str(sandbox))
    monkeypatch.setenv("APPTAINER_CONTAINER", str(sandbox))
    desc = json.loads(descriptions.write_dataset_description(tmp_path, tmp_path, None).read_text())
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "singularity", "Tag": "geomorph-bids"}
