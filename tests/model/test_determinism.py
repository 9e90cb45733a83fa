"""model.determinism.torch_threads: a step's torch thread count, the caller's given back."""

from __future__ import annotations

import threading

import pytest
import torch

from geomorph_bids.model.determinism import torch_threads


@pytest.fixture
def caller_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield 1
    torch.set_num_threads(before)


def test_a_block_runs_with_its_count_and_gives_the_callers_back(caller_threads):
    with torch_threads(3):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(RuntimeError, match="inside"), torch_threads(2):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == caller_threads
    for nothing in (None, 0):
        with torch_threads(nothing):
            assert torch.get_num_threads() == caller_threads


def test_blocks_that_overlap_in_threads_give_back_the_callers_count(caller_threads):
    """Two nodes run by a caller's threads: the first saves the caller's count, the last gives it back
    (a save and restore per block left the other block's count for good)."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with torch_threads(3):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with torch_threads(2):
            second_in.set()
            first_out.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert torch.get_num_threads() == caller_threads
