"""Environments: the six PlaNet dm_control tasks, from pixels or from state, and the C-SWM block-pushing envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from ssl4rl.envs.blocks import DEFAULT_MAX_STEPS, BlockPushingEnv, Cubes3D, Shapes2D
from ssl4rl.envs.dmc import DMCEnv, FastRenderer, flatten_observation
from ssl4rl.errors import UserError
from ssl4rl.fields import SEED_MAX

# name -> (domain, task, action repeat); the PlaNet/CURL/DrQ benchmark protocol.
TASKS: dict[str, tuple[str, str, int]] = {
    "dmc_cartpole": ("cartpole", "swingup", 8),
    "dmc_walker": ("walker", "walk", 2),
    "dmc_cheetah": ("cheetah", "run", 4),
    "dmc_reacher": ("reacher", "easy", 4),
    "dmc_finger": ("finger", "spin", 2),
    "dmc_cup": ("ball_in_cup", "catch", 4),
    # sibling task: the pole starts upright, so frames show the states swingup must reach
    "dmc_cartpole_balance": ("cartpole", "balance", 8),
}
# name -> env class; block pushing on a 5x5 grid (C-SWM): discrete actions, no rewards, action repeat 1.
BLOCK_ENVS: dict[str, type[BlockPushingEnv]] = {"shapes2d": Shapes2D, "cubes3d": Cubes3D}
DMC_EPISODE_ENV_STEPS = 1000  # every dm_control suite task above ends after 1000 env steps
_BLOCK_IGNORED = ("camera", "fast_render")  # make_env options of dm_control that mean nothing for block envs


def check_env_name(name: str) -> tuple[str, str, int]:
    """Return (domain, task, action_repeat) for a registered name (``('blocks', name, 1)`` for a block env), or raise
    a one-line error listing every valid name."""
    if name in BLOCK_ENVS:
        return ("blocks", name, 1)
    if name not in TASKS:
        raise UserError(f"unknown env '{name}'; valid names: {', '.join([*TASKS, *BLOCK_ENVS])}")
    return TASKS[name]


def env_names() -> tuple[str, ...]:
    """Every registered env name (dm_control tasks, then the block envs)."""
    return (*TASKS, *BLOCK_ENVS)


def has_rewards(name: str) -> bool:
    """Whether the env gives rewards (the block envs do not: reward-based agents must refuse them)."""
    check_env_name(name)
    return name not in BLOCK_ENVS


def check_dmc_task(name: str, what: str) -> tuple[str, str, int]:
    """``check_env_name`` for stages that need a dm_control task (rewards, continuous actions, physics): a block env
    is refused in one line naming ``what`` needs and the valid names."""
    spec = check_env_name(name)
    if spec[0] == "blocks":
        raise UserError(f"env={name}: {what} needs a dm_control task (rewards, continuous actions); valid: {', '.join(TASKS)}")
    return spec


def episode_steps(name: str) -> int:
    """Agent steps in one episode at the env's default length (dm_control: 1000 env steps; block envs: 100)."""
    domain, _, action_repeat = check_env_name(name)
    return DEFAULT_MAX_STEPS if domain == "blocks" else DMC_EPISODE_ENV_STEPS // action_repeat


def make_env(name: str, **overrides: Any) -> gym.Env:
    """Build a registered env, e.g. ``make_env('dmc_walker', image_size=64, obs_type='state')``.

    dm_control overrides: ``image_size`` (84), ``camera`` (0), ``frame_stack`` (3),
    ``action_repeat`` (the task's standard), ``obs_type`` ('pixels' | 'state'),
    ``fast_render`` (True), ``seed`` (None).
    Block envs (``shapes2d``, ``cubes3d``): ``image_size`` (50, a multiple of 5: the cell size is
    ``image_size // 5``), ``frame_stack`` (1), ``max_steps`` (100 agent steps per episode), ``obs_type``,
    ``seed``; ``camera`` and ``fast_render`` are accepted and ignored, ``action_repeat`` must be 1.
    """
    domain, task, action_repeat = check_env_name(name)
    seed = overrides.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX):
        raise UserError(f"seed={seed!r}: must be an integer in 0..{SEED_MAX}")
    kwargs: dict[str, Any] = {"action_repeat": action_repeat}
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    try:
        if domain != "blocks":
            return DMCEnv(domain, task, **kwargs)
        if kwargs.pop("action_repeat") != 1:
            raise UserError(f"action_repeat={overrides['action_repeat']!r}: block envs move one object per step; use 1")
        return BLOCK_ENVS[name](**{k: v for k, v in kwargs.items() if k not in _BLOCK_IGNORED})
    except TypeError as e:
        raise UserError(f"bad option for make_env('{name}'): {e}") from None


__all__ = ["BLOCK_ENVS", "TASKS", "BlockPushingEnv", "Cubes3D", "DMCEnv", "FastRenderer", "Shapes2D", "check_dmc_task",
           "check_env_name", "env_names",
           "episode_steps", "flatten_observation", "has_rewards", "make_env"]
