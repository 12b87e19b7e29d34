"""A hexagon U-Net of torch-geometric GCNConv blocks: encode at each resolution, pool to the
parent level through the parent map (mean of children), decode by unpooling (copy the parent
to its children) and joining the skip connection."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import GCNConv
from torch_geometric.utils import scatter


class GCNBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = GCNConv(cin, cout)
        self.conv2 = GCNConv(cout, cout)
        self.norm = nn.LayerNorm(cout)
        self.skip = nn.Linear(cin, cout) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.gelu(self.conv1(x, edge_index))
        h = self.conv2(h, edge_index)
        return torch.nn.functional.gelu(self.norm(h + self.skip(x)))


class ConeUNet(nn.Module):
    """Levels are fine -> coarse in `dims`; batches carry levels coarse -> fine (index 0 = coarse)."""

    def __init__(self, in_channels: int, dims: list[int], out_channels: int, grad_checkpoint: bool = False):
        super().__init__()
        if len(dims) != 3:
            raise ValueError("dims needs three values (fine, middle, coarse), e.g. 16,32,64")
        d0, d1, d2 = dims
        self.grad_checkpoint = grad_checkpoint
        self.enc_fine = GCNBlock(in_channels, d0)
        self.enc_mid = GCNBlock(d0, d1)
        self.bottom = GCNBlock(d1, d2)
        self.dec_mid = GCNBlock(d2 + d1, d1)
        self.dec_fine = GCNBlock(d1 + d0, d0)
        self.head = nn.Linear(d0, out_channels)

    def _run(self, block: nn.Module, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpoint and self.training:
            return checkpoint(block, x, edge_index, use_reentrant=False)
        return block(x, edge_index)

    def forward(self, x: torch.Tensor, edge_index: list[torch.Tensor], parent: list[torch.Tensor]) -> torch.Tensor:
        e_coarse, e_mid, e_fine = edge_index
        p_mid, p_fine = parent  # parent of each middle cell (in coarse), of each fine cell (in middle)
        n_mid, n_coarse = p_fine.max().item() + 1, p_mid.max().item() + 1
        fine = self._run(self.enc_fine, x, e_fine)
        mid = self._run(self.enc_mid, scatter(fine, p_fine, dim=0, dim_size=n_mid, reduce="mean"), e_mid)
        coarse = self._run(self.bottom, scatter(mid, p_mid, dim=0, dim_size=n_coarse, reduce="mean"), e_coarse)
        mid = self._run(self.dec_mid, torch.cat([coarse[p_mid], mid], dim=1), e_mid)
        fine = self._run(self.dec_fine, torch.cat([mid[p_fine], fine], dim=1), e_fine)
        return self.head(fine)
