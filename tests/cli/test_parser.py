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


@pytest.mark.parametrize("option, value", [("--build-template", "mytpl"), ("--nprocs", "two"), ("--batch-size", "1.5")])
def test_a_word_where_a_number_goes_says_so_not_the_parser_function(option, value, capsys):
    """argparse named the type function: "invalid _positive_int value: 'mytpl'"."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bids", "out", "group", option, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"must be a whole number, got '{value}'" in err and "_positive_int" not in err
