"""The settings decided once at the command line (:mod:`geomorph_bids.cli.settings`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import pytest

from geomorph_bids.cli.settings import absolute_paths


def _args(**paths) -> argparse.Namespace:
    names = ("bids_dir", "output_dir", "work_dir", "fs_subjects_dir", "bids_filter_file", "use_plugin")
    return argparse.Namespace(**{n: paths.get(n) for n in names}, derivatives=None)


def test_path_arguments_are_absolute_and_tidy_where_that_names_the_same_place(tmp_path, monkeypatch):
    """``OUT=fs_subjects/../out_fs_dot`` was printed and recorded as ``/w/fs_subjects/../out_fs_dot``;
    it is now ``/w/out_fs_dot``. A ``..`` after a symbolic link stays: the system follows the link
    first, so the tidy path would name another folder."""
    (tmp_path / "fs_subjects").mkdir()
    (tmp_path / "deep" / "inner").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "inner")
    monkeypatch.chdir(tmp_path)
    args = _args(bids_dir="./fs_subjects/.", output_dir="fs_subjects/../out_fs_dot", work_dir="link/../w",
                 fs_subjects_dir="missing/../fs")
    absolute_paths(args)
    assert args.bids_dir == tmp_path / "fs_subjects"
    assert args.output_dir == tmp_path / "out_fs_dot"
    assert str(args.work_dir) == os.path.join(str(tmp_path), "link", "..", "w")  # /deep/w, not /w
    assert args.fs_subjects_dir == tmp_path / "fs"


def test_the_default_registration_without_the_templates_curv_says_it_uses_sulc_alone(tmp_path, tiny_fsaverage, capsys,
                                                                                   monkeypatch):
    """--template fsaverage registers with sulc + curv by default; from an fsaverage folder without
    lh.curv it used sulc alone without a word (the header, the summary and the report name no
    features). One note line says so; a complete folder, or --model rigid, says nothing."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import resolve_template_and_model

    for var in ("SUBJECTS_DIR", "FREESURFER_HOME", "TEMPLATEFLOW_HOME"):
        monkeypatch.delenv(var, raising=False)
    partial = tiny_fsaverage(tmp_path / "partial", maps=("sulc",))
    full = tiny_fsaverage(tmp_path / "full")

    def resolve(folder, *extra):
        args = build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant", "--template", "fsaverage",
                                          "--template-dir", str(folder), *extra])
        _, model = resolve_template_and_model(args)
        return model.channels, [line for line in capsys.readouterr().err.splitlines() if "note:" in line]

    channels, notes = resolve(partial)
    assert channels == ("sulc",)
    assert notes == [f"geomorph-bids: note: the default registration uses sulc alone: the template's maps "
                     f"(folder fsaverage {partial}) have no curv, which it adds where they have it "
                     "(the source repository's docs/templates.md)"]
    assert resolve(full) == (("sulc", "curv"), [])
    assert resolve(partial, "--model", "rigid")[1] == []


def test_the_image_says_once_when_auto_falls_back_to_the_cpu(tmp_path, capsys, monkeypatch):
    """In the CUDA image given no GPU (``docker run`` without ``--gpus``, ``apptainer run`` without
    ``--nv``, a host without one), ``--device auto`` went on the CPU with only ``device cpu`` in the
    start line to tell. One note line says so now, in the image only (``$GEOMORPH_CONTAINER``), with a
    CUDA build of torch, for a registration that uses torch; ``--device cpu``, ``--model rigid``, a CPU
    build or a native install say nothing."""
    import torch

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import resolve_settings

    for var in ("SUBJECTS_DIR", "FREESURFER_HOME", "TEMPLATEFLOW_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")

    def notes(*extra):
        args = build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant", "--hemi", "L", *extra])
        config = resolve_settings(args, tmp_path / "out", tmp_path / "work")
        return config.device, [line for line in capsys.readouterr().err.splitlines() if "note:" in line]

    monkeypatch.setenv("GEOMORPH_CONTAINER", "docker://geomorph-bids:test")
    assert notes() == ("cpu", [
        f"geomorph-bids: note: no CUDA GPU is visible in this container (torch {torch.__version__} is a CUDA "
        "build): registering on the CPU; give it the host's GPU with docker run --gpus all or apptainer run --nv "
        "(--device cpu chooses the CPU without this note)"])
    assert notes("--device", "cpu") == ("cpu", [])
    assert notes("--model", "rigid") == ("cpu", [])
    monkeypatch.setattr(torch.version, "cuda", None)
    assert notes() == ("cpu", [])
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("GEOMORPH_CONTAINER")
    assert notes() == ("cpu", [])


