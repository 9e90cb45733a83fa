"""errors.py: what a permission error says in a lab's shared folders (whose file or folder refused
it). The machine runs as root, whom no permission bit refuses: ``os.access`` and the effective
uid are played."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from geomorph_bids.errors import describe_os_error, owner_words, user_words


def test_a_permission_error_in_another_member_s_folder_says_whose_it_is(tmp_path, monkeypatch):
    """A colleague's participant in a shared output folder (``sub-01/anat`` theirs, 2755), rerun
    with other settings: ``FAILED sub-01 hemi-L: permission denied at .../metrics.json`` said
    nothing of whom to ask. Now the folder that refused it, its owner and mode, and this run's user;
    another user's file this user may not read (an input left 0600) likewise; this user's own
    folder as before."""
    me = os.geteuid()
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    anat.chmod(0o2755)
    metrics = anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    metrics.write_text("{}")
    private = tmp_path / "lh.sulc"
    private.write_bytes(b"")
    private.chmod(0o600)
    real = os.access
    refused = {anat: os.W_OK, private: os.R_OK}
    monkeypatch.setattr(os, "access", lambda p, mode: False if refused.get(Path(p), 0) & mode else real(p, mode))
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    writing = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(metrics))
    assert describe_os_error(writing) == (f"permission denied at {metrics} ({anat} belongs to {owner_words(anat)}, "
                                          "and this run is uid 4242)")
    assert owner_words(anat).endswith(", mode 2755") and owner_words(anat).startswith(user_words(me))
    reading = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(private))
    assert describe_os_error(reading) == (f"permission denied at {private} ({private} belongs to "
                                          f"{owner_words(private)}, and this run is uid 4242)")
    monkeypatch.setattr(os, "geteuid", lambda: me)
    assert describe_os_error(writing) == f"permission denied at {metrics}"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(metrics))  # other errors: as before
    assert describe_os_error(full) == f"no space left on device (disk full) writing {metrics}"
