"""Replay memory per 100k transitions: ssl4rl's FrameReplayBuffer (each frame once) vs SB3's ReplayBuffer.

    python benchmarks/replay_memory.py                      # (9, 64, 64) and (9, 84, 84), 3000 transitions each
    python benchmarks/replay_memory.py --transitions 500    # a quick look

FrameReplayBuffer is filled with ``--transitions`` real random-policy cartpole transitions (frame stack 3, two
envs, episodes of 125 agent steps) added as SB3's ``_store_transition`` adds them; the bytes it uses (frames
stored, plus the per-transition rows) are extrapolated to 100k transitions. "allocated" is what a 100k buffer
allocates (its frame store holds 5/4 frames per transition). SB3's figure is the ``nbytes`` of the arrays a
1000-transition ReplayBuffer allocates, times 100 (it is linear in the size).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssl4rl  # noqa: F401
import numpy as np
from _common import header
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env

from ssl4rl.agents.replay import FrameReplayBuffer
from ssl4rl.envs import make_env

PER = 100_000
SB3_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def fill(size: int, transitions: int, n_envs: int = 2) -> FrameReplayBuffer:
    """A FrameReplayBuffer filled with ``transitions`` random-policy cartpole transitions."""
    venv = make_vec_env(lambda: make_env("dmc_cartpole", frame_stack=3, image_size=size), n_envs=n_envs, seed=0)
    buf = FrameReplayBuffer(transitions, venv.observation_space, venv.action_space, "cpu", n_envs)
    venv.action_space.seed(0)
    obs = venv.reset()
    for _ in range(transitions // n_envs):
        action = np.stack([venv.action_space.sample() for _ in range(n_envs)])
        new_obs, reward, done, infos = venv.step(action)
        next_obs = new_obs.copy()
        for i in np.flatnonzero(done):
            next_obs[i] = infos[i]["terminal_observation"]
        buf.add(obs, next_obs, action, reward, done, infos)
        obs = new_obs
    venv.close()
    return buf


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transitions", type=int, default=3000, help="cartpole transitions stored per image size")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 84])
    a = p.parse_args()
    rows = []
    for size in a.sizes:
        buf = fill(size, a.transitions)
        frame = int(np.prod(buf.frame_shape))
        row_bytes = sum(getattr(buf, k).nbytes for k in ("actions", "rewards", "dones", "timeouts", "obs_ids", "next_ids"))
        used = (buf.frame_count * frame + row_bytes) / a.transitions * PER
        allocated = FrameReplayBuffer(PER, buf.observation_space, buf.action_space, "cpu", buf.n_envs).nbytes  # lazy pages
        sb3_small = ReplayBuffer(1000, buf.observation_space, buf.action_space, "cpu", buf.n_envs)
        sb3 = sum(getattr(sb3_small, k).nbytes for k in SB3_FIELDS) * (PER // 1000)
        assert sb3 == FrameReplayBuffer.sb3_nbytes(PER, buf.observation_space, buf.action_space, buf.n_envs)
        rows.append((buf.observation_space.shape, sb3, allocated, used, buf.frame_count / a.transitions))
    print(header(f"Replay memory per {PER:,} transitions, FrameReplayBuffer vs SB3 ReplayBuffer"))
    print(f"FrameReplayBuffer filled with {a.transitions} random-policy dmc_cartpole transitions (2 envs, frame stack 3), "
          f"extrapolated to {PER:,}; SB3 from the nbytes of its allocated arrays.\n")
    print("| obs shape | SB3 ReplayBuffer | FrameReplayBuffer allocated | FrameReplayBuffer used (measured) "
          "| frames stored / transition | SB3 / allocated |")
    print("|---|---|---|---|---|---|")
    for shape, sb3, allocated, used, per_transition in rows:
        print(f"| {shape} | {mib(sb3)} | {mib(allocated)} | {mib(used)} | {per_transition:.3f} | {sb3 / allocated:.1f}x |")


if __name__ == "__main__":
    main()
