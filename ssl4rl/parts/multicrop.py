"""Multi-crop (SwAV, DINO): two global crops at the encoder's size plus small local crops, and
their embedding grouped by size, so small crops go through a dynamic-size ViT at their own size
(one forward per size) while fixed-size encoders get every crop resized to their input size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ssl4rl.augment import ViewAug, multi_crop, scale_pair
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting

if TYPE_CHECKING:
    from ssl4rl.methods.base import Method

N_GLOBAL = 2  # both papers use two global crops; the teacher / the codes see only these


@dataclass
class MultiCrop:
    """Crop settings: global crops of ``global_scale`` of the area at the encoder's image size;
    ``n_local`` crops of ``local_scale`` at ``local_frac`` of that side (rounded to the ViT patch)."""

    global_scale: tuple[float, float] = setting((0.4, 1.0), gt=0, le=1, check=scale_pair)
    n_local: int = setting(4, ge=0, le=32)
    local_frac: float = setting(0.5, gt=0, le=1)
    local_scale: tuple[float, float] = setting((0.05, 0.4), gt=0, le=1, check=scale_pair)

    def check(self) -> None:
        """Local crops are the small ones: neither end of ``local_scale`` above that of ``global_scale``."""
        (g_lo, g_hi), (l_lo, l_hi) = self.global_scale, self.local_scale
        if l_lo > g_lo or l_hi > g_hi:
            raise UserError(f"method.crops.local_scale={_pair(self.local_scale)} is larger than method.crops.global_scale="
                            f"{_pair(self.global_scale)}; local crops must be the smaller ones, e.g. [0.05,0.4] and [0.4,1.0]")


def _pair(scale: tuple[float, float]) -> str:
    return f"[{scale[0]:g},{scale[1]:g}]"


def local_size(encoder: Encoder, frac: float) -> int:
    """Side of the local crops: ``frac`` of the encoder's size, a multiple of its patch size (ViT)."""
    if not 0.0 < frac <= 1.0:
        raise UserError(f"method.crops.local_frac={frac}: must be in (0, 1], e.g. 0.5")
    patch = getattr(encoder, "patch_size", 1)
    return max(patch, round(encoder.image_size * frac / patch) * patch)


def multi_crop_pair(
    x: torch.Tensor, y: torch.Tensor, encoder: Encoder, crops: MultiCrop, aug: ViewAug, generator: torch.Generator
) -> list[torch.Tensor]:
    """Float images in [0, 1] -> ``[global_1, global_2, local_1, ...]`` views, each (N, 3, s, s).

    ``y`` is the positive of ``x`` (``Method.pair``); when it is ``x`` itself every crop comes from
    one batched ``multi_crop`` call, otherwise the second global crop is taken from ``y``.
    """
    if crops.n_local < 0:
        raise UserError(f"method.crops.n_local={crops.n_local}: must be >= 0")
    g, s = encoder.image_size, local_size(encoder, crops.local_frac)
    if y is x:
        return multi_crop(x, N_GLOBAL, g, crops.global_scale, crops.n_local, s, crops.local_scale, aug, generator)
    first = multi_crop(x, 1, g, crops.global_scale, crops.n_local, s, crops.local_scale, aug, generator)
    second = multi_crop(y, 1, g, crops.global_scale, 0, s, crops.local_scale, aug, generator)
    return [first[0], second[0], *first[1:]]


def embed_views(method: Method, views: list[torch.Tensor], encoder: Encoder | None = None) -> torch.Tensor:
    """Pooled features of every view, concatenated in view order ((len(views) * N, D)).

    Consecutive views of one size (after ``method.fit_size``) share one forward pass.
    """
    enc = encoder or method.encoder
    fitted = [method.fit_size(v, enc) for v in views]
    out, start = [], 0
    while start < len(fitted):
        end = start + 1
        while end < len(fitted) and fitted[end].shape[-2:] == fitted[start].shape[-2:]:
            end += 1
        out.append(method.embed(torch.cat(fitted[start:end]), enc))
        start = end
    return torch.cat(out)
