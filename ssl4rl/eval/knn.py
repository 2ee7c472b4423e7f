"""Weighted k-nearest-neighbour classification on frozen features (InstDisc / lightly protocol).

Features are L2-normalised, similarity is the cosine, and each of the ``k`` nearest
train samples votes for its class with weight ``exp(sim / T)`` (T = 0.07 by default).
The test set is processed in chunks of rows, so the largest similarity matrix held
at once is ``chunk_size x N_train``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 0.07


def knn_votes(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    k: int = 20,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Class votes (N_test, num_classes), each row normalised to sum 1; ``k`` is clipped to the train size.

    Row i, class c: sum of ``exp(sim / T)`` over the k nearest train samples of class c,
    divided by the sum over all k.
    """
    if len(train_x) == 0:
        raise ValueError("kNN needs at least one train sample")
    if temperature <= 0 or k < 1 or chunk_size < 1:
        raise ValueError(f"need temperature > 0, k >= 1, chunk_size >= 1 (got {temperature}, {k}, {chunk_size})")
    num_classes = int(train_y.max()) + 1 if num_classes is None else int(num_classes)
    k = min(int(k), len(train_x))
    bank = F.normalize(train_x.float(), dim=1)
    train_y = train_y.long().to(bank.device)
    out = []
    for chunk in test_x.float().to(bank.device).split(chunk_size):
        sim = F.normalize(chunk, dim=1) @ bank.T  # (chunk, N_train): the largest matrix held
        top_sim, top_idx = sim.topk(k, dim=1)
        # exp((s - s_max) / T): the same votes up to a per-row factor, without overflow
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
        votes = torch.zeros(len(chunk), num_classes, device=bank.device).scatter_add_(1, train_y[top_idx], weights)
        out.append(votes / votes.sum(1, keepdim=True))
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    k: int = 20,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Predicted class (N_test,): the class with the largest temperature-weighted vote."""
    return knn_votes(train_x, train_y, test_x, k, temperature, num_classes, chunk_size).argmax(1)


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> float:
    """Top-1 accuracy of the temperature-weighted kNN classifier on the test set."""
    pred = knn_predict(train_x, train_y, test_x, k, temperature, num_classes, chunk_size)
    return float((pred.cpu() == test_y.long().cpu()).float().mean()) if len(test_y) else float("nan")
