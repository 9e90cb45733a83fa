"""The settings decided once at the command line (:mod:`geomorph_bids.cli.settings`)."""

from __future__ import annotations

import argparse
import os

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
