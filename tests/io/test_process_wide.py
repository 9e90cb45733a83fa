"""io.process_wide: process-wide settings shared by blocks running at once in a caller's threads."""

from __future__ import annotations

import os

import pytest

from geomorph_bids.io.process_wide import ForkHooks, Serial, Shared


def test_the_first_block_saves_and_the_last_restores():
    value = {"now": "caller's"}
    shared = Shared()

    def take() -> str:
        saved, value["now"] = value["now"], "ours"
        return saved

    first = shared.held(take, lambda saved: value.update(now=saved))
    second = shared.held(take, lambda saved: value.update(now=saved))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert value["now"] == "ours"  # still held for the block running on
    second.__exit__(None, None, None)
    assert value["now"] == "caller's"


def test_a_block_whose_start_fails_gives_the_setting_back():
    value = {"now": 1}
    shared = Shared()

    def each(saved: int) -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        with shared.held(lambda: value.update(now=2) or 1, lambda saved: value.update(now=saved), each):
            pass
    assert value["now"] == 1 and shared.count == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_inside_a_block_is_not_held_by_it():
    """A child forked while its parent's thread ran a block inherited the held lock, which no
    thread of the child would ever release: its first read deadlocked."""
    serial, shared = Serial(), Shared()
    with serial.block(), shared.held(lambda: None, lambda saved: None):
        pid = os.fork()
        if pid == 0:  # the child: both usable at once, nothing held
            code = 0
            try:
                if not serial.lock.acquire(timeout=5) or shared.count != 0 or not shared.lock.acquire(timeout=5):
                    code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0



@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_hooks_run_in_a_child_while_held_in_order_and_no_longer_after():
    """A child runs the hooks held when it was forked, in the order added, and so does a child it
    forks in turn; a hook removed (a block ended) runs no more."""
    hooks = ForkHooks()
    read, write = os.pipe()

    def forked() -> bytes:
        pid = os.fork()
        if pid == 0:
            try:
                grandchild = os.fork()
                if grandchild == 0:
                    os._exit(0)
                os.waitpid(grandchild, 0)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        os.write(write, b".")
        seen = b""
        while not seen.endswith(b"."):
            seen += os.read(read, 64)
        return seen[:-1]

    try:
        first = hooks.add(lambda: os.write(write, b"a"))
        with hooks.while_held(lambda: os.write(write, b"b")):
            assert forked() == b"abab"  # the child's, then the grandchild's
        assert forked() == b"aa"
        hooks.remove(first)
        assert forked() == b"" and hooks.hooks == {}
    finally:
        os.close(read)
        os.close(write)
