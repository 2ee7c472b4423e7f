"""A small batched k-means in torch (DeepCluster's clustering step) and PCA whitening.

Deterministic: the k-means++ draws come from an explicit CPU ``torch.Generator``, distances and
centroid sums are computed over fixed chunks of rows (centroid sums as one-hot matrix products,
no atomic scatter), so the same inputs and seed give the same clusters on the same device.
Empty clusters are re-seeded as in faiss (which DeepCluster used): a non-empty cluster is drawn
with probability proportional to its size minus one, and the empty centroid becomes a slightly
perturbed copy of it (the donor moves the opposite way), so the next assignment splits its points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl4rl.errors import UserError

CHUNK = 4096  # rows per distance block: bounds memory at CHUNK x k floats
RESEED_EPS = 1.0 / 1024  # relative perturbation of a re-seeded centroid (faiss's value)


def sq_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, k) between rows of ``x`` (N, D) and ``centroids`` (k, D)."""
    d = x.pow(2).sum(1, keepdim=True) - 2 * x @ centroids.t() + centroids.pow(2).sum(1)
    return d.clamp_min_(0.0)


def assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index (N,) of the nearest centroid of each row of ``x`` (ties: the lowest index)."""
    return torch.cat([sq_distances(chunk, centroids).argmin(1) for chunk in x.split(CHUNK)])


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): the first centre uniform, each next one
    drawn with probability proportional to the squared distance to the nearest chosen centre
    (uniform when every point already coincides with a centre). Returns (k, D) centroids."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [first]
    nearest = sq_distances(x, x[first : first + 1]).squeeze(1)
    for _ in range(k - 1):
        weights = nearest.double().cpu()
        if not bool(weights.sum() > 0):
            weights = torch.ones(n, dtype=torch.float64)
        i = int(torch.multinomial(weights, 1, generator=generator))
        centres.append(i)
        nearest = torch.minimum(nearest, sq_distances(x, x[i : i + 1]).squeeze(1))
    return x[centres].clone()


def reseed_empty(
    centroids: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None = None, eps: float = RESEED_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every empty cluster (``counts == 0``) a perturbed copy of a big cluster's centroid.

    The donor is drawn with probability proportional to ``counts - 1``; with a random sign per
    dimension ``s``, the new centroid is ``c * (1 + eps * s)`` and the donor becomes
    ``c * (1 - eps * s)``; the donor's count is split between the two. Clusters stay empty only
    when no cluster has two points. Returns new (centroids, counts).
    """
    centroids, counts = centroids.clone(), counts.clone()
    for j in (counts == 0).nonzero().flatten().tolist():
        weights = (counts - 1).clamp_min(0).double().cpu()
        if not bool(weights.sum() > 0):
            break
        donor = int(torch.multinomial(weights, 1, generator=generator))
        sign = (torch.randint(0, 2, (centroids.shape[1],), generator=generator) * 2 - 1).to(centroids)
        base = centroids[donor].clone()
        centroids[j] = base * (1 + eps * sign)
        centroids[donor] = base * (1 - eps * sign)
        half = counts[donor] // 2
        counts[j], counts[donor] = half, counts[donor] - half
    return centroids, counts


def _lloyd_step(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-cluster sums (k, D), counts (k,)) of the points nearest each centroid."""
    k = centroids.shape[0]
    sums = torch.zeros_like(centroids)
    counts = torch.zeros(k, dtype=torch.long, device=x.device)
    for chunk in x.split(CHUNK):
        onehot = F.one_hot(sq_distances(chunk, centroids).argmin(1), k)
        sums += onehot.t().to(x.dtype) @ chunk
        counts += onehot.sum(0)
    return sums, counts


def kmeans(
    x: torch.Tensor,
    k: int,
    iters: int = 20,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the rows of ``x`` (N, D) for a fixed number of iterations.

    Seeds with ``kmeans_plusplus`` (or starts from ``init`` (k, D)); each iteration assigns every
    point to its nearest centroid, moves each centroid to the mean of its points and re-seeds
    empty clusters (``reseed_empty``). Returns (centroids (k, D), labels (N,)) where the labels
    are the final nearest-centroid assignment.
    """
    if x.dim() != 2 or x.shape[0] < 1:
        raise UserError(f"kmeans: expected a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise UserError(f"kmeans: k={k} must be between 1 and the number of points ({x.shape[0]}); lower k")
    if init is not None and init.shape != (k, x.shape[1]):
        raise UserError(f"kmeans: init must have shape ({k}, {x.shape[1]}), got {tuple(init.shape)}")
    x = x.float()
    centroids = kmeans_plusplus(x, k, generator) if init is None else init.to(x).clone()
    for _ in range(iters):
        sums, counts = _lloyd_step(x, centroids)
        moved = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype), centroids)
        centroids, _ = reseed_empty(moved, counts, generator)
    return centroids, assign(x, centroids)


def fit_pca_whitening(x: torch.Tensor, dim: int, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepCluster's PCA + whitening fitted on the rows of ``x`` (N, D): returns ``(mean (D,),
    projection (D, dim))`` such that ``(x - mean) @ projection`` are the coordinates on the top
    ``dim`` principal components, each divided by the square root of its variance (floored at
    ``eps`` times the largest)."""
    if not 1 <= dim <= x.shape[1]:
        raise UserError(f"pca_whiten: dim={dim} must be between 1 and the feature size {x.shape[1]}")
    x = x.double()
    mean = x.mean(0)
    centred = x - mean
    cov = centred.t() @ centred / max(1, x.shape[0] - 1)
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    eigval, eigvec = eigval.flip(0)[:dim], eigvec.flip(1)[:, :dim]
    scale = eigval.clamp_min(eps * float(eigval[0].clamp_min(1e-12))).rsqrt()
    return mean.float(), (eigvec * scale).float()


def pca_whiten(x: torch.Tensor, dim: int, eps: float = 1e-5) -> torch.Tensor:
    """Project the rows of ``x`` (N, D) on their top ``dim`` principal components and whiten them
    (``fit_pca_whitening`` applied to ``x`` itself), as DeepCluster's PCA-256 + whitening before
    k-means. Returns (N, dim)."""
    mean, projection = fit_pca_whitening(x, dim, eps)
    return (x.float() - mean) @ projection
