"""cli/descriptions.py: the files that describe the derivative dataset (README.md, .bidsignore)."""

from __future__ import annotations

from geomorph_bids import derivatives as d
from geomorph_bids.cli import descriptions


def test_bidsignore_lists_our_names_keeps_a_users_lines_and_is_not_rewritten_when_complete(tmp_path):
    """The BIDS validator's NOT_INCLUDED for every output (round eleven): the derivative's
    .bidsignore lists our names; a user's own lines stay; a complete file is left untouched."""
    path = descriptions.write_bidsignore(tmp_path)
    assert path == tmp_path / ".bidsignore"
    lines = path.read_text().splitlines()
    assert lines == list(d.bidsignore_lines())
    assert "sub-*_hemi-*_sphere.surf.gii" in lines and "/sub-*.html" in lines and "/logs" in lines
    path.write_text("my_notes.txt\n" + "\n".join(lines[:3]) + "\n")
    descriptions.write_bidsignore(tmp_path)
    again = path.read_text().splitlines()
    assert again[0] == "my_notes.txt" and set(again[1:]) == set(lines) and len(again) == len(lines) + 1
    stat = path.stat()
    descriptions.write_bidsignore(tmp_path)
    assert path.stat().st_ino == stat.st_ino and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert [p.name for p in tmp_path.iterdir()] == [".bidsignore"]  # no temporary file left


def test_readme_is_written_once_and_a_users_readme_is_kept(tmp_path):
    """The validator's README_FILE_MISSING (round eleven): README.md at the derivative root,
    unless a README of any BIDS form is already there."""
    first = descriptions.write_readme(tmp_path)
    assert first == tmp_path / "README.md" and first.read_text().startswith("# geomorph-bids derivatives")
    assert ".bidsignore" in first.read_text() and "desc-geomorph_sphere.surf.gii" in first.read_text()
    first.write_text("edited\n")
    descriptions.write_readme(tmp_path)
    assert first.read_text() == "edited\n"
    other = tmp_path / "theirs"
    other.mkdir()
    (other / "README").write_text("a user's\n")
    assert descriptions.write_readme(other) == other / "README"
    assert sorted(p.name for p in other.iterdir()) == ["README"]


def test_a_readme_or_bidsignore_that_cannot_be_written_is_a_warning_not_the_end_of_the_run(tmp_path):
    """Written since round eleven for the BIDS validator, neither file is needed by a registration:
    a folder of that name (or any OSError) ended the whole run (``error: Is a directory``); now one
    warning line each, and the run goes on."""
    from geomorph_bids.cli.descriptions import write_bids_extras

    (tmp_path / ".bidsignore").mkdir()
    (tmp_path / "README.md").mkdir()
    lines = write_bids_extras(tmp_path)
    assert len(lines) == 2 and all("was not written" in line for line in lines)
    assert "README.md" in lines[0] and ".bidsignore" in lines[1] and str(tmp_path / ".bidsignore") in lines[1]


def _config(template: str, kind: str):
    from pathlib import Path

    from geomorph_bids.engine.model_choice import optimiser, rigid
    from geomorph_bids.io.template_ref import TemplateRef
    from geomorph_bids.workflows.config import RunConfig

    model = rigid() if kind == "rigid" else optimiser(template)
    return RunConfig(Path("/b"), Path("/o"), Path("/w"), template=TemplateRef.bundled(template), model=model,
                     features=model.channels, density="32k" if template == "fsLR" else "41k")