def test_the_commands_a_message_suggests_quote_paths_that_a_shell_would_split(tmp_path, capsys):
    """The note for a FreeSurfer SUBJECTS_DIR given as bids_dir, and the refusals that suggest a
    command (one subject's folder, a pipeline's output folder, geomorph-bids' own outputs), printed
    the paths bare: pasted into a shell, ``/data/my study/freesurfer`` split in two and a ``$`` or
    ``#`` in a name was expanded or began a comment. Now a path that needs it is quoted, as the
    ``ln -s`` and ``datalad get`` hints already were; a plain path is printed as it is."""
    import pytest

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import validate_arguments
    from geomorph_bids.errors import InputError

    from .test_hostile import fs_subject

    subjects = tmp_path / "my study $x #1" / "freesurfer"
    fs_subject(subjects / "sub-01")
    quoted = f"'{subjects}'"
    args = build_parser().parse_args([str(subjects), str(tmp_path / "out"), "participant"])
    validate_arguments(args)
    assert capsys.readouterr().err.strip() == (
        f"geomorph-bids: note: {subjects} is a FreeSurfer SUBJECTS_DIR, not a BIDS dataset: read as {quoted} "
        f"--skip-bids-validation --fs-subjects-dir {quoted}")
    args = build_parser().parse_args([str(subjects / "sub-01"), str(tmp_path / "out"), "participant",
                                      "--participant-label", "02"])
    with pytest.raises(InputError) as one_subject:
        validate_arguments(args)
    assert str(one_subject.value).endswith(
        f"or run on this subject alone: geomorph-bids {quoted} OUTPUT_DIR participant --skip-bids-validation "
        f"--fs-subjects-dir {quoted} --participant-label 01")
    plain = tmp_path / "plain"
    fs_subject(plain / "sub-01")
    args = build_parser().parse_args([str(plain), str(tmp_path / "out"), "participant"])
    validate_arguments(args)
    assert f"--fs-subjects-dir {plain}" in capsys.readouterr().err


def test_a_dataset_named_in_another_unicode_form_is_named_as_it_is_on_disk(tmp_path):
    """``geomorph-bids /data/café ...`` typed (NFC) for a dataset copied from macOS (NFD): ``bids_dir
    does not exist or is not a folder`` of a folder ``ls`` lists under the same letters. The folder on
    disk is now named, with what to do."""
    import unicodedata

    import pytest

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import validate_arguments
    from geomorph_bids.errors import InputError

    on_disk = tmp_path / unicodedata.normalize("NFD", "café")
    on_disk.mkdir()
    typed = tmp_path / unicodedata.normalize("NFC", "café")
    with pytest.raises(InputError) as exc:
        validate_arguments(build_parser().parse_args([str(typed), str(tmp_path / "out"), "participant"]))
    assert str(exc.value).startswith(f"{typed}: bids_dir does not exist or is not a folder; {on_disk} is there, its "
                                     "letters in another Unicode form (a name copied from macOS?)")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    with pytest.raises(InputError) as fs:
        validate_arguments(build_parser().parse_args([str(tmp_path / "ds"), str(tmp_path / "out"), "participant",
                                                      "--fs-subjects-dir", str(typed)]))
    assert str(fs.value).startswith(f"{typed}: --fs-subjects-dir: no such folder (the FreeSurfer SUBJECTS_DIR holding "
                                    f"the subjects); {on_disk} is there, its letters in another Unicode form")


