"""Runs survive interruption: agent checkpoints resume bit-identically, in-process and after SIGKILL."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from gymnasium import spaces

from ssl4rl.agents import checkpoint, train_agent
from ssl4rl.config import AgentConfig, TrainConfig
from ssl4rl.encoders import build_encoder, save_encoder
from ssl4rl.envs import make_env

ROOT = Path(__file__).resolve().parent.parent
# 300 agent steps: two cartpole episodes end (125 agent steps each) and checkpoints fall inside episodes
TINY_SAC = dict(steps=8 * 300, agent=AgentConfig(learning_starts=20, batch_size=16, net_arch=[16, 16], proj_dim=8),
                eval_every=8 * 100, eval_episodes=1, video=False, ckpt_every=8 * 70, device="cpu", progress=False)


def _tiny_sac(encoder: str, out: Path, **extra) -> TrainConfig:
    return TrainConfig(env="dmc_cartpole", encoder=encoder, out=str(out), **TINY_SAC, **extra)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _encoder(tmp_path: Path) -> str:
    torch.manual_seed(0)
    enc = build_encoder("vit", image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")
    save_encoder(enc, tmp_path / "enc", method="test")
    return str(tmp_path / "enc")


@pytest.mark.parametrize("kind", ["frozen", "state", "cnn"])
def test_agent_interrupted_after_a_checkpoint_resumes_bit_identical(kind, tmp_path, monkeypatch):
    encoder = {"frozen": lambda: _encoder(tmp_path), "state": lambda: "state", "cnn": lambda: "cnn"}[kind]()
    extra = {"image_size": 40} if kind == "cnn" else {}
    whole = train_agent(_tiny_sac(encoder, tmp_path / "whole", **extra))
    saves, real_save = [], checkpoint.save

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_agent(_tiny_sac(encoder, tmp_path / "cut", **extra))
    monkeypatch.setattr(checkpoint, "save", real_save)
    resumed = train_agent(_tiny_sac(encoder, tmp_path / "cut", **extra))
    assert _sha(tmp_path / "cut" / "policy.safetensors") == _sha(tmp_path / "whole" / "policy.safetensors")
    assert resumed["eval_returns"] == whole["eval_returns"] and resumed["evals"] == whole["evals"]
    assert resumed["resumed_at_env_steps"] == [8 * 140] and whole["resumed_at_env_steps"] == []
    assert not (tmp_path / "cut" / checkpoint.CHECKPOINT).exists()  # a finished run keeps its outputs only


def test_pixel_replay_stores_each_frame_once_and_round_trips():
    env = make_env("dmc_cartpole", image_size=16, frame_stack=3)
    buf = ReplayBuffer(60, env.observation_space, env.action_space, n_envs=1)
    obs, _ = env.reset(seed=0)
    for t in range(90):  # wraps around; two episode starts (reset every 40 steps)
        action = env.action_space.sample()
        nxt, r, term, trunc, _ = env.step(action)
        done = t % 40 == 39
        buf.add(obs[None], nxt[None], action[None], np.array([r]), np.array([done]), [{}])
        obs = env.reset(seed=t)[0] if done else nxt
    packed = checkpoint._pack_buffer(buf)
    assert "observations" not in packed and packed["obs.newest"].shape[2] == 3  # one frame per step
    assert len(packed["obs.heads"]) == 3  # full stacks only where the history is missing: oldest, 2 resets
    assert len(packed["next.newest"]) == 3 and len(packed["next.heads"]) == 0  # 2 episode ends, the newest row
    stored = sum(a.nbytes for k, a in packed.items() if k.startswith(("obs.", "next.")) and a.dtype == np.uint8)
    assert stored < 0.25 * (buf.observations.nbytes + buf.next_observations.nbytes)  # not 2 stacks of 3 per step
    copy = ReplayBuffer(60, env.observation_space, env.action_space, n_envs=1)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"replay-{os.getpid()}.npz"
    with open(path, "wb") as f:
        np.savez(f, **packed)
    try:
        checkpoint._unpack_buffer(path, copy)
    finally:
        path.unlink()
    for name in ("observations", "next_observations", "actions", "rewards", "dones"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(buf, name))
    assert (copy.pos, copy.full) == (buf.pos, buf.full)
    env.close()


def test_replay_file_claiming_a_huge_array_is_refused_before_loading(tmp_path):
    space = spaces.Box(-1, 1, (4,), np.float32)
    buf = ReplayBuffer(10, space, space, n_envs=1)
    path = tmp_path / "replay.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)}
    import zipfile

    with zipfile.ZipFile(path, "w") as z, z.open("observations.npy", "w") as f:
        np.lib.format.write_array_header_2_0(f, header)
    with pytest.raises(Exception) as e:
        checkpoint._unpack_buffer(path, buf)
    assert "does not fit a replay buffer" in str(e.value)


def _run_until_killed(args: list[str], marker: Path, delay: float) -> None:
    """Start an entry point; SIGKILL it ``delay`` seconds after ``marker`` first exists (or when it ends)."""
    proc = subprocess.Popen([sys.executable, *args, "progress=false"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_agent_killed_at_random_points_ends_like_an_uninterrupted_run(tmp_path):
    enc = _encoder(tmp_path)
    args = ["agents/train.py", "env=dmc_cartpole", f"encoder={enc}", "steps=2400", "ckpt_every=240", "eval_every=800",
            "eval_episodes=1", "video=false", "agent.learning_starts=20", "agent.batch_size=16",
            "agent.net_arch=[16,16]", "agent.proj_dim=8", "device=cpu"]
    subprocess.run([sys.executable, *args, f"out={tmp_path / 'whole'}", "progress=false"], cwd=ROOT, check=True,
                   capture_output=True)
    rng = random.Random(0)
    for _ in range(3):  # kill at a random moment after a checkpoint exists, then rerun the same command
        _run_until_killed([*args, f"out={tmp_path / 'cut'}"], tmp_path / "cut" / checkpoint.CHECKPOINT, rng.uniform(0, 2))
    done = subprocess.run([sys.executable, *args, f"out={tmp_path / 'cut'}", "progress=false"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _sha(tmp_path / "cut" / "policy.safetensors") == _sha(tmp_path / "whole" / "policy.safetensors")
    results = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert results["resumed_at_env_steps"], "the run was never interrupted after a checkpoint"
    assert "resumed from" in (tmp_path / "cut" / "log.txt").read_text()
    assert not list((tmp_path / "cut").glob(".*.tmp")) and not list((tmp_path / "cut").glob("checkpoint.*"))


def test_resume_with_other_settings_is_refused(tmp_path):
    enc = _encoder(tmp_path)
    args = ["agents/train.py", "env=dmc_cartpole", f"encoder={enc}", "steps=2400", "ckpt_every=240", "eval_every=0",
            "eval_episodes=1", "video=false", "agent.learning_starts=20", "agent.batch_size=16", "device=cpu",
            f"out={tmp_path / 'r'}"]
    _run_until_killed(args, tmp_path / "r" / checkpoint.CHECKPOINT, 0)
    before = {p: _sha(p) for p in (tmp_path / "r").rglob("*") if p.is_file()}
    p = subprocess.run([sys.executable, *args, "agent.learning_rate=0.001", "steps=4800"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert "agent.learning_rate" in p.stderr and "steps" in p.stderr and "progress, video" in p.stderr
    assert {p: _sha(p) for p in (tmp_path / "r").rglob("*") if p.is_file()} == before


def test_pretraining_killed_at_random_points_ends_like_an_uninterrupted_run(tmp_path, tiny_dataset):
    args = ["pretrain/run.py", "method=simclr", f"data.path={tiny_dataset}", "steps=24", "ckpt_every=3",
            "method.batch_size=8", "backbone.image_size=32", "backbone.embed_dim=32", "backbone.depth=1",
            "backbone.num_heads=2", "device=cpu"]
    subprocess.run([sys.executable, *args, f"out={tmp_path / 'whole'}", "progress=false"], cwd=ROOT, check=True,
                   capture_output=True)
    rng = random.Random(1)
    for _ in range(3):
        _run_until_killed([*args, f"out={tmp_path / 'cut'}"], tmp_path / "cut" / "checkpoint.pt", rng.uniform(0, 1.5))
    done = subprocess.run([sys.executable, *args, f"out={tmp_path / 'cut'}", "progress=false"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in (tmp_path / "cut" / "log.txt").read_text()
    weights = "encoder/encoder.safetensors"
    assert _sha(tmp_path / "cut" / weights) == _sha(tmp_path / "whole" / weights)
    assert not list((tmp_path / "cut").rglob(".*.tmp"))