def test_the_methods_text_of_runs_with_other_settings_are_kept_one_after_the_other(tmp_path):
    """Round nine's leftover: a second run into the same folder with other settings (another
    template, --model rigid) rewrote logs/CITATION.md, so the methods text no longer described
    the first run's outputs. Now each distinct paragraph is kept once, before one reference list."""
    (tmp_path / "logs").mkdir()
    path = descriptions.write_citation(tmp_path, _config("fsLR", "optimise"))
    first = path.read_text()
    assert first.count("### References") == 1 and "onto the fsLR template" in first
    descriptions.write_citation(tmp_path, _config("fsLR", "optimise"))
    assert path.read_text() == first  # the same settings: unchanged
    descriptions.write_citation(tmp_path, _config("fsaverage", "rigid"))
    both = path.read_text()
    assert both.count("### References") == 1 and both.count("Cortical surfaces were registered") == 2
    assert both.index("fsLR template") < both.index(descriptions.LATER_RUN) < both.index("fsaverage template")
    assert "no non-rigid stage was run" in both and "non-rigid GeoMorph warp" in both
    descriptions.write_citation(tmp_path, _config("fsLR", "optimise"))  # the first settings again
    assert path.read_text() == both


def test_the_methods_text_says_where_the_rotation_comes_from(tmp_path):
    """fix-as: every fMRIPrep/sMRIPrep subject (their space-fsaverage desc-reg sphere) and every
    FreeSurfer subject with a sphere.reg is rotated by FreeSurfer's own registration (``rotation_method``
    ``correspondence``), yet the methods text users paste into papers said the rotation was a rigid
    pre-alignment of the maps, always. It now names both and where each hemisphere's is recorded."""
    (tmp_path / "logs").mkdir()
    text = " ".join(descriptions.write_citation(tmp_path, _config("fsLR", "optimise")).read_text().split())
    assert ("the native sphere was first rotated onto the fsLR template: with the rotation of FreeSurfer's own "
            "registration to fsaverage where the inputs had it (recon-all's sphere.reg, or the space-fsaverage "
            "desc-reg sphere of sMRIPrep and fMRIPrep) and the sulc maps fitted the template about as well with "
            "it, else by a rigid pre-alignment of its sulc maps (maximum correlation with the template, refined on "
            "the sphere); each hemisphere's metrics file says which (rotation_method); then a non-rigid GeoMorph "
            "warp") in text


