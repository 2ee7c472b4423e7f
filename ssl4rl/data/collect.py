"""Collect frame datasets from an environment under a random policy."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ssl4rl.data.episodes import Episode, save_episode
from ssl4rl.envs import make_env
from ssl4rl.errors import UserError
from ssl4rl.utils import progress_bar, write_json


def collect(
    env: str,
    episodes: int,
    out: str | Path,
    seed: int = 0,
    image_size: int = 84,
    camera: int = 0,
    fast_render: bool = True,
    progress: bool = True,
) -> dict:
    """Roll out a uniform random policy (with the task's action repeat) and save episodes.

    Returns the dataset's meta dict, also written to ``out/meta.json``.
    """
    if episodes < 1:
        raise UserError(f"episodes={episodes}: collect at least one episode")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    e = make_env(env, image_size=image_size, camera=camera, frame_stack=1, fast_render=fast_render, seed=seed)
    e.action_space.seed(seed)
    t0 = time.time()
    n_frames = 0
    returns = []
    for i in progress_bar(iterable=range(episodes), desc=f"collect {env}", unit="ep", disable=not progress):
        obs, info = e.reset(seed=seed + i)
        frames, states, physics = [obs], [info["state"]], [info["physics"]]
        actions, rewards, discounts = [], [], []
        done = False
        while not done:
            a = e.action_space.sample()
            obs, r, term, trunc, info = e.step(a)
            frames.append(obs)
            states.append(info["state"])
            physics.append(info["physics"])
            actions.append(a)
            rewards.append(r)
            discounts.append(info["discount"])
            done = term or trunc
        ep = Episode(
            frames=np.stack(frames),
            actions=np.asarray(actions, np.float32),
            rewards=np.asarray(rewards, np.float32),
            discounts=np.asarray(discounts, np.float32),
            states=np.stack(states).astype(np.float32),
            physics=np.stack(physics).astype(np.float64),
        )
        save_episode(out / f"episode_{i:06d}.npz", ep)
        n_frames += len(ep.frames)
        returns.append(float(ep.rewards.sum()))
    e.close()
    meta = {
        "env": env,
        "episodes": episodes,
        "frames": n_frames,
        "image_size": image_size,
        "camera": camera,
        "action_repeat": e.action_repeat,
        "state_dim": e.state_dim,
        "state_names": e.state_names,
        "action_dim": int(e.action_space.shape[0]),
        "policy": "uniform random",
        "seed": seed,
        "mean_return": float(np.mean(returns)),
        "seconds": round(time.time() - t0, 2),
    }
    write_json(out / "meta.json", meta)
    return meta
