"""MoCo v3 (Chen, Xie & He, 2021): BYOL's architecture (query encoder + projector + predictor,
momentum key encoder + projector) trained contrastively, without a queue: each query's
positive is the momentum key of the other view of the same image, the other keys of the
(global) batch are its negatives.

Faithful details: symmetric loss ``ctr(q1, k2) + ctr(q2, k1)`` where ``ctr`` is InfoNCE at
temperature 0.2 scaled by ``2 * tau`` (the paper's pseudo-code); keys gathered from every
process, positive index = own index offset by the rank; 3-layer projector with BN on every
layer (the last affine-free) and a 2-layer predictor; key momentum on a cosine schedule from
0.99 to 1; BYOL's asymmetric views (solarize on the second view); AdamW with weight decay
0.1; the query encoder is exported. Works with ViT and ResNet backbones. Deviations for
32-84 px frames and short CPU runs: smaller heads (512 -> 128), no Gaussian blur, crops of
20-100% area, lr 1e-3 for short runs, and the ViT patch embedding is trained (the paper
freezes a random patch projection for stability at large scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl4rl.fields import setting
from ssl4rl.losses.infonce import info_nce
from ssl4rl.methods.base import recipe
from ssl4rl.methods.byol import BYOL, BYOLConfig
from ssl4rl.parts.dist import gather_nograd, rank_offset


@dataclass
class MoCoV3Config(BYOLConfig):
    """MoCo v3 recipe for 32-84 px: BYOL's heads and views, 3-layer projector, temperature 0.2."""

    name: str = recipe("name", "mocov3")
    weight_decay: float = recipe("weight_decay", 0.1)
    proj_layers: int = recipe("proj_layers", 3, BYOLConfig)
    temperature: float = setting(0.2, gt=0)
    # the paper's base of the cosine schedule to 1 (BYOL uses 0.996)
    teacher_momentum: float = recipe("teacher_momentum", 0.99, BYOLConfig)


class MoCoV3(BYOL):
    """Query network with predictor, momentum key network, in-batch InfoNCE in both directions."""

    name = "mocov3"
    Config = MoCoV3Config
    family = "contrastive"
    proj_last_norm = True

    def criterion(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``2 tau`` x InfoNCE of local queries against the keys of every process."""
        tau = self.cfg.temperature
        positive = torch.arange(q.shape[0], device=q.device) + rank_offset(q.shape[0])
        return 2 * tau * info_nce(q, gather_nograd(k), positive, tau)
