"""Cached tables must not depend on the autograd mode of whoever builds them first."""

from __future__ import annotations

import torch

from geomorph_bids.model import geoconv, losses, warp
from geomorph_bids.model.cache import cached_tables
from geomorph_bids.model.geomorph import GeoMorph, tiny_config
from geomorph_bids.model.losses import total_loss


def _clear_all() -> None:
    for fn in (geoconv.hex_tables, geoconv._pool_table, geoconv._parent_table, losses._unit_icosphere,
               warp._parents, warp.ico_sampler):
        fn.cache_clear()


def test_inference_first_then_training_in_one_process():
    """register() runs under inference_mode; training afterwards must still work."""
    _clear_all()
    torch.manual_seed(0)
    cfg = tiny_config(data_level=3)
    moving, fixed = torch.randn(1, cfg.n_vertices, 1), torch.randn(1, cfg.n_vertices, 1)
    with torch.inference_mode():
        GeoMorph(cfg)(moving, fixed)
    model = GeoMorph(cfg)
    out = model(moving, fixed)
    loss, _ = total_loss(out.warped, fixed, out.warp, level=3)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_cached_values_are_ordinary_tensors():
    @cached_tables()
    def table(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32)

    with torch.inference_mode():
        t = table(4)
    assert not t.is_inference()
    assert table(4) is t and table.cache_info().hits == 1
