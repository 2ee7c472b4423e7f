"""Optimisers and schedules for pretraining: AdamW, SGD or LARS; cosine decay with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ssl4rl.errors import UserError

OPTIMIZERS = ("adamw", "sgd", "lars")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017), as used by
    SimCLR, BYOL and Barlow Twins. Groups with ``lars_exclude=True`` (norms, biases) skip the
    trust ratio and weight decay adaptation."""

    def __init__(
        self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "lars_exclude": False}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update of every parameter with a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not group["lars_exclude"]:
                    d = d.add(p, alpha=group["weight_decay"])
                    p_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where((p_norm > 0) & (d_norm > 0), group["eta"] * p_norm / d_norm, torch.ones_like(p_norm))
                    d = d * trust
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.clone(d).detach()
                else:
                    buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(
    groups: list[dict[str, Any]], name: str, lr: float, momentum: float = 0.9, lars_eta: float = 1e-3
) -> torch.optim.Optimizer:
    """An optimiser over parameter groups (each may carry ``lr_scale``, ``weight_decay``, ``lars_exclude``)."""
    if lr <= 0 or not 0 <= momentum < 1 or any(g.get("weight_decay", 0) < 0 for g in groups):
        raise UserError(f"method.lr={lr}, method.momentum={momentum}: need lr > 0, 0 <= momentum < 1, weight_decay >= 0")
    groups = [dict(g, lr=lr * g.get("lr_scale", 1.0)) for g in groups if g["params"]]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=lars_eta)
    raise UserError(f"unknown optimizer '{name}'; valid: {', '.join(OPTIMIZERS)}")


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine-with-warm-up for every group except those marked ``fixed_lr`` (SimSiam's predictor)."""
    fns = [
        (lambda s: 1.0) if g.get("fixed_lr") else (lambda s: cosine_with_warmup(s, warmup, total))
        for g in opt.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(opt, fns)
