"""Context prediction (Doersch et al., 2015): given a centre patch and one of its 8 neighbours,
classify where the neighbour sits.

Faithful details: patches come from a 3x3 grid with gaps between patches (``gap_frac`` of the
patch side; the paper's 48 px gap for 96 px patches is 0.5) and each patch's position jittered
independently (the paper: up to 7 px for 96 px patches); the grid sits at a random place in the
frame; colour dropping against chromatic-aberration shortcuts (two of the three channels of each
patch replaced by their mean plus faint noise, ``ssl4rl.augment.channel_drop``); both patches go
through the same encoder (siamese), a shared layer per patch, features concatenated (centre
first) -> MLP -> 8 classes. Neighbour ``i`` sits at offset ``NEIGHBOURS[i] = (dr, dc)`` from the
centre, in row-major order: (-1,-1) (-1,0) (-1,1) (0,-1) (0,1) (1,-1) (1,0) (1,1).
Deviations: patches are resized to a size the encoder accepts (``tile_size``, derived by
default); the jitter is at least 1 px (rounded up) so small frames keep it; AdamW for short CPU runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ssl4rl.augment import channel_drop
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.tiles import GridLayout, TileClassifier, classification_outputs, cut_tiles, resize_tiles, tile_input_size

NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
GRID, CENTRE = 3, 4  # the centre is cell 4 of the row-major 3x3 grid


@dataclass
class RelPosConfig(MethodConfig):
    """Context-prediction recipe for 32-84 px: the largest patch that fits with a half-patch gap
    and jitter (7 px at 32, 20 px at 84), resized to 16 / 24 px for a patch-8 ViT, every patch
    colour-dropped, batch 128 pairs."""

    name: str = recipe("name", "relpos")
    batch_size: int = recipe("batch_size", 128)
    patch: int = setting(0, ge=0, le=1024)  # patch side in px (0: the largest that fits the frame with the gaps and jitter)
    gap_frac: float = setting(0.5, ge=0, le=2)  # gap between neighbouring patches / patch side
    # each patch moves by up to ceil(jitter_frac * patch) px each way (paper 7/96)
    jitter_frac: float = setting(0.073, ge=0, le=1)
    # px patches are resized to for the encoder (0: derived; fixed-size encoders: their size)
    tile_size: int = setting(0, ge=0, le=1024)
    channel_drop: float = setting(1.0, ge=0, le=1)  # probability a patch keeps only one colour channel
    tile_dim: int = setting(128, ge=1, le=MAX_WIDTH)  # the shared per-patch layer (the paper's fc6)
    hidden: int = setting(512, ge=1, le=MAX_WIDTH)


def relpos_layout(size: int, patch: int = 0, gap_frac: float = 0.5, jitter_frac: float = 0.073) -> GridLayout:
    """The 3x3 patch grid for ``size`` px frames: patches of ``patch`` px (0: the largest that fits),
    gaps of ``round(gap_frac * patch)`` px and a jitter of ``ceil(jitter_frac * patch)`` px each way."""
    if gap_frac < 0 or jitter_frac < 0:
        raise UserError(f"method.gap_frac={gap_frac}, method.jitter_frac={jitter_frac}: must be >= 0")

    def layout(p: int) -> GridLayout:
        j = math.ceil(jitter_frac * p)
        return GridLayout(tile=p, stride=p + round(gap_frac * p), jitter=2 * j, grid=GRID)

    if patch > 0:
        chosen = layout(patch)
    else:
        fitting = [p for p in range(size // GRID, 0, -1) if layout(p).extent <= size]
        if not fitting:
            raise UserError(f"relpos: no patch fits {size} px frames with gap_frac={gap_frac}; lower method.gap_frac")
        chosen = layout(fitting[0])
    chosen.check(size, "relpos")
    return chosen


def make_pair(
    x: torch.Tensor, layout: GridLayout, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images (N,C,H,W) -> (patches (N,2,C,p,p): the centre then a neighbour, labels (N,) on
    the CPU): label ``i`` means the neighbour is at ``NEIGHBOURS[i]`` from the centre."""
    n = x.shape[0]
    top, left = layout.sample(n, x.shape[-2], x.shape[-1], generator)
    labels = torch.randint(0, len(NEIGHBOURS), (n,), generator=generator)
    cells = torch.stack([torch.full((n,), CENTRE), labels + (labels >= CENTRE).long()], 1)
    return cut_tiles(x, top.gather(1, cells), left.gather(1, cells), layout.tile), labels


class RelPos(Method):
    """Siamese encoder over a (centre, neighbour) patch pair + an 8-way position classifier."""

    name = "relpos"
    Config = RelPosConfig
    family = "pretext"

    def __init__(self, encoder: Encoder, cfg: RelPosConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        relpos_layout(encoder.image_size, cfg.patch, cfg.gap_frac, cfg.jitter_frac)  # fail early
        self.classifier = TileClassifier(encoder.feature_dim, 2, cfg.tile_dim, cfg.hidden, len(NEIGHBOURS))

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 batch -> (colour-dropped patches (N*2,3,s,s) in [0, 1], centre and neighbour
        alternating, labels on the device)."""
        x = batch.images.float() / 255
        layout = relpos_layout(min(x.shape[-2:]), self.cfg.patch, self.cfg.gap_frac, self.cfg.jitter_frac)
        patches, labels = make_pair(x, layout, self.generator)
        size = tile_input_size(self.encoder, layout.tile, self.cfg.tile_size)
        return channel_drop(resize_tiles(patches, size), self.cfg.channel_drop, self.generator), labels.to(x.device)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        patches, labels = self.inputs(batch)
        return classification_outputs(self.classifier(self.embed(patches)), labels)
