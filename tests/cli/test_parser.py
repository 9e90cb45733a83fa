"""geomorph-bids' argument types: what users type is read as they mean it."""

from __future__ import annotations

import argparse

import pytest

from geomorph_bids.cli.parser import build_parser, hemisphere


def test_hemisphere_spellings_on_the_command_line():
    assert [hemisphere(h) for h in ("l", "lh", "Left", "R", "rh")] == ["L", "L", "L", "R", "R"]
    with pytest.raises(argparse.ArgumentTypeError, match="invalid hemisphere 'x'"):
        hemisphere("x")
    args = build_parser().parse_args(["bids", "out", "participant", "--hemi", "lh", "r"])
    assert args.hemi == ["L", "R"]
