"""Diagnostic: the CPU-sized conv trained with privileged labels (true pose), then frozen under SAC. It separates the
two halves of the pixel arms' plateau near 200 on cartpole_swingup: if frozen per-frame features that carry the
pose precisely let SAC balance the pole, the architecture (per-frame conv, 7x7 maps, frame stack 3) is enough and
the weak part is how the critic or an SSL loss trains it; if not, the architecture or frame stack is the limit.

    python benchmarks/oracle_encoder.py                      # train (about 3 min), save, then 3 seeds of frozen SAC
    python benchmarks/oracle_encoder.py --seeds 0 --steps 1000

The encoder (``agent.backbone`` of ``agent=drq``: 3 stride-2 convs, 16 channels, 64 px, 50-d LayerNorm + tanh
features) and a linear read-out learn to regress each frame's pose (cart position, cos and sin of the pole angle,
standardised) from the random-policy swingup and balance frames of the benchmark's frame set (the same frames the
MoCo encoder of ``benchmarks/ssl_control.py`` saw); the read-out is dropped and the encoder saved through the
encoder contract, with ``method=oracle_pose``. It is an upper-bound row, not an arm: it uses labels no agent has.
Velocity is not a label; SAC gets it, as every frozen arm does, from the three stacked frames' features.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import ROOT, header
from ssl4rl.config import AgentConfig
from ssl4rl.encoders import build_encoder, save_encoder

POSE = slice(0, 3)  # cartpole's state: position[0] (cart x), position[1:3] (cos, sin of the pole angle), velocities
IN_VIEW = 1.2  # |cart x| below which camera 0 shows the whole cart and pole


def load_frames(folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Every frame (N, 3, H, W) uint8 and its pose (N, 3) float32 from collected episode folders."""
    frames, poses = [], []
    for folder in folders:
        for path in sorted(folder.glob("episode_*.npz")):
            with np.load(path, allow_pickle=False) as d:
                frames.append(d["frames"])
                poses.append(d["states"][:, POSE])
    return np.concatenate(frames), np.concatenate(poses).astype(np.float32)


def train_oracle(folders: list[Path], out: Path, steps: int, batch: int, seed: int) -> dict[str, float]:
    """Regress pose from single frames with the agents' CPU conv; save the encoder to ``out``; held-out R²."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    frames, poses = load_frames(folders)
    held = rng.random(len(frames)) < 0.1
    mean, std = poses[~held].mean(0), poses[~held].std(0) + 1e-6
    y = torch.from_numpy((poses - mean) / std)
    x = torch.from_numpy(frames)
    encoder = build_encoder(**AgentConfig().backbone)
    readout = nn.Linear(encoder.feature_dim, y.shape[1])
    opt = torch.optim.Adam([*encoder.parameters(), *readout.parameters()], lr=1e-3)
    train_idx = np.flatnonzero(~held)

    def predict(idx: np.ndarray) -> torch.Tensor:
        return readout(encoder(x[idx]))

    start = time.time()
    for step in range(steps):
        idx = rng.choice(train_idx, batch)
        loss = nn.functional.mse_loss(predict(idx), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    seconds = time.time() - start
    stats: dict[str, float] = {"train_seconds": seconds, "frames": int(len(frames))}
    # all held-out frames, and those with the cart well inside camera 0's view (it cuts the cart off near |x| = 1.66)
    for name, rows in (("", held), ("_in_view", held & (np.abs(poses[:, 0]) < IN_VIEW))):
        idx = np.flatnonzero(rows)
        with torch.no_grad():
            pred = torch.cat([predict(chunk) for chunk in np.array_split(idx, 8)])
        target = y[idx]
        r2 = 1 - ((pred - target) ** 2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)
        stats.update({f"r2_cart_x{name}": float(r2[0]), f"r2_cos{name}": float(r2[1]), f"r2_sin{name}": float(r2[2])})
        stats[f"held_frames{name}"] = int(len(idx))
    save_encoder(encoder, out, method="oracle_pose", note="supervised on true pose: a diagnostic, not SSL")
    return stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "oracle_encoder")
    p.add_argument("--data", type=Path, default=ROOT / "runs" / "ssl_control" / "data",
                   help="the benchmark's frame set (benchmarks/ssl_control.py --stages data makes it)")
    p.add_argument("--train-steps", type=int, default=3000)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000, help="env steps of each frozen SAC run")
    a = p.parse_args()
    folders = [a.data / "swingup", a.data / "balance"]
    missing = [str(f) for f in folders if not (f / "meta.json").exists()]
    if missing:
        sys.exit(f"error: no frame set at {', '.join(missing)}; make it with "
                 "`python benchmarks/ssl_control.py --stages data`")
    torch.set_num_threads(1)
    enc = a.out / "encoder"
    stats_path = a.out / "oracle.json"
    if not (enc / "encoder.json").exists():
        stats = train_oracle(folders, enc, a.train_steps, 128, 0)
        stats_path.write_text(json.dumps(stats, indent=1))
    stats = json.loads(stats_path.read_text())
    returns = []
    for seed in a.seeds:
        run = a.out / "sac" / f"s{seed}"
        if not (run / "results.json").exists():  # resumable: finished runs are skipped, others resume
            args = ["agents/train.py", "env=dmc_cartpole", "agent=sac", "agent.batch_size=64", "encoder_mode=frozen",
                    f"encoder={enc}", f"seed={seed}", f"steps={a.steps}", "eval_every=12500", "eval_episodes=10",
                    "video=false", "progress=false", f"out={run}"]
            print("$ python " + " ".join(args), flush=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True)
        returns.append(json.loads((run / "results.json").read_text())["eval_return_mean"])
    print(header("Frozen SAC on a pose-supervised CPU conv (privileged upper bound), cartpole_swingup"))
    print(f"- held-out pose R²: cart x {stats['r2_cart_x']:.3f}, cos {stats['r2_cos']:.3f}, sin {stats['r2_sin']:.3f} "
          f"({stats['frames']} frames, {stats['train_seconds']:.0f} s)")
    if "r2_cos_in_view" in stats:
        print(f"- the same on the {stats['held_frames_in_view']} held-out frames with |cart x| < {IN_VIEW}: cart x "
              f"{stats['r2_cart_x_in_view']:.3f}, cos {stats['r2_cos_in_view']:.3f}, sin {stats['r2_sin_in_view']:.3f}")
    spread = f" ± {statistics.stdev(returns):.1f}" if len(returns) > 1 else ""
    print(f"- frozen SAC return at {a.steps} env steps: {statistics.mean(returns):.1f}{spread} (n={len(returns)}; "
          f"seeds {a.seeds}: {', '.join(f'{r:.0f}' for r in returns)})")


if __name__ == "__main__":
    main()
