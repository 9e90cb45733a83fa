"""engine/device.py: the one resolve_device (registration and training)."""

from __future__ import annotations

import pytest
import torch

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