def test_batch_mode_shares_the_memory_between_its_workers(monkeypatch, capsys):
    """Twenty-first session: batch mode has no scheduler holding --mem-gb, and each of its --nprocs
    workers holds a chunk of its own (measured at 164k: 0.82 GB for one worker registering one
    hemisphere at a time, 1.05 GB with a batch of 4), but --batch-size was capped by the whole memory
    as if one process held it, and --nprocs not at all: --mem-gb 2 --nprocs 16 --batch-size 64 kept
    16 workers and took a batch of 16 (each worker about 1.5 GB: 24 GB). Now the workers fit the
    memory (0.5 GB each) and the batch what each worker's share holds."""
    import argparse

    from geomorph_bids.cli import settings

    monkeypatch.setattr(settings, "usable_cpus", lambda: 16)
    monkeypatch.setattr(settings, "total_memory_gb", lambda: 64.0)
    args = argparse.Namespace(nprocs=16, omp_nthreads=None, mem_gb=2.0, batch_size=64)
    notes = settings.validate_resources(args)
    assert (args.nprocs, args.batch_size) == (4, 4)
    assert notes == ["--nprocs 16 batch-mode workers need about 8 GB (0.5 GB each), more than the 2.0 GB available; "
                     "using 4",
                     "--batch-size 64 needs about 3.8 GB in each worker; using 4 (half of the 0.5 GB available to "
                     "each of --nprocs 4 worker(s))"]
    assert capsys.readouterr().err.splitlines() == [f"geomorph-bids: warning: {n}" for n in notes]
    workflow = argparse.Namespace(nprocs=16, omp_nthreads=None, mem_gb=2.0, batch_size=None)
    assert settings.validate_resources(workflow) == [] and workflow.nprocs == 16  # Nipype's scheduler holds it
    fits = argparse.Namespace(nprocs=2, omp_nthreads=None, mem_gb=None, batch_size=16)
    assert settings.validate_resources(fits) == [] and (fits.nprocs, fits.batch_size) == (2, 16)


def test_a_mem_gb_below_what_one_registration_needs_is_named(monkeypatch, capsys):
    """Twenty-first session: ``--mem-gb 0.2`` (less than the interpreter and torch take) was taken in
    silence: Nipype clips each step's reservation to it and runs them one at a time, so the run went
    on as if the memory were there. Now one warning line says what a registration needs."""
    import argparse

    from geomorph_bids.cli import settings

    monkeypatch.setattr(settings, "total_memory_gb", lambda: 64.0)
    args = argparse.Namespace(nprocs=1, omp_nthreads=None, mem_gb=0.2, batch_size=None)
    assert settings.validate_resources(args) == [
        "--mem-gb 0.2 is less than one registration needs (about 0.45 GB at 10,242 vertices, 0.66 GB at 163,842): "
        "registrations run one at a time, and may run out of memory where the machine or job has no more"]
    assert args.mem_gb == 0.2 and capsys.readouterr().err.count("warning") == 1
    enough = argparse.Namespace(nprocs=1, omp_nthreads=None, mem_gb=0.5, batch_size=None)
    assert settings.validate_resources(enough) == []


