"""numpy's and scipy's BLAS thread limits (engine.blas), checked through threadpoolctl's own report."""

from __future__ import annotations

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from geomorph_bids.engine.blas import blas_threads  # noqa: E402


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


def test_the_block_holds_blas_to_its_threads_and_gives_back_the_setting():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert set(_blas_threads()) <= {2}  # a one-CPU machine's OpenBLAS may hold one thread only
        before = _blas_threads()
        with blas_threads(1):
            assert _blas_threads() and set(_blas_threads()) == {1}
        assert _blas_threads() == before


def test_a_product_in_the_block_is_the_product():
    a = np.random.default_rng(0).standard_normal((300, 3))
    r = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))[0]
    with blas_threads(1):
        inside = a @ r.T
    np.testing.assert_allclose(inside, np.einsum("pj,ij->pi", a, r), rtol=0, atol=1e-14)


def test_blocks_that_overlap_in_threads_give_back_the_callers_setting():
    """``register()`` called from a thread pool: two blocks overlap (A starts, B starts, A ends, B
    ends). Each saved and restored its own limit, so B restored the one A had set: the caller's
    process kept one BLAS thread for good. The last block to end now gives the caller's back."""
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        first, second = blas_threads(1), blas_threads(1)
        first.__enter__()
        second.__enter__()
        assert set(_blas_threads()) == {1}
        first.__exit__(None, None, None)
        assert set(_blas_threads()) == {1}  # still held for the block running on
        second.__exit__(None, None, None)
        assert _blas_threads() == before
