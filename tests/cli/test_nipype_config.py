"""Nipype's settings for a run of geomorph-bids."""

from __future__ import annotations

from geomorph_bids.cli.nipype_config import configure_nipype
from geomorph_bids.cli.parser import build_parser


def test_verbose_gives_the_levels_its_help_says(tmp_path):
    """Twentieth session: ``-v`` ("more log messages (-vv: debug)") set Nipype's level to WARNING,
    which a run that works never uses: nothing more was printed; ``-vv`` gave INFO and ``-vvv`` DEBUG.
    Now ``-v`` is Nipype's messages (INFO), ``-vv`` and more its debug ones."""
    from nipype import config

    try:
        for count, level in ((0, "CRITICAL"), (1, "INFO"), (2, "DEBUG"), (3, "DEBUG")):
            configure_nipype(tmp_path, count, False)
            assert [config.get("logging", f"{kind}_level") for kind in ("workflow", "interface", "utils")] == \
                [level] * 3, count
    finally:
        configure_nipype(tmp_path, 0, False)
    help_text = " ".join(build_parser().format_help().split())
    assert "-v, --verbose Nipype's log messages on stdout (-v: each node run, -vv: debug; batch mode" in help_text
