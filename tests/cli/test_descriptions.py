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