def test_a_fastsurfer_subjects_dir_without_spheres_is_read_as_a_subjects_dir(tmp_path, capsys):
    """A SUBJECTS_DIR of FastSurfer --no_surfreg runs (surf/lh.white, no lh.sphere) given as bids_dir was
    refused as 'is not a BIDS dataset: no dataset_description.json'; it is now read as a SUBJECTS_DIR, whose
    hemispheres then fail naming FastSurfer's recon-surfreg.sh (tests/io/test_discover.py)."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import validate_arguments

    subjects = tmp_path / "fastsurfer"
    for h in ("lh", "rh"):
        (subjects / "subj1" / "surf").mkdir(parents=True, exist_ok=True)
        (subjects / "subj1" / "surf" / f"{h}.white").write_bytes(b"")
    args = build_parser().parse_args([str(subjects), str(tmp_path / "out"), "participant"])
    validate_arguments(args)
    assert capsys.readouterr().err.strip() == (
        f"geomorph-bids: note: {subjects} is a FreeSurfer SUBJECTS_DIR, not a BIDS dataset: read as {subjects} "
        f"--skip-bids-validation --fs-subjects-dir {subjects}")
    assert args.fs_subjects_dir == subjects and args.skip_bids_validation


def test_cifti_output_with_fsaverage_is_refused_before_any_template_line(tmp_path, tiny_fsaverage, capsys,
                                                                          monkeypatch):
    """Twenty-second session (fix-av): ``--template fsaverage --cifti-output`` printed the template's
    warnings (an fsaverage folder without a hemisphere's maps) and notes (sulc alone) and then refused
    the combination: the refusal is now the only line, as for any other refused option."""
    import pytest

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import resolve_settings
    from geomorph_bids.errors import InputError

    for var in ("FREESURFER_HOME", "TEMPLATEFLOW_HOME"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "subjects" / "fsaverage" / "surf").mkdir(parents=True)  # an fsaverage with no maps: a warning
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "subjects"))
    partial = tiny_fsaverage(tmp_path / "partial", maps=("sulc",))  # no curv: the "sulc alone" note

    def refusal(*extra) -> tuple[str, str]:
        args = build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant", *extra])
        with pytest.raises(InputError) as e:
            resolve_settings(args, tmp_path / "out", tmp_path / "work")
        return str(e.value), capsys.readouterr().err

    why, err = refusal("--template", "fsaverage", "--cifti-output")
    assert why == ("--cifti-output needs an fsLR template at density 32k or 59k (the HCP atlas ROI leaves out the "
                   "medial wall); got --template fsaverage at 41k") and err == ""
    why, err = refusal("--template", "fsaverage", "--template-dir", str(partial), "--cifti-output")
    assert why.startswith("--cifti-output needs an fsLR template") and err == ""
    why, err = refusal("--cifti-output", "--hemi", "L")
    assert why == "--cifti-output needs both hemispheres (--hemi L R)" and err == ""


def test_the_memory_fit_quotes_the_largest_high_resolution_sphere_found(monkeypatch, capsys):
    """Twenty-fourth session: the --mem-gb warning, the ulimit -v check and batch mode's lowering of
    --nprocs were decided before the inputs were found and quoted 10,242-163,842-vertex figures: with
    a 655,362-vertex subject (1.15 GB, 1.64 GB of address space), --mem-gb 0.9 and ulimit -v 1.54 GB
    were taken in silence and two batch workers kept at 0.5 GB each. Now the fit quotes the largest
    sphere found; at 163,842 vertices or fewer its lines are those of before."""
    import argparse

    from geomorph_bids.cli import settings

    monkeypatch.setattr(settings, "total_memory_gb", lambda: 64.0)
    monkeypatch.setattr(settings, "address_space_limit_gb", lambda: 1.54)
    hires = settings.SphereSizes(655362, "sub-01 hemi-L", 2)
    args = argparse.Namespace(nprocs=2, omp_nthreads=None, mem_gb=0.9, batch_size=4)
    notes = settings.fit_memory_to_spheres(args, hires)
    assert notes == [
        "--mem-gb 0.9 is less than one registration of sub-01 hemi-L's 655,362-vertex sphere (the largest found) "
        "needs (about 1.15 GB): registrations run one at a time, and may run out of memory where the machine or job "
        "has no more",
        "--nprocs 2 batch-mode workers need about 1.98 GB (0.5 GB each, 0.99 GB for one registering sub-01 hemi-L's "
        "655,362-vertex sphere, the largest of 2 of more than 163,842 vertices), more than the 0.9 GB available; "
        "using 1",
        "the address-space limit (ulimit -v) is 1.54 GB; a registration of sub-01 hemi-L's 655,362-vertex sphere "
        "(the largest found) needs about 1.64 GB of it: it will run out of memory; raise it (ulimit -v unlimited, "
        "or a cluster's virtual-memory limit)"]
    assert (args.nprocs, args.batch_size) == (1, 4)
    assert capsys.readouterr().err.splitlines() == [f"geomorph-bids: warning: {n}" for n in notes]
    # one high-resolution hemisphere among many: only one worker at a time holds it
    monkeypatch.setattr(settings, "address_space_limit_gb", lambda: 1.7)
    one = argparse.Namespace(nprocs=4, omp_nthreads=None, mem_gb=2.5, batch_size=4)
    assert settings.fit_memory_to_spheres(one, settings.SphereSizes(655362, "sub-07 hemi-R", 1)) == [] and \
        one.nprocs == 4
    # 163,842 vertices or fewer: the lines of before, and the address space is the up-front floor's alone
    for sizes in (settings.SphereSizes(163842, "sub-01 hemi-L", 0), settings.SphereSizes()):
        same = argparse.Namespace(nprocs=16, omp_nthreads=None, mem_gb=0.2, batch_size=64)
        assert settings.fit_memory_to_spheres(same, sizes) == [
            "--mem-gb 0.2 is less than one registration needs (about 0.45 GB at 10,242 vertices, 0.66 GB at "
            "163,842): registrations run one at a time, and may run out of memory where the machine or job has no "
            "more",
            "--nprocs 16 batch-mode workers need about 8 GB (0.5 GB each), more than the 0.2 GB available; using 1",
            "--batch-size 64 needs about 3.8 GB in each worker; using 1 (half of the 0.2 GB available to each of "
            "--nprocs 1 worker(s))"]
    capsys.readouterr()
    roomy = argparse.Namespace(nprocs=2, omp_nthreads=None, mem_gb=None, batch_size=4)
    assert settings.fit_memory_to_spheres(roomy, hires) == [] and roomy.nprocs == 2


def test_the_participant_level_fits_the_memory_to_the_spheres_it_found(dataset_factory, tmp_path, monkeypatch,
                                                                         capsys):
    """Twenty-fourth session: the participant level decides the memory fit after discovery, from the
    spheres' headers (here a 2,562-vertex dataset whose headers are made to say 655,362), and the
    batch run then has the --nprocs the fit left; the up-front checks print none of those lines."""
    import importlib

    from geomorph_bids.cli import bids, settings

    discover = importlib.import_module("geomorph_bids.io.discover")
    bids_dir = dataset_factory("freesurfer", subjects=("01",))
    monkeypatch.setattr(settings, "total_memory_gb", lambda: 64.0)
    monkeypatch.setattr(settings, "usable_cpus", lambda: 2)
    monkeypatch.setattr(settings, "address_space_limit_gb", lambda: None, raising=False)
    monkeypatch.setattr(discover, "surface_vertex_count", lambda path: 655362)
    seen = {}

    class Stop(Exception):
        pass

    def stop(jobs, config, *rest):
        seen["config"] = config
        raise Stop

    monkeypatch.setattr(bids, "_run_workflow", stop)
    with pytest.raises(Stop):
        bids.main([str(bids_dir), str(tmp_path / "out"), "participant", "--mem-gb", "0.9", "--nprocs", "2",
                   "--batch-size", "4", "--omp-nthreads", "2", "--work-dir", str(tmp_path / "work"),
                   "--reports", "deferred"])
    err = capsys.readouterr().err
    assert err.count("warning:") == 3, err
    assert ("geomorph-bids: warning: --mem-gb 0.9 is less than one registration of sub-01 hemi-L's 655,362-vertex "
            "sphere (the largest found) needs (about 1.15 GB)") in err
    assert "workers need about 1.98 GB (0.5 GB each, 0.99 GB for one registering sub-01 hemi-L's" in err
    assert "--omp-nthreads 2 is more than --nprocs 1; using 1" in err
    assert "10,242" not in err
    config = seen["config"]
    assert (config.nprocs, config.batch_size, config.omp_nthreads) == (1, 4, 1)


def test_a_sphere_header_that_lies_about_its_vertex_count_does_not_size_the_run(tmp_path, monkeypatch, capsys):
    """A FreeSurfer sphere of 10,242 vertices (368,729 bytes) whose header was damaged to say 2,147,483,647 (or
    2,000,000) vertices, or a GIFTI whose Dim0 says 3,000,000: the memory fit after discovery read the count as
    the largest sphere found and lowered every subject's batch workers (``--nprocs 4 batch-mode workers need about
    2142.68 GB ...; using 1``, and ``--mem-gb 8 is less than one registration of sub-01 hemi-L's
    2,147,483,647-vertex sphere ...``), though the reader then refuses the file as truncated. A header is now
    read only where it fits its file (and the largest mesh accepted); the others' spheres size the run."""
    import argparse

    import nibabel.freesurfer as nfs
    import numpy as np

    from geomorph_bids.cli import settings
    from geomorph_bids.io.discover import HemiInputs, surface_vertex_count
    from geomorph_bids.io.freesurfer import triangle_header
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(5)  # 10,242 vertices
    good = tmp_path / "rh.sphere"
    nfs.write_geometry(str(good), 100 * v, f)
    raw = good.read_bytes()
    _, _, offset = triangle_header(raw[:4096])
    for lie in (0, -5, 10242 + 30000, 2_000_000, 2 ** 31 - 1):  # the last stays
        bad = tmp_path / "lh.sphere"
        bad.write_bytes(raw[:offset - 8] + np.array([lie], ">i4").tobytes() + raw[offset - 4:])
        assert surface_vertex_count(bad) is None, lie
    assert surface_vertex_count(good) == 10242
    gii = tmp_path / "lh.sphere.surf.gii"
    gii.write_text('<GIFTI><DataArray Intent="NIFTI_INTENT_POINTSET" Dim0="3000000" Dim1="3">')
    assert surface_vertex_count(gii) is None
    monkeypatch.setattr(settings, "total_memory_gb", lambda: 64.0)
    monkeypatch.setattr(settings, "address_space_limit_gb", lambda: None)
    hemis = [HemiInputs("01", None, "L", "freesurfer", bad, None, {}, "freesurfer"),
             HemiInputs("02", None, "L", "freesurfer", gii, None, {}, "freesurfer"),
             HemiInputs("03", None, "R", "freesurfer", good, None, {}, "freesurfer")]
    sizes = settings.sphere_sizes(hemis)
    assert (sizes.vertices, sizes.where, sizes.high_resolution) == (10242, "sub-03 hemi-R", 0)
    args = argparse.Namespace(mem_gb=8.0, nprocs=4, batch_size=16, omp_nthreads=None)
    assert settings.fit_memory_to_spheres(args, sizes) == [] and (args.nprocs, args.batch_size) == (4, 16)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["bids", "register", "train"])


