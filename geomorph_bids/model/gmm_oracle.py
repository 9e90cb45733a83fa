"""torch_geometric's GMMConv on our hexagonal neighbourhoods: the reference that
GeoConv is checked and benchmarked against.

Not used at run time: torch_geometric is a test/benchmark dependency only
(``pip install geomorph-bids[test]``), imported when a layer is built.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..sphere.icosphere import hex_neighbourhood, pseudo_coords

__all__ = ["GMMConvHex"]


class GMMConvHex(nn.Module):
    """``GMMConv(aggr="mean")`` over the edges "valid hex slot -> centre" of ico-``level``.

    Same call signature as :class:`~geomorph_bids.model.geoconv.GeoConv`, so
    ``GeoMorphNet(config, conv=GMMConvHex)`` builds the message-passing twin of
    the network. Input/output (B, V, C), looped over the batch (GMMConv has none).
    """

    def __init__(self, cin: int, cout: int, level: int, kernels: int) -> None:
        super().__init__()
        from torch_geometric.nn import GMMConv

        self.conv = GMMConv(cin, cout, dim=2, kernel_size=kernels, aggr="mean")
        index, mask = hex_neighbourhood(level)
        dst = np.broadcast_to(np.arange(len(index))[:, None], index.shape)
        self.register_buffer("edge_index", torch.from_numpy(np.stack([index[mask], dst[mask]])))
        self.register_buffer("edge_attr", torch.tensor(pseudo_coords(level)[mask].astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.conv(xb, self.edge_index, self.edge_attr) for xb in x])
