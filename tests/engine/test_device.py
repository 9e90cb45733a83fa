"""engine/device.py: the one resolve_device (registration and training)."""

from __future__ import annotations

import sys

import pytest
import torch

from geomorph_bids.engine import device as device_module
from geomorph_bids.engine.device import resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_specifications_and_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("tpu", "cuda:x", "", "gpu"):
        with pytest.raises(ValueError) as e:
            resolve_device(bad)
        assert "\n" not in str(e.value)


def test_a_cpu_device_with_an_index_and_none_are_read_as_torch_reads_them():
    """``torch.device("cpu", 0)`` (printed ``cpu:0``, what a tensor's ``.device`` can be) was
    refused as "unknown device 'cpu:0'"; ``device=None`` as "unknown device 'none'"."""
    assert resolve_device(torch.device("cpu", 0)) == torch.device("cpu")
    assert resolve_device("cpu:0") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ValueError, match="unknown device 'cpu:x'"):
        resolve_device("cpu:x")


def test_cuda_is_counted_without_initialising_it_in_this_process(monkeypatch):
    """torch.cuda.is_available() initialises the CUDA driver, and a process that has done so cannot
    fork workers that use CUDA: the BIDS-App resolves --device in its main process, then Nipype's
    MultiProc forks its workers, whose registrations each failed with torch's 'Cannot re-initialize
    CUDA in forked subprocess' (torch's note on poisoned forks). The devices are counted through
    torch.cuda.device_count(), which asks NVML and leaves CUDA alone."""
    def poisons_fork():
        raise AssertionError("torch.cuda.is_available() initialises CUDA in the parent")

    monkeypatch.setattr(torch.cuda, "is_available", poisons_fork)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    # 'auto' asks torch whether it can use them (a driver too old for its CUDA build cannot) in a child
    asked = []
    monkeypatch.setattr(device_module, "_cuda_works_in_a_child", lambda python: asked.append(python) or True)
    assert resolve_device("auto") == torch.device("cuda") and asked == [sys.executable]
    monkeypatch.setattr(device_module, "_cuda_works_in_a_child", lambda python: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("CUDA:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"^device 'cuda:2' requested but only 2 CUDA device\(s\) are visible$"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto") == torch.device("cpu")


def test_an_empty_cuda_visible_devices_is_named(monkeypatch):
    """CUDA_VISIBLE_DEVICES="" (a scheduler's job given no GPU, an unset variable expanded) hides
    every GPU: --device cuda says so in its one line."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError) as e:
        resolve_device("cuda")
    assert str(e.value) == ("device 'cuda' requested but CUDA is not available (no CUDA GPU is visible: "
                            "CUDA_VISIBLE_DEVICES is set but empty); use device cpu or auto")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ValueError, match=r"\(no CUDA GPU is visible\); use device cpu or auto$"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == torch.device("cpu")


def test_the_child_process_asks_torch_itself():
    """On this machine (no GPU, or one torch can use) the child's answer is torch's own."""
    from geomorph_bids.engine.device import _cuda_works_in_a_child

    assert _cuda_works_in_a_child(sys.executable) == torch.cuda.is_available()


def test_what_a_registration_needs_grows_beyond_164k_vertices_and_not_below():
    """Twenty-third session: the figures of 163,842 vertices were used for every mesh; a 655,362-vertex
    sphere peaked at 1.15 GB and needed 1.64 GB of address space (0.66 and 1.33 at 164k)."""
    from geomorph_bids.engine.device import registration_needs_gb

    assert registration_needs_gb(None) == registration_needs_gb(2562) == registration_needs_gb(163842) == (0.66, 1.33)
    assert registration_needs_gb(655362) == (1.15, 1.64)
    assert registration_needs_gb(300000) == (0.8, 1.42)
    assert registration_needs_gb(1310722) == (1.81, 2.06)  # ico-8 refined again: the line, beyond


def test_a_high_resolution_hemisphere_takes_more_places_in_a_batch():
    from geomorph_bids.engine.device import batch_share

    assert [batch_share(n) for n in (None, 642, 10242, 163842, 300000, 655362)] == [1, 1, 1, 1, 4, 10]


def test_cuda_asked_for_by_name_on_a_driver_too_old_is_one_line_at_the_start(monkeypatch):
    """Twenty-fifth session: ``--device cuda`` counted GPUs through NVML only, so on a driver too old for
    torch's CUDA build every registration (each Nipype node, each batch) failed with torch's own
    message; ``auto`` fell back to the CPU. The command lines now ask torch (in a child, as ``auto``
    does: CUDA stays uninitialised here) and stop before any work with one line; ``register()`` and
    the rest of the library keep resolving without the child (``check_driver`` off)."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    asked = []

    def too_old(python):
        asked.append(python)
        return "The NVIDIA driver on your system is too old (found version 11040)"

    monkeypatch.setattr(device_module, "_cuda_problem_in_a_child", too_old)
    assert resolve_device("cuda") == torch.device("cuda") and asked == []
    with pytest.raises(ValueError) as e:
        resolve_device("cuda", check_driver=True)
    assert str(e.value) == (f"device 'cuda' requested but torch {torch.__version__} (built for CUDA 13.0) cannot use "
                            "the 1 GPU(s) it sees (The NVIDIA driver on your system is too old (found version 11040)); "
                            "update the NVIDIA driver, or use device cpu")
    assert asked == [sys.executable]
    assert resolve_device("auto") == torch.device("cpu")  # auto asks the same child
    monkeypatch.setattr(device_module, "_cuda_problem_in_a_child", lambda python: None)
    assert resolve_device("cuda:0", check_driver=True) == torch.device("cuda", 0)


def test_the_child_says_why_torch_cannot_use_cuda(tmp_path):
    """The child's answer is torch's CUDA warning less its advice and the C++ location, or a plain
    fallback; a python that cannot be run is named."""
    from geomorph_bids.engine.device import _cuda_problem_in_a_child

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'CUDA initialization: The NVIDIA driver on your system is too old (found "
                    "version 11040). Please update your GPU driver by downloading it. (Triggered internally at x.cpp:1.)'"
                    "\nexit 3\n")
    fake.chmod(0o755)
    assert _cuda_problem_in_a_child(str(fake)) == "The NVIDIA driver on your system is too old (found version 11040)"
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexit 3\n")
    silent.chmod(0o755)
    assert _cuda_problem_in_a_child(str(silent)) == "torch.cuda.is_available() is False"
    assert _cuda_problem_in_a_child(str(tmp_path / "none")) == "torch could not be asked: FileNotFoundError"
