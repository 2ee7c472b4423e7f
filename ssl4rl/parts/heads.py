"""Projection and prediction heads shared by the methods (as in lightly's ``heads.py``)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    layers: int = 2,
    norm: str = "bn",
    last_norm: bool = False,
    bias_last: bool = True,
) -> nn.Sequential:
    """An MLP of ``layers`` linear layers: (Linear, Norm, ReLU) x (layers-1), then Linear [+ Norm].

    ``norm`` is ``'bn'`` (BatchNorm1d, as SimCLR/BYOL/SimSiam/Barlow/VICReg use), ``'ln'`` or ``'none'``.
    ``last_norm`` adds a norm without affine parameters after the last layer (SimSiam's projector).
    """
    def make_norm(d: int, affine: bool = True) -> nn.Module:
        if norm == "bn":
            return nn.BatchNorm1d(d, affine=affine)
        if norm == "ln":
            return nn.LayerNorm(d, elementwise_affine=affine)
        return nn.Identity()

    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden_dim, bias=norm == "none"), make_norm(hidden_dim), nn.ReLU(inplace=True)]
        d = hidden_dim
    mods.append(nn.Linear(d, out_dim, bias=bias_last))
    if last_norm:
        mods.append(make_norm(out_dim, affine=False))
    return nn.Sequential(*mods)


class DINOHead(nn.Module):
    """DINO's head: a 3-layer MLP (GELU) to a bottleneck, L2 normalisation, then a weight-normalised
    linear layer to ``out_dim`` prototypes (its norm frozen at 1, as in the paper).

    ``use_bn`` puts a BatchNorm1d after each hidden linear layer (the official code's
    ``use_bn_in_head`` option; the bias before it is then dropped as redundant)."""

    def __init__(
        self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 512, bottleneck_dim: int = 128, use_bn: bool = False
    ) -> None:
        super().__init__()

        def hidden(d: int) -> list[nn.Module]:
            norm = [nn.BatchNorm1d(hidden_dim)] if use_bn else []
            return [nn.Linear(d, hidden_dim, bias=not use_bn), *norm, nn.GELU()]

        self.mlp = nn.Sequential(*hidden(in_dim), *hidden(hidden_dim), nn.Linear(hidden_dim, bottleneck_dim))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, in_dim) -> logits over prototypes (N, out_dim)."""
        return self.last(nn.functional.normalize(self.mlp(x), dim=-1))
