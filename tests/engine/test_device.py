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
