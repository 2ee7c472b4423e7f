"""DINO's loss (Caron et al., 2021): cross-entropy between the centred, sharpened teacher
distribution of each global view and the student distribution of every *other* view.
``cross_view_cross_entropy`` is the part SwAV's swapped prediction shares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def cross_view_cross_entropy(
    targets: Sequence[torch.Tensor], logits: Sequence[torch.Tensor], temperature: float
) -> torch.Tensor:
    """Mean over the pairs (i, v), v != i, of ``-sum(targets[i] * log_softmax(logits[v] / T))``
    averaged over the batch. ``targets[i]`` (N, K) are probabilities for view ``i`` (the first
    ``len(targets)`` views); ``logits`` (N, K) cover every view."""
    log_probs = [F.log_softmax(s / temperature, dim=-1) for s in logits]
    terms = [
        -(q * log_probs[v]).sum(-1).mean() for i, q in enumerate(targets) for v in range(len(logits)) if v != i
    ]
    return torch.stack(terms).mean()


def dino_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's loss over views: ``student`` logits (N, K) for every view, ``teacher`` logits for
    the global views (``teacher[i]`` is view ``i``). Teacher targets are
    ``softmax((t - center) / teacher_temp)`` with no gradient; same-view pairs are excluded."""
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher]
    return cross_view_cross_entropy(targets, student, student_temp)