def test_each_command_refuses_cuda_that_torch_cannot_use_before_any_work(command, tmp_path, monkeypatch, capsys):
    """Twenty-fifth session: ``--device cuda`` on a driver too old for torch's CUDA build (NVML counts the
    GPU, torch cannot use it) went on, and each registration failed with torch's message (geomorph-bids:
    one FAILED line per hemisphere; geomorph-train: a traceback at its first step). Each command now
    stops with the same one line before reading anything, exit 1, nothing written."""
    import torch

    from geomorph_bids.cli import bids, register, train
    from geomorph_bids.engine import device as device_module

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(device_module, "_cuda_problem_in_a_child",
                        lambda python: "The NVIDIA driver on your system is too old (found version 11040)")
    example = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    anat = example / "derivatives" / "smriprep" / "sub-02" / "anat"
    out = tmp_path / "out"
    argv = {"bids": [str(example), str(out), "participant", "--participant-label", "02", "-w", str(tmp_path / "w")],
            "register": ["--sphere", str(anat / "sub-02_hemi-L_sphere.surf.gii"), "--feature",
                         f"sulc={anat / 'sub-02_hemi-L_sulc.shape.gii'}", "--out", str(out / "x.surf.gii")],
            "train": ["--out", str(out), "--synthetic", "2", "--data-level", "3", "--channels", "tiny", "--epochs", "1"]}
    main = {"bids": bids.main, "register": register.main, "train": train.main}[command]
    assert main(argv[command] + ["--device", "cuda"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"geomorph-{command}: error: device 'cuda' requested but torch {torch.__version__} (built for "
                       "CUDA 13.0) cannot use the 1 GPU(s) it sees (The NVIDIA driver on your system is too old (found "
                       "version 11040)); update the NVIDIA driver, or use device cpu")
    assert not out.exists() or not any(out.rglob("*.gii"))


@pytest.mark.parametrize("batch", [False, True])
def test_the_participant_level_reads_each_sphere_header_once(dataset_factory, tmp_path, monkeypatch, batch):
    """A sphere's header was read three times before it was read whole: for the memory fit (``sphere_sizes``),
    for the registration node's memory (the workflow) or the registration batch's share (batch mode), besides
    discovery's. The count is read once, at discovery (``HemiInputs.n_vertices``), and each use takes it."""
    import importlib

    from geomorph_bids.cli import bids

    freesurfer = importlib.import_module("geomorph_bids.io.freesurfer")
    bids_dir = dataset_factory("freesurfer", subjects=("01",))
    reads: list[str] = []
    real = freesurfer.read_fs_vertex_count

    def counted(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(freesurfer, "read_fs_vertex_count", counted)

    class Stop(Exception):
        pass

    def build(jobs, config, *rest):
        if config.batch_size:
            from geomorph_bids.batch.pipeline import chunk_tasks, plan_tasks

            chunk_tasks(plan_tasks(jobs, config)[0], config.batch_size)
        else:
            from geomorph_bids.workflows import init_geomorph_wf

            init_geomorph_wf(jobs, config)
        raise Stop

    monkeypatch.setattr(bids, "_run_workflow", build)
    with pytest.raises(Stop):
        bids.main([str(bids_dir), str(tmp_path / "out"), "participant", "--model", "rigid", "--work-dir",
                   str(tmp_path / "work"), *(["--batch-size", "2"] if batch else [])])
    assert sorted(r for r in reads if r.endswith(".sphere")) == ["lh.sphere", "rh.sphere"]


def test_device_cuda_in_the_image_given_no_gpu_names_the_flag_to_add(tmp_path, monkeypatch):
    """``--device cuda`` in the CUDA image run without ``docker run --gpus all`` / ``apptainer run --nv``
    said the generic 'CUDA is not available (no CUDA GPU is visible); use device cpu or auto', which a
    user reads as a broken host. In our image (``$GEOMORPH_CONTAINER``) the line names the flag now, Docker's
    or Apptainer's (``APPTAINER_CONTAINER``); outside it, with a CPU build of torch, or with
    ``CUDA_VISIBLE_DEVICES`` empty (the job hides the GPUs: its own words) the line is as before."""
    import pytest
    import torch

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import resolve_settings

    for var in ("SUBJECTS_DIR", "FREESURFER_HOME", "TEMPLATEFLOW_HOME", "APPTAINER_CONTAINER",
                "SINGULARITY_CONTAINER", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.version, "cuda", "13.0")

    def refusal() -> str:
        args = build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant", "--hemi", "L",
                                          "--device", "cuda"])
        with pytest.raises(ValueError) as e:
            resolve_settings(args, tmp_path / "out", tmp_path / "work")
        return str(e.value)

    plain = "device 'cuda' requested but CUDA is not available (no CUDA GPU is visible); use device cpu or auto"
    assert refusal() == plain
    monkeypatch.setenv("GEOMORPH_CONTAINER", "docker://geomorph-bids:test")
    assert refusal() == ("device 'cuda' requested but CUDA is not available (no CUDA GPU is visible); this container "
                         "was given no GPU: run it with docker run --gpus all (the NVIDIA Container Toolkit on the "
                         "host), or use device cpu or auto")
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/geomorph-bids.sif")
    assert refusal() == ("device 'cuda' requested but CUDA is not available (no CUDA GPU is visible); this container "
                         "was given no GPU: run it with apptainer run --nv, or use device cpu or auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert refusal().endswith("(no CUDA GPU is visible: CUDA_VISIBLE_DEVICES is set but empty); use device cpu or auto")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert refusal().endswith("(this torch build has no CUDA support); use device cpu or auto")
