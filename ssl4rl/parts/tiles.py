"""Shared mechanics of the pretext tasks (rotation, jigsaw, relative position).

- ``GridLayout``: a grid of square tiles with gaps between them and random jitter of each tile,
  placed at a random position in the image; ``sample`` draws per-sample tile origins.
- ``cut_tiles``: cut per-sample (optionally per-channel) tiles out of a batch in one gather.
- ``tile_input_size`` / ``resize_tiles`` / ``standardize_tiles``: bring tiles to a size the
  encoder accepts; per-tile, per-channel mean/std normalisation (Noroozi & Favaro 2016).
- ``TileClassifier``: the siamese head: a shared per-tile layer, features concatenated in tile
  order, an MLP to the classes.
- ``maximal_hamming_permutations``: a permutation set chosen greedily for large Hamming distance.
- ``classification_outputs``: cross-entropy plus the pretext accuracy, as a method's logs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.parts.heads import mlp

# Per-tile std floor (images in [0, 1], about 5 grey levels): a flat tile stays flat instead of
# having its quantisation noise blown up to unit variance.
STD_FLOOR = 0.02


@dataclass(frozen=True)
class GridLayout:
    """``grid`` x ``grid`` square tiles of ``tile`` px whose nominal origins are ``stride`` px apart
    (the gap between neighbours is ``stride - tile``); each tile's origin moves by a draw uniform in
    ``[0, jitter]`` px per axis. The whole grid spans ``extent`` px and sits at a uniform random
    position in the image. Cell ``k`` is row ``k // grid``, column ``k % grid`` (row-major)."""

    tile: int
    stride: int
    jitter: int = 0
    grid: int = 3

    @property
    def extent(self) -> int:
        """Side in px of the square the grid may cover, jitter included."""
        return (self.grid - 1) * self.stride + self.tile + self.jitter

    def check(self, size: int, where: str) -> None:
        """UserError unless the layout is valid and fits a ``size`` px image."""
        if self.tile < 1 or self.stride < self.tile or self.jitter < 0:
            raise UserError(f"{where}: bad tile layout {self}; tiles need tile >= 1, stride >= tile, jitter >= 0")
        if self.extent > size:
            raise UserError(
                f"{where}: a {self.grid}x{self.grid} grid of {self.tile} px tiles (stride {self.stride}, jitter "
                f"{self.jitter}) spans {self.extent} px, more than the {size} px images; use smaller tiles or gaps"
            )

    def sample(
        self, n: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample tile origins on the CPU: ``(top, left)``, each int64 ``(n, grid * grid)``."""
        self.check(min(height, width), "GridLayout.sample")
        k = self.grid * self.grid
        oy = torch.randint(0, height - self.extent + 1, (n, 1), generator=generator)
        ox = torch.randint(0, width - self.extent + 1, (n, 1), generator=generator)
        jy = torch.randint(0, self.jitter + 1, (n, k), generator=generator)
        jx = torch.randint(0, self.jitter + 1, (n, k), generator=generator)
        cell = torch.arange(k)
        return oy + (cell // self.grid) * self.stride + jy, ox + (cell % self.grid) * self.stride + jx


def cut_tiles(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Tiles of ``size`` px out of images ``x`` (N,C,H,W): tile ``j`` of image ``i`` has its top-left
    pixel at ``(top[i, j], left[i, j])``. ``top``/``left`` are (N,K), or (N,K,C) to give each colour
    channel its own origin (colour-channel jitter); origins are best on the CPU, where they are
    checked to keep the tiles inside the image. Returns (N,K,C,size,size)."""
    n, c, h, w = x.shape
    if top.min() < 0 or left.min() < 0 or top.max() + size > h or left.max() + size > w:
        raise UserError(f"cut_tiles: {size} px tiles at these origins leave the {h}x{w} images; check the layout")
    top, left = (t.to(x.device) for t in (top, left))
    if top.dim() == 2:
        top, left = (t.unsqueeze(-1).expand(-1, -1, c) for t in (top, left))
    ar = torch.arange(size, device=x.device)
    rows = (top.unsqueeze(-1) + ar).unsqueeze(-1)  # (N,K,C,size,1)
    cols = (left.unsqueeze(-1) + ar).unsqueeze(-2)  # (N,K,C,1,size)
    n_idx = torch.arange(n, device=x.device).view(n, 1, 1, 1, 1)
    c_idx = torch.arange(c, device=x.device).view(1, 1, c, 1, 1)
    return x[n_idx, c_idx, rows, cols]


def tile_input_size(encoder: Encoder, native: int, requested: int = 0) -> int:
    """The side in px tiles are resized to before the encoder: ``encoder.image_size`` for encoders
    of fixed input size; else ``requested`` when > 0; else ``native`` rounded up to a multiple of the
    encoder's patch size (8 when it has none) and at least two patches (so a ViT's pooled grid
    has tokens to pool)."""
    if not encoder.dynamic_size:
        return encoder.image_size
    if requested > 0:
        return requested
    m = int(getattr(encoder, "patch_size", 8))
    return max(2 * m, math.ceil(native / m) * m)


def resize_tiles(tiles: torch.Tensor, size: int) -> torch.Tensor:
    """Tiles (N,K,C,t,t) -> one batch (N*K,C,size,size), bilinear (antialiased) when t != size."""
    flat = tiles.flatten(0, 1)
    if flat.shape[-1] == size and flat.shape[-2] == size:
        return flat
    return F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def standardize_tiles(x: torch.Tensor, floor: float = STD_FLOOR) -> torch.Tensor:
    """Each image/tile (N,C,H,W) and channel to zero mean and unit std (std floored at ``floor``),
    so a tile's brightness and contrast cannot tell where it came from."""
    std, mean = torch.std_mean(x, dim=(-2, -1), keepdim=True)
    return (x - mean) / std.clamp_min(floor)


class TileClassifier(nn.Module):
    """Siamese head: each tile's encoder features through one shared layer (Linear, LayerNorm,
    ReLU) to ``tile_dim``, concatenated in tile order, then a 2-layer MLP to ``classes`` logits."""

    def __init__(self, feature_dim: int, tiles: int, tile_dim: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.tiles = tiles
        self.per_tile = nn.Sequential(nn.Linear(feature_dim, tile_dim), nn.LayerNorm(tile_dim), nn.ReLU(inplace=True))
        self.head = mlp(tiles * tile_dim, hidden, classes, layers=2, norm="ln")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features (N*K, D), K consecutive rows per sample -> logits (N, classes)."""
        z = self.per_tile(features)
        return self.head(z.reshape(-1, self.tiles * z.shape[-1]))


def maximal_hamming_permutations(n: int, length: int = 9, seed: int = 0) -> tuple[torch.Tensor, int]:
    """``n`` permutations of ``range(length)`` with large pairwise Hamming distances, greedily.

    As Noroozi & Favaro's Algorithm 1: the first permutation is drawn uniformly (CPU generator
    seeded with ``seed``), then each step adds the remaining permutation farthest from the chosen
    set. Farthest here means the largest *minimum* distance to the set, ties broken by the largest
    *summed* distance (the paper's criterion), then by the lowest lexicographic rank. The paper's
    sum alone lets one close pair in; for 64 of 9 this keeps the paper's average distance (8.12)
    and raises the minimum from 2 to 7. Each pick's minimum distance never exceeds the previous
    one's, so the set's minimum pairwise distance is the last pick's: returned with the set as
    ``(permutations int64 (n, length), minimum distance)``. Deterministic; cached per arguments.
    """
    if length < 2 or not 2 <= n <= math.factorial(length) or length > 10:
        raise UserError(
            f"maximal_hamming_permutations: need 2 <= n <= {length}! and 2 <= length <= 10, got n={n}, length={length}"
        )
    perms, min_dist = _greedy_permutations(n, length, seed)
    return perms.clone(), min_dist


@lru_cache(maxsize=1)
def _all_permutations(length: int) -> torch.Tensor:
    """Every permutation of ``range(length)`` as uint8 columns (length, length!), lexicographic."""
    return torch.from_numpy(np.array(list(itertools.permutations(range(length))), dtype=np.uint8).T.copy())


@lru_cache(maxsize=4)
def _greedy_permutations(n: int, length: int, seed: int) -> tuple[torch.Tensor, int]:
    every = _all_permutations(length)
    total = every.shape[1]  # every[:, j] is the j-th permutation in lexicographic order
    g = torch.Generator().manual_seed(seed)
    pick = int(torch.randint(0, total, (1,), generator=g))
    summed = torch.zeros(total, dtype=torch.int64)
    nearest = torch.full((total,), length + 1, dtype=torch.int64)
    chosen = [pick]
    while True:
        dist = (every != every[:, pick : pick + 1]).sum(0)
        summed += dist
        torch.minimum(nearest, dist, out=nearest)  # 0 exactly on chosen ones: they are never picked again
        if len(chosen) == n:
            break
        rank = nearest * (length * n + 1) + summed  # min distance first, then the summed distance
        rank[nearest == 0] = -1
        pick = int(rank.argmax())
        score = int(nearest[pick])  # its distance to the nearest chosen one
        chosen.append(pick)
    return every[:, chosen].T.long().contiguous(), score


def classification_outputs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy loss and the logs of a pretext classifier: ``loss`` and ``acc`` (the fraction
    of correct predictions in [0, 1]), as tensors."""
    loss = F.cross_entropy(logits, labels)
    acc = (logits.detach().argmax(1) == labels).float().mean()
    return loss, {"loss": loss.detach(), "acc": acc}
