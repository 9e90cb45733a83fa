"""io.quiet: other libraries' warnings silenced for a block, safely in a caller's threads."""

from __future__ import annotations

import threading
import warnings

from nibabel import freesurfer as nfs

from geomorph_bids.io.quiet import quiet_warnings
from geomorph_bids.io.surfaces import read_surface
from geomorph_bids.resources import example_dir

SPHERE = example_dir() / "sub-01" / "surf" / "lh.sphere"


def test_overlapping_reads_in_threads_leave_the_callers_filters_as_they_were(monkeypatch):
    """Two surfaces read at once in a caller's threads (``register()`` from a thread pool): each
    read silenced nibabel with its own ``catch_warnings``, B saved the filters A had set and
    restored them last, and the caller's process was left ignoring every warning for good
    (geomorph-bids' SphereWarning and FeatureWarning included). A waits (up to 2 s) for B's read to
    start inside its own; the blocks no longer overlap, and the filters are the caller's after."""
    a_inside, b_inside = threading.Event(), threading.Event()
    real = nfs.read_geometry

    def paced(*args, **kwargs):
        if threading.current_thread().name == "A":
            a_inside.set()
            b_inside.wait(2)
        else:
            b_inside.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(nfs, "read_geometry", paced)
    before = list(warnings.filters)
    a = threading.Thread(target=read_surface, args=(SPHERE,), name="A")
    b = threading.Thread(target=lambda: (a_inside.wait(10), read_surface(SPHERE)), name="B")
    a.start()
    b.start()
    a.join(30)
    b.join(30)
    assert warnings.filters == before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.warn("still heard", UserWarning)
    assert [str(w.message) for w in caught] == ["still heard"]


def test_the_block_ignores_what_it_names_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_warnings(UserWarning, message="Detected pickle"):
            warnings.warn("Detected pickle protocol 4", UserWarning)
            warnings.warn("something else", UserWarning)
            warnings.warn("Detected pickle protocol 4", DeprecationWarning)
        warnings.warn("Detected pickle protocol 4", UserWarning)
    assert [str(w.message) for w in caught] == ["something else", "Detected pickle protocol 4",
                                               "Detected pickle protocol 4"]
    with quiet_warnings(), quiet_warnings(UserWarning):  # re-entrant: a read inside a quieted read
        warnings.warn("silenced", UserWarning)
