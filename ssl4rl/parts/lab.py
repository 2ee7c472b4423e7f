"""CIE Lab colour space and the quantised ab output space of colorization (Zhang et al., 2016).

Lab uses the D65 white point (``kornia.color``): L in [0, 100], a and b roughly in [-110, 110].
The ab plane is cut into a grid of ``grid``-wide cells with centres on multiples of ``grid``;
only the cells that in-gamut sRGB colours fall into are kept (``gamut_bins``). With grid 10 a
dense 64-level sRGB sample keeps Q = 261 bins; the paper's 313 also counts cells only touched by
the convex hull of the gamut. Targets are soft-encoded over the 5 nearest bins with a Gaussian
(sigma 5), class rebalancing weights follow the paper's eq. 3-4 and predictions are decoded
with the annealed mean (temperature 0.38).
"""

from __future__ import annotations

import functools

import kornia.color
import torch


def rgb_to_lab(x01: torch.Tensor) -> torch.Tensor:
    """sRGB images in [0, 1] (N,3,H,W) -> Lab (N,3,H,W): L in [0, 100], a, b in about [-110, 110]."""
    return kornia.color.rgb_to_lab(x01)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab (N,3,H,W) -> sRGB in [0, 1] (out-of-gamut colours clipped)."""
    return kornia.color.lab_to_rgb(lab, clip=True)


def ab_points(lab: torch.Tensor) -> torch.Tensor:
    """Lab (or ab) images (N,C,H,W) -> their ab values as points (N*H*W, 2), row-major per image."""
    return lab[:, -2:].permute(0, 2, 3, 1).reshape(-1, 2)


@functools.lru_cache(maxsize=4)
def _gamut_bins(grid: float, levels: int) -> torch.Tensor:
    v = torch.linspace(0, 1, levels)
    rgb = torch.stack(torch.meshgrid(v, v, v, indexing="ij")).reshape(1, 3, -1, 1)
    cells = torch.round(ab_points(rgb_to_lab(rgb)) / grid).long()
    return torch.unique(cells, dim=0).float() * grid  # sorted by a, then b


def gamut_bins(grid: float = 10.0, levels: int = 64) -> torch.Tensor:
    """Centres (Q, 2) of the ab cells that colours of a ``levels``^3 sRGB grid fall into."""
    return _gamut_bins(float(grid), int(levels)).clone()


def nearest_bins(points: torch.Tensor, centres: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest bin centres of each ab point: (squared distances (M,k), indices (M,k)), nearest first."""
    d2 = torch.cdist(points.float(), centres.to(points.device, torch.float32)).square()
    dist, index = d2.topk(k, dim=1, largest=False, sorted=True)
    return dist, index


def quantize_ab(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index (M,) of the nearest bin centre of each ab point (M, 2)."""
    return nearest_bins(points, centres, 1)[1][:, 0]


def soft_encode(
    points: torch.Tensor, centres: torch.Tensor, k: int = 5, sigma: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's soft target: a Gaussian (``sigma`` in ab units) over the ``k`` nearest bins.

    Returns (indices (M,k), weights (M,k)); each row's weights sum to 1.
    """
    dist, index = nearest_bins(points, centres, k)
    weights = torch.softmax(-dist / (2 * sigma**2), dim=1)
    return index, weights


def rebalance_weights(counts: torch.Tensor, centres: torch.Tensor, sigma: float = 5.0, lam: float = 0.5) -> torch.Tensor:
    """Per-bin loss weights w (Q,) from bin counts: the empirical distribution smoothed by a
    Gaussian (``sigma``) over ab, mixed with the uniform one, inverted, and scaled so E_p[w] = 1."""
    p = counts.float() / counts.float().sum().clamp_min(1.0)
    kernel = torch.exp(-torch.cdist(centres, centres).square() / (2 * sigma**2))
    p = kernel @ p
    p = p / p.sum()
    w = 1.0 / ((1 - lam) * p + lam / p.numel())
    return w / (p * w).sum()


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Per-pixel bin logits (N,Q,h,w) -> ab (N,2,h,w): mean of the distribution re-tempered by ``temperature``."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probs, centres.to(probs.device, probs.dtype))
