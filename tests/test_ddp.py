"""2 gloo processes on CPU: what DDP gathers equals the single-process result on the whole batch,
and a DDP pretraining run (torchrun, 2 processes) resumes like a single-process one."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import ddp_checks
from ddp_checks import fixed

ROOT = Path(__file__).resolve().parent.parent


def run_ddp(check: str, tmp_path: Path, world: int = 2) -> list[dict[str, torch.Tensor]]:
    """Run ``ddp_checks.CHECKS[check]`` in ``world`` processes; return each rank's outputs."""
    mp.spawn(ddp_checks.worker, args=(world, str(tmp_path / "init"), str(tmp_path), check), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


def test_nt_xent_negatives_are_gathered(tmp_path):
    from ssl4rl.losses import nt_xent

    ranks = run_ddp("nt_xent", tmp_path)
    z1, z2 = (t.clone().requires_grad_() for t in fixed())
    full = nt_xent(z1, z2, 0.5)
    full.backward()
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), full.detach())
    # each rank's local loss covers half the queries: its gradient is half the full one's
    torch.testing.assert_close(torch.cat([r["grad1"] for r in ranks]) / 2, z1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.cat([r["grad2"] for r in ranks]) / 2, z2.grad, rtol=1e-4, atol=1e-6)


def test_queue_receives_every_rank_keys(tmp_path):
    from ssl4rl.parts.momentum import Queue

    ranks = run_ddp("queue", tmp_path)
    torch.manual_seed(0)
    q = Queue(size=12, dim=fixed()[0].shape[1])
    q.push(fixed()[0])
    for r in ranks:
        torch.testing.assert_close(r["items"], q.items)
        assert int(r["ptr"]) == int(q.ptr) == 8


def test_memory_bank_receives_every_rank_update(tmp_path):
    from ssl4rl.parts.momentum import MemoryBank

    ranks = run_ddp("memory_bank", tmp_path)
    torch.manual_seed(0)
    bank = MemoryBank(num_samples=20, dim=fixed()[0].shape[1])
    bank.update(torch.arange(8) * 2, fixed()[0])
    for r in ranks:
        torch.testing.assert_close(r["bank"], bank.bank)


@pytest.mark.parametrize("check", ["barlow", "vicreg"])
def test_batch_statistics_are_gathered(check, tmp_path):
    """Each rank's loss is the whole-batch loss; after DDP's gradient averaging each rank's
    gradient is the whole-batch gradient of its rows."""
    from ssl4rl.losses.barlow import barlow_twins_loss
    from ssl4rl.losses.vicreg import vicreg_loss

    ranks = run_ddp(check, tmp_path)
    z1, z2 = (t.clone().requires_grad_() for t in fixed())
    full, _ = {"barlow": barlow_twins_loss, "vicreg": vicreg_loss}[check](z1, z2)
    full.backward()
    for r in ranks:
        torch.testing.assert_close(r["loss"], full.detach())
    torch.testing.assert_close(torch.cat([r["grad1"] for r in ranks]) / 2, z1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.cat([r["grad2"] for r in ranks]) / 2, z2.grad, rtol=1e-4, atol=1e-6)


def test_sinkhorn_assignments_are_global(tmp_path):
    from ssl4rl.losses.swav import sinkhorn

    ranks = run_ddp("sinkhorn", tmp_path)
    torch.testing.assert_close(torch.cat([r["codes"] for r in ranks]), sinkhorn(fixed()[0], epsilon=0.5, iters=3))


def test_dino_centre_mean_is_global(tmp_path):
    ranks = run_ddp("dino_center", tmp_path)
    for r in ranks:
        torch.testing.assert_close(r["mean"], fixed()[0].mean(0, keepdim=True))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, kill_at_step: int = -1) -> subprocess.CompletedProcess:
    script = ["tests/kill_at.py", str(kill_at_step), "pretrain/run.py"] if kill_at_step >= 0 else ["pretrain/run.py"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           *script, *args, "progress=false", "device=cpu"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_torchrun_pretraining_resumes_like_one_process(tiny_dataset, tmp_path):
    from safetensors.torch import load_file

    common = ["method=simclr", f"data.path={tiny_dataset}", "method.batch_size=8", "ckpt_every=2",
              "backbone=vit_tiny", "backbone.image_size=32", "backbone.embed_dim=32", "backbone.depth=1",
              "backbone.num_heads=2", "method.proj_hidden=32", "method.proj_dim=16"]
    full = _torchrun(*common, "steps=4", f"out={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-3000:]
    part = _torchrun(*common, "steps=4", f"out={tmp_path / 'split'}", kill_at_step=2)  # rank 0 SIGKILLed after step 2
    assert part.returncode != 0 and not (tmp_path / "split" / "results.json").exists()
    rest = _torchrun(*common, "steps=4", f"out={tmp_path / 'split'}")
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "resumed" in (tmp_path / "split" / "log.txt").read_text()
    a = load_file(str(tmp_path / "full" / "encoder" / "encoder.safetensors"))
    b = load_file(str(tmp_path / "split" / "encoder" / "encoder.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # refuse a batch the processes cannot split evenly
    bad = _torchrun(*[c for c in common if not c.startswith("method.batch_size")], "method.batch_size=7", "steps=1",
                    f"out={tmp_path / 'bad'}")
    assert bad.returncode != 0 and "divisible" in bad.stderr  # torchrun reports a failed child as 1
