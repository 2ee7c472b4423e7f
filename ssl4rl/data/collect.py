"""Collect frame datasets from an environment under a random policy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gymnasium as gym
import numpy as np

from ssl4rl.data.episodes import MAX_STEPS, Episode, save_episode
from ssl4rl.envs import episode_steps as default_episode_steps
from ssl4rl.envs import env_names, has_rewards, make_env
from ssl4rl.errors import UserError
from ssl4rl.fields import MAX_RUN_STEPS, device_field, seed_field, setting, validate
from ssl4rl.runs import claimed_run_dir
from ssl4rl.utils import progress_bar, write_json

_NO_PHYSICS = np.zeros(0, np.float64)  # the physics row of an env without a MuJoCo state


def action_space_meta(space: gym.Space) -> dict:
    """``{"type": "discrete", "n": N}`` or ``{"type": "box", "dim": A}``: how an episode file's action rows read."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    return {"type": "box", "dim": int(np.prod(space.shape))}


def action_row(space: gym.Space, action: np.ndarray | int) -> np.ndarray:
    """An action as the float32 row stored in episode files: one-hot for a discrete space, as is for a box."""
    if isinstance(space, gym.spaces.Discrete):
        row = np.zeros(int(space.n), np.float32)
        row[int(action) - int(space.start)] = 1.0
        return row
    return np.asarray(action, np.float32)


@dataclass
class CollectConfig:
    """Settings of ``envs/collect.py`` (and of ``collect``, which validates its arguments through it)."""

    env: str = setting("dmc_cartpole", choices=env_names)
    episodes: int = setting(20, ge=1, le=10**7)
    # environment steps to collect; overrides episodes (episode_steps x action repeat each)
    steps: Optional[int] = setting(None, ge=1, le=MAX_RUN_STEPS)
    # agent steps per episode; None: the env's (dm_control 1000 env steps, blocks 100)
    episode_steps: Optional[int] = setting(None, ge=1, le=10**6)
    image_size: Optional[int] = setting(None, ge=16, le=1024)  # None: the env's default (84 dm_control, 50 blocks)
    camera: int = setting(0, ge=0, le=64)
    fast_render: bool = True  # false: shadows, reflections, multisampling (dm_control's look)
    out: str = "data/${env}"
    seed: int = seed_field()
    device: str = device_field()
    progress: bool = True


def collect(
    env: str,
    episodes: int,
    out: str | Path,
    seed: int = 0,
    image_size: int | None = None,
    camera: int = 0,
    fast_render: bool = True,
    progress: bool = True,
    episode_steps: int | None = None,
) -> dict:
    """Roll out a uniform random policy (with the task's action repeat) and save episodes.

    ``image_size`` None: the env's default (84 for dm_control, 50 for block envs). ``episode_steps``: agent steps
    per episode (None: the env's default length, see ``ssl4rl.envs.episode_steps``; a dm_control episode cannot be
    longer). Returns the dataset's meta dict, also written to ``out/meta.json``.
    """
    validate(CollectConfig(env=env, episodes=episodes, episode_steps=episode_steps, image_size=image_size, camera=camera,
                           fast_render=fast_render, out=str(out), seed=seed, progress=progress))
    blocks = not has_rewards(env)
    default = default_episode_steps(env)
    longest = MAX_STEPS if blocks else default  # a dm_control task ends by itself after `default` agent steps
    if episode_steps is not None and not 1 <= episode_steps <= longest:
        raise UserError(f"episode_steps={episode_steps}: {env} episodes have 1 to {longest} agent steps; "
                        f"use a number in that range (or leave it out for {default})")
    steps = episode_steps or default
    options = {"max_steps": steps} if blocks else {}
    e = make_env(env, image_size=image_size, camera=camera, frame_stack=1, fast_render=fast_render, seed=seed, **options)
    # out= is claimed as by the command line: a finished dataset is never overwritten, two processes never share it
    with claimed_run_dir(out, log_file=False) as (out, _):
        e.action_space.seed(seed)
        t0 = time.time()
        n_frames = 0
        returns = []
        for i in progress_bar(iterable=range(episodes), desc=f"collect {env}", unit="ep", disable=not progress):
            obs, info = e.reset(seed=seed + i)
            frames, states, physics = [obs], [info["state"]], [info.get("physics", _NO_PHYSICS)]
            actions, rewards, discounts = [], [], []
            done = False
            while not done:
                a = e.action_space.sample()
                obs, r, term, trunc, info = e.step(a)
                frames.append(obs)
                states.append(info["state"])
                physics.append(info.get("physics", _NO_PHYSICS))
                actions.append(action_row(e.action_space, a))
                rewards.append(r)
                discounts.append(info["discount"])
                done = term or trunc or len(actions) == steps
            ep = Episode(
                frames=np.stack(frames),
                actions=np.stack(actions),
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
            "episode_steps": steps,
            "image_size": e.image_size,
            "camera": None if blocks else camera,
            "action_repeat": e.action_repeat,
            "state_dim": e.state_dim,
            "state_names": e.state_names,
            "action_dim": int(ep.actions.shape[1]),
            "action_space": action_space_meta(e.action_space),
            "rewards": not blocks,
            "policy": "uniform random",
            "seed": seed,
            "mean_return": float(np.mean(returns)),
            "seconds": round(time.time() - t0, 2),
        }
        write_json(out / "meta.json", meta)
        return meta