def test_runs_with_other_settings_describing_the_folder_at_once_keep_both_paragraphs(tmp_path, monkeypatch):
    """A SLURM array whose tasks into one folder differ in settings (half of them --template
    fsaverage) starts them at the same moment: each read logs/CITATION.md (none yet), then wrote
    its own paragraph, and the last rename won: the other settings' methods text was lost. Now the
    read and the write are one step under ``.geomorph-locks/citation.lock``: both paragraphs kept."""
    import threading

    (tmp_path / "logs").mkdir()
    both_read = threading.Barrier(2)
    real_read = descriptions.read_text_bounded

    def read_then_meet(*args, **kwargs):
        text = real_read(*args, **kwargs)
        try:  # both readers before either writes (before the fix); under the lock the second never comes
            both_read.wait(timeout=0.3)
        except threading.BrokenBarrierError:
            pass
        return text

    monkeypatch.setattr(descriptions, "read_text_bounded", read_then_meet)
    threads = [threading.Thread(target=descriptions.write_citation, args=(tmp_path, _config(t, k)))
               for t, k in (("fsLR", "optimise"), ("fsaverage", "rigid"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = (tmp_path / "logs" / "CITATION.md").read_text()
    assert text.count("Cortical surfaces were registered") == 2 and text.count(descriptions.LATER_RUN) == 1
    assert "fsLR template" in text and "fsaverage template" in text and text.count("### References") == 1
    assert sorted(p.name for p in (tmp_path / ".geomorph-locks").iterdir()) == ["citation.lock"]


def test_the_template_maps_brainspace_provides_are_credited_and_kept_after_a_later_run(tmp_path):
    """Twenty-first session: a multimodal-fsLR run registers to brainspace's group curvature and
    T1w/T2w myelin, but logs/CITATION.md cited only the fsLR template (Glasser 2013): the methods
    text said nothing of where the myelin template came from. Now one sentence and the references;
    a later sulc-only run into the same folder keeps them."""
    import pytest
    from types import SimpleNamespace

    from geomorph_bids.io.template_ref import TemplateRef
    from geomorph_bids.resources import package_template_features

    if "myelin" not in package_template_features("fsLR"):
        pytest.skip("brainspace (the fsLR myelin template) is not installed")
    (tmp_path / "logs").mkdir()
    from pathlib import Path

    from geomorph_bids.engine.model_choice import ModelChoice
    from geomorph_bids.workflows.config import RunConfig

    def config(channels):
        return RunConfig(Path("/b"), Path("/o"), Path("/w"), template=TemplateRef.bundled("fsLR"),
                         model=ModelChoice("optimise", "default", channels), features=channels)

    (tmp_path / "sulc_only" / "logs").mkdir(parents=True)
    assert "BrainSpace" not in descriptions.write_citation(tmp_path / "sulc_only", config(("sulc",))).read_text()
    path = descriptions.write_citation(tmp_path, config(("sulc", "curv", "myelin")))
    first = path.read_text()
    assert "The template's curv and myelin maps were the fsLR 32k group averages distributed with BrainSpace" in first
    assert first.count("doi:10.1038/s42003-020-0794-7") == 1 and first.count("Glasser MF, et al.") == 1
    descriptions.write_citation(tmp_path, config(("sulc",)))  # a later sulc-only run: the references stay
    both = path.read_text()
    assert both.count("Cortical surfaces were registered") == 2 and both.count("### References") == 1
    assert both.count("doi:10.1038/s42003-020-0794-7") == 1 and both.count("Glasser MF, et al.") == 1
    assert both.count("doi:10.1523/JNEUROSCI.2180-11.2011") == 1


def test_a_users_bidsignore_lines_in_any_encoding_are_kept_byte_for_byte(tmp_path):
    """Twenty-second session: a user's ``.bidsignore`` line naming a folder in Latin-1 (``caf\\xe9/``, or
    a UTF-8 name read in a locale that is not UTF-8) was read with errors replaced and, when one of our
    lines was missing, written back as ``caf\\ufffd/`` (EF BF BD): the user's rule no longer matched its
    folder. The lines are kept as their bytes."""
    path = tmp_path / ".bidsignore"
    path.write_bytes(b"caf\xe9/\nd\xc3\xa4t\xc3\xa4/\n")
    descriptions.write_bidsignore(tmp_path)
    data = path.read_bytes()
    assert data.startswith(b"caf\xe9/\nd\xc3\xa4t\xc3\xa4/\n")
    assert data.decode("latin-1").splitlines()[2:] == list(d.bidsignore_lines())


def test_dataset_links_of_a_derivative_inside_the_dataset_are_relative_and_still_read(tmp_path):
    """``DatasetLinks`` held absolute paths (``/home/u/study/bids``, ``.../derivatives/freesurfer``): a derivative
    in ``bids/derivatives/geomorph`` named the user's folders, and pointed at the old place once the dataset was
    moved or copied (BIDS: a link without a scheme is a path relative to the derivative's root). Links into the
    dataset of an output folder inside it are now relative; an output elsewhere keeps absolute ones. What reads
    them (the group page's study name, the refusal of our own outputs as bids_dir) resolves them from the output
    folder."""
    import json

    from geomorph_bids.cli.paths import geomorph_bids_output
    from geomorph_bids.reports.group import study_name

    bids = tmp_path / "study" / "bids"
    (bids / "derivatives" / "freesurfer").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "Ageing", "BIDSVersion": "1.9.0"}))
    out = bids / "derivatives" / "geomorph"
    out.mkdir()
    elsewhere = tmp_path / "smriprep"
    desc = json.loads(descriptions.write_dataset_description(
        out, bids, {"freesurfer": bids / "derivatives" / "freesurfer", "smriprep": elsewhere}).read_text())
    assert desc["DatasetLinks"] == {"raw": "../..", "freesurfer": "../freesurfer", "smriprep": str(elsewhere)}
    assert study_name(out) == "Ageing" and geomorph_bids_output(out) == str(bids)
    outside = tmp_path / "out"
    outside.mkdir()
    desc = json.loads(descriptions.write_dataset_description(outside, bids, None).read_text())
    assert desc["DatasetLinks"] == {"raw": str(bids)}
    assert study_name(outside) == "Ageing" and geomorph_bids_output(outside) == str(bids)
