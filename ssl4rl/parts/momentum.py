"""Momentum mechanics: EMA teachers, momentum schedules, a FIFO queue and a memory bank.

All state lives in buffers, so it is saved with the method's ``state_dict`` and restored
exactly on resume. Updates happen only in a method's ``after_step`` hook, never in validation.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ssl4rl.parts.dist import gather_nograd


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with ``requires_grad=False`` everywhere (a momentum teacher)."""
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter.

    Buffers (e.g. BatchNorm statistics) are copied from the student.
    """
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
        tb.copy_(sb)


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL/DINO schedule: ``final - (final - base) * (cos(pi * step / total) + 1) / 2``."""
    progress = min(1.0, step / max(1, total_steps))
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


class Queue(nn.Module):
    """A FIFO queue of ``size`` vectors of ``dim`` (MoCo's negatives), filled from every process."""

    def __init__(self, size: int, dim: int, normalize: bool = True) -> None:
        super().__init__()
        init = torch.randn(size, dim)
        self.register_buffer("items", nn.functional.normalize(init, dim=1) if normalize else init)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Enqueue (N, dim) vectors, gathered across processes, overwriting the oldest."""
        x = gather_nograd(x.detach())
        size = self.items.shape[0]
        x = x[-size:]
        idx = (self.ptr + torch.arange(x.shape[0], device=x.device)) % size
        self.items[idx] = x
        self.ptr.copy_((self.ptr + x.shape[0]) % size)


class MemoryBank(nn.Module):
    """One vector per training sample, updated with momentum (NPID's memory bank)."""

    def __init__(self, num_samples: int, dim: int, momentum: float = 0.5) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("bank", nn.functional.normalize(torch.randn(num_samples, dim), dim=1))

    @torch.no_grad()
    def update(self, index: torch.Tensor, x: torch.Tensor) -> None:
        """bank[i] <- normalise(m * bank[i] + (1 - m) * x) for the (gathered) samples ``index``."""
        index, x = gather_nograd(index), gather_nograd(x.detach())
        # a batch drawn with replacement can repeat an index: keep its last occurrence (deterministic on CUDA)
        last = torch.full((self.bank.shape[0],), -1, dtype=torch.long, device=index.device)
        last.scatter_reduce_(0, index, torch.arange(len(index), device=index.device), reduce="amax")
        keep = last[index] == torch.arange(len(index), device=index.device)
        index, x = index[keep], x[keep]
        mixed = self.momentum * self.bank[index] + (1 - self.momentum) * x
        self.bank[index] = nn.functional.normalize(mixed, dim=1)
