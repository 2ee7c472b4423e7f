"""torch.distributed helpers that are no-ops in a single process.

Losses that need negatives or batch statistics call ``gather`` (with gradients flowing back
to the local part) so the same code runs on one CPU and on many processes (DDP).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N, ...) from every process along dim 0, in rank order.

    Gradients flow back to each process's own slice (``torch.distributed.nn.all_gather``).
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x.contiguous())


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient and keeps this process's slice."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


@torch.no_grad()
def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """``gather`` without gradient tracking (keys for queues, statistics)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (in place on a copy); identity in one process."""
    if not is_distributed():
        return x
    y = x.clone()
    dist.all_reduce(y)
    return y / world_size()


def rank_offset(n_local: int) -> int:
    """Index of this process's first sample in a gathered batch of equal local sizes."""
    return rank() * n_local


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average gradients over processes (one flat all-reduce); no-op in one process."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, CUDA means this process's own GPU (``LOCAL_RANK``); otherwise ``device``."""
    import os

    if device.type == "cuda" and device.index is None and is_distributed():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def any_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any process (so every process can stop together)."""
    if not is_distributed():
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


@torch.no_grad()
def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (e.g. normalisation statistics); no-op in one process."""
    if not is_distributed():
        return
    for b in module.buffers():
        dist.broadcast(b, src=0)


def from_rank0(value: str) -> str:
    """Rank 0's ``value`` on every process (e.g. a run folder, or an error every process must raise)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def init_from_env(device_type: str) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); gloo on CPU, nccl on CUDA.
    Returns True when running distributed."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return is_distributed()
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return True
