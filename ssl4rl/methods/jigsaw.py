"""Jigsaw puzzles (Noroozi & Favaro, 2016): shuffle 3x3 tiles of an image with one of a fixed set
of permutations and classify which permutation was used.

Faithful details: a square of ``grid_frac`` of the frame side (the paper's 225 of 256 px) at a
random place is divided into a 3x3 grid of cells, and a smaller tile (``tile_frac`` of the cell
side; the paper's 64 of 75 px) is cut at a random position inside each cell, so tiles have random
gaps between them; every tile goes through the same encoder (siamese), a shared layer per tile,
the features concatenated in the shuffled order, then an MLP classifies among
``num_permutations`` (64) permutations chosen greedily for maximal Hamming distance from a fixed
seed (stored as a buffer). Against low-level shortcuts: each tile is normalised to zero mean and
unit std per channel, images are turned grayscale with probability 0.3, and each colour channel
of a colour tile is shifted by up to ``channel_shift`` px (the paper: +-2 px on 64 px tiles).
Deviations: the permutation set's greedy score is the minimum distance to the chosen set with the
paper's summed distance breaking ties (same average distance, minimum 7 instead of 2 for 64; see
``ssl4rl.parts.tiles.maximal_hamming_permutations``); tiles are resized to a size the encoder
accepts (``tile_size``, derived by default); AdamW for short CPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl4rl.augment import grayscale as to_grayscale
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import seed_field, setting
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.tiles import (
    GridLayout,
    TileClassifier,
    classification_outputs,
    cut_tiles,
    maximal_hamming_permutations,
    resize_tiles,
    standardize_tiles,
    tile_input_size,
)

GRID = 3


@dataclass
class JigsawConfig(MethodConfig):
    """Jigsaw recipe for 32-84 px: 64 permutations, a grid over 0.88 of the frame, tiles 0.85 of a
    cell (8 px at 32, 20 px at 84) resized to a multiple of the ViT patch (16 / 24 px), batch 64
    images (576 tiles)."""

    name: str = recipe("name", "jigsaw")
    batch_size: int = recipe("batch_size", 64)
    num_permutations: int = setting(64, ge=2, le=1000)
    permutation_seed: int = seed_field(0)
    # side of the randomly placed square the grid covers / frame side (the paper: 225 / 256)
    grid_frac: float = setting(0.88, gt=0, le=1)
    tile_frac: float = setting(0.85, gt=0, le=1)  # tile side / cell side (the paper: 64 / 75); 1 = no gaps, no jitter
    # px tiles are resized to for the encoder (0: derived; fixed-size encoders: their size)
    tile_size: int = setting(0, ge=0, le=1024)
    channel_shift: int = setting(1, ge=0, le=16)  # colour channels of colour tiles shifted by up to this many px
    grayscale: float = setting(0.3, ge=0, le=1)  # probability an image is made grayscale
    tile_dim: int = setting(128, ge=1, le=MAX_WIDTH)  # the shared per-tile layer (the paper's fc6)
    hidden: int = setting(512, ge=1, le=MAX_WIDTH)


def jigsaw_layout(size: int, tile_frac: float, grid_frac: float = 1.0) -> GridLayout:
    """3x3 cells of ``int(grid_frac * size) // 3`` px (the grid at a random place in the frame),
    each holding a tile of ``round(tile_frac * cell)`` px at a uniform random position inside the cell."""
    for key, value in (("tile_frac", tile_frac), ("grid_frac", grid_frac)):
        if not 0.0 < value <= 1.0:
            raise UserError(f"method.{key}={value}: must be in (0, 1]")
    cell = int(grid_frac * size) // GRID
    tile = max(1, round(tile_frac * cell))
    layout = GridLayout(tile=tile, stride=cell, jitter=cell - tile, grid=GRID)
    layout.check(size, "jigsaw")
    return layout


def make_puzzle(
    x: torch.Tensor,
    layout: GridLayout,
    permutations: torch.Tensor,
    generator: torch.Generator | None = None,
    channel_shift: int = 0,
    grayscale: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images (N,3,H,W) -> (shuffled tiles (N,9,3,t,t), labels (N,) on the CPU).

    Each image is made grayscale with probability ``grayscale``; its tiles are cut with
    ``layout`` (colour channels of colour images shifted independently by up to ``channel_shift``
    px, kept inside the image); then position ``j`` of the puzzle holds the tile of cell
    ``permutations[label][j]``, so ``puzzle[:, argsort(permutations[label])]`` restores the order.
    """
    n, c, h, w = x.shape
    k = layout.grid * layout.grid
    gray = torch.rand(n, generator=generator) < grayscale
    if gray.any():
        x = torch.where(gray.to(x.device).view(n, 1, 1, 1), to_grayscale(x), x)
    top, left = layout.sample(n, h, w, generator)
    if channel_shift > 0:
        shift = torch.randint(-channel_shift, channel_shift + 1, (2, n, k, c), generator=generator)
        shift[:, gray] = 0
        top = (top.unsqueeze(-1) + shift[0]).clamp(0, h - layout.tile)
        left = (left.unsqueeze(-1) + shift[1]).clamp(0, w - layout.tile)
    tiles = cut_tiles(x, top, left, layout.tile)
    labels = torch.randint(0, permutations.shape[0], (n,), generator=generator)
    order = permutations[labels.to(permutations.device)].to(x.device)
    return tiles[torch.arange(n, device=x.device).unsqueeze(1), order], labels


class Jigsaw(Method):
    """Siamese encoder over 9 shuffled tiles + a classifier over the permutation set."""

    name = "jigsaw"
    Config = JigsawConfig
    family = "pretext"

    def __init__(self, encoder: Encoder, cfg: JigsawConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        jigsaw_layout(encoder.image_size, cfg.tile_frac, cfg.grid_frac)  # fail early on a layout that does not fit
        perms, _ = maximal_hamming_permutations(cfg.num_permutations, GRID * GRID, cfg.permutation_seed)
        self.register_buffer("permutations", perms)
        self.classifier = TileClassifier(encoder.feature_dim, GRID * GRID, cfg.tile_dim, cfg.hidden, cfg.num_permutations)

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 batch -> (standardised tiles (N*9,3,s,s) for the encoder, labels on the device)."""
        x = batch.images.float() / 255
        layout = jigsaw_layout(min(x.shape[-2:]), self.cfg.tile_frac, self.cfg.grid_frac)
        tiles, labels = make_puzzle(
            x, layout, self.permutations, self.generator, self.cfg.channel_shift, self.cfg.grayscale
        )
        size = tile_input_size(self.encoder, layout.tile, self.cfg.tile_size)
        return standardize_tiles(resize_tiles(tiles, size)), labels.to(x.device)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tiles, labels = self.inputs(batch)
        # per-tile standardisation replaces the encoder's dataset normalisation (as the paper)
        return classification_outputs(self.classifier(self.encoder.forward_features(tiles)), labels)
