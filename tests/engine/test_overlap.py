"""engine.overlap: a side task in a worker thread, or in the caller's when asked for; row-wise work
shared between the caller and the worker (split_rows)."""

from __future__ import annotations

import contextlib
import threading
from functools import partial

import numpy as np
import pytest

from geomorph_bids.engine import overlap
from geomorph_bids.engine.overlap import side_worker, split_rows, usable_cpus


@contextlib.contextmanager
def beside(fn, *args, threaded=None):
    """One side task beside the body, its result asked for by calling what is yielded."""
    with side_worker(threaded) as worker:
        yield worker.submit(fn, *args).result


def _where(calls: list, value: int) -> int:
    calls.append(threading.get_ident())
    return value * 2


@pytest.mark.parametrize("threaded", [True, False])
def test_the_result_and_where_it_ran(threaded):
    calls: list = []
    with beside(_where, calls, 21, threaded=threaded) as result:
        if not threaded:
            assert calls == []  # not run before it is asked for: the order of work (and errors) as before
        assert result() == 42
        assert result() == 42  # asked twice: run once
    assert len(calls) == 1
    assert (calls[0] != threading.get_ident()) is threaded


def _fails() -> None:
    raise ValueError("side task")


@pytest.mark.parametrize("threaded", [True, False])
def test_an_exception_of_the_side_task_is_raised_where_its_result_is_asked_for(threaded):
    with beside(_fails, threaded=threaded) as result:
        with pytest.raises(ValueError, match="side task"):
            result()


@pytest.mark.parametrize("threaded", [True, False])
def test_the_bodys_exception_wins_over_a_side_task_never_asked_for(threaded):
    with pytest.raises(KeyError, match="body"):
        with beside(_fails, threaded=threaded):
            raise KeyError("body")


def test_threaded_only_where_the_process_may_use_a_second_cpu_and_torch_more_than_one_thread(monkeypatch):
    import torch

    assert usable_cpus() >= 1
    threads = torch.get_num_threads()
    try:
        for cpus, torch_threads, other_thread in ((1, 2, False), (2, 2, True), (2, 1, False), (4, 3, True)):
            monkeypatch.setattr(overlap, "usable_cpus", lambda cpus=cpus: cpus)
            torch.set_num_threads(torch_threads)
            assert overlap.threads_allowed() == min(cpus, torch_threads)
            calls: list = []
            with beside(_where, calls, 1) as result:
                result()
            assert (calls[0] != threading.get_ident()) is other_thread
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("threaded", [True, False])
def test_a_side_worker_runs_its_tasks_in_order_and_drops_those_never_asked_for(threaded):
    calls: list = []
    with side_worker(threaded=threaded) as worker:
        first = worker.submit(_where, calls, 1)
        second = worker.submit(_where, calls, 2)
        assert (second.result(), first.result()) == (4, 2)
    assert len(calls) == 2 and (calls[0] != threading.get_ident()) is threaded
    calls.clear()
    with pytest.raises(KeyError):
        with side_worker(threaded=threaded) as worker:
            worker.submit(_fails)
            later = worker.submit(_where, calls, 3)
            raise KeyError("body")
    assert calls == [] or threaded  # a thread may have started it; without one it never runs
    if not threaded:
        assert later.result() == 6  # asked for after all: run then


def test_a_task_that_failed_without_a_thread_raises_again_when_asked_again():
    with side_worker(threaded=False) as worker:
        task = worker.submit(_fails)
        for _ in range(2):
            with pytest.raises(ValueError, match="side task"):
                task.result()


def _rows(calls: list, a, b):
    """A row-wise function of two row arrays (``b`` may be None): where each run went, and its rows."""
    calls.append((threading.get_ident(), len(a)))
    return a * 2.0, (a.sum(axis=1) if b is None else a.sum(axis=1) + b)


@pytest.mark.parametrize("threaded", [True, False])
@pytest.mark.parametrize("pieces", [1, 2, 3])
def test_split_rows_gives_one_calls_rows_in_order(threaded, pieces):
    a = np.arange(30.0).reshape(10, 3)
    b = np.arange(10.0) * 0.5
    calls: list = []
    with side_worker(threaded=threaded) as worker:
        for second in (b, None):
            got = split_rows(worker, partial(_rows, calls), a, second, pieces=pieces)
            want = _rows([], a, second)
            assert len(got) == 2
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
    # without a thread (or in one piece): one call of all rows, in the caller
    runs = [n for _, n in calls]
    if not threaded or pieces == 1:
        assert runs == [10, 10] and {t for t, _ in calls} == {threading.get_ident()}
    else:
        assert sorted(runs) == sorted([10 * (k + 1) // pieces - 10 * k // pieces for k in range(pieces)] * 2)


def test_split_rows_takes_the_pieces_a_busy_worker_has_not_started():
    """A worker busy with another task: the caller runs every piece itself instead of waiting."""
    a = np.arange(12.0).reshape(4, 3)
    calls: list = []
    gate = threading.Event()
    with side_worker(threaded=True) as worker:
        busy = worker.submit(gate.wait, 5.0)
        got = split_rows(worker, partial(_rows, calls), a, None, pieces=2)
        gate.set()
        assert busy.result() is True
    np.testing.assert_array_equal(got[0], a * 2.0)
    assert [t for t, _ in calls] == [threading.get_ident()] * 2
