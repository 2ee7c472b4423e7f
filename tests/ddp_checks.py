"""Functions run inside 2-process gloo groups by tests/test_ddp.py (importable by spawned workers).

Each check receives the rank's shard of one fixed batch and returns tensors that the test
compares with the single-process result on the whole batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

N, D = 8, 6  # whole batch, embedding size


def fixed(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views' embeddings (N, D) of one fixed batch."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g), torch.randn(N, D, generator=g)


def shard(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous slice of the batch."""
    n = x.shape[0] // world
    return x[rank * n : (rank + 1) * n]


def worker(rank: int, world: int, init_file: str, out_dir: str, check_name: str) -> None:
    """Join the group, run ``CHECKS[check_name]`` on this rank's shard, save its outputs."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = CHECKS[check_name](rank, world)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def check_nt_xent(rank: int, world: int) -> dict[str, torch.Tensor]:
    """SimCLR: each rank's loss uses all 2N views as negatives; the mean over ranks is the full loss,
    and the gradient w.r.t. the local embeddings equals the full-batch gradient slice (x world)."""
    from ssl4rl.losses import nt_xent

    z1, z2 = fixed()
    a, b = shard(z1, rank, world).requires_grad_(), shard(z2, rank, world).requires_grad_()
    loss = nt_xent(a, b, 0.5)
    loss.backward()
    return {"loss": loss.detach(), "grad1": a.grad, "grad2": b.grad}


def check_queue(rank: int, world: int) -> dict[str, torch.Tensor]:
    """MoCo: keys pushed by every rank land in the queue in rank order, on every rank."""
    from ssl4rl.parts.momentum import Queue

    torch.manual_seed(0)
    q = Queue(size=12, dim=D)
    z1, _ = fixed()
    q.push(shard(z1, rank, world))
    return {"items": q.items.clone(), "ptr": q.ptr.clone()}


def check_memory_bank(rank: int, world: int) -> dict[str, torch.Tensor]:
    """NPID: every rank's bank receives every rank's updates."""
    from ssl4rl.parts.momentum import MemoryBank

    torch.manual_seed(0)
    bank = MemoryBank(num_samples=20, dim=D)
    z1, _ = fixed()
    index = torch.arange(N) * 2
    bank.update(shard(index, rank, world), shard(z1, rank, world))
    return {"bank": bank.bank.clone()}


def _statistics_loss(loss_fn: Callable, rank: int, world: int) -> dict[str, torch.Tensor]:
    z1, z2 = fixed()
    a, b = shard(z1, rank, world).requires_grad_(), shard(z2, rank, world).requires_grad_()
    loss, _ = loss_fn(a, b)
    loss.backward()
    return {"loss": loss.detach(), "grad1": a.grad, "grad2": b.grad}


def check_barlow(rank: int, world: int) -> dict[str, torch.Tensor]:
    """Barlow Twins: the cross-correlation is computed over the gathered batch."""
    from ssl4rl.losses.barlow import barlow_twins_loss

    return _statistics_loss(barlow_twins_loss, rank, world)


def check_vicreg(rank: int, world: int) -> dict[str, torch.Tensor]:
    """VICReg: variance and covariance over the gathered batch."""
    from ssl4rl.losses.vicreg import vicreg_loss

    return _statistics_loss(vicreg_loss, rank, world)


def check_sinkhorn(rank: int, world: int) -> dict[str, torch.Tensor]:
    """SwAV: Sinkhorn-Knopp marginals summed over processes; each rank gets its rows of the codes."""
    from ssl4rl.losses.swav import sinkhorn

    z1, _ = fixed()
    return {"codes": sinkhorn(shard(z1, rank, world), epsilon=0.5, iters=3)}


def check_dino_center(rank: int, world: int) -> dict[str, torch.Tensor]:
    """DINO: the centre update uses the mean teacher output over every process."""
    from ssl4rl.parts.dist import all_reduce_mean

    z1, _ = fixed()
    return {"mean": all_reduce_mean(shard(z1, rank, world).mean(0, keepdim=True))}


CHECKS: dict[str, Callable[[int, int], dict[str, torch.Tensor]]] = {
    "nt_xent": check_nt_xent,
    "queue": check_queue,
    "memory_bank": check_memory_bank,
    "barlow": check_barlow,
    "vicreg": check_vicreg,
    "sinkhorn": check_sinkhorn,
    "dino_center": check_dino_center,
}
