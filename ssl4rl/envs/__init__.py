"""Environments: the six PlaNet dm_control tasks, from pixels or from state."""

from __future__ import annotations

from typing import Any

from ssl4rl.envs.dmc import DMCEnv, FastRenderer, flatten_observation
from ssl4rl.errors import UserError

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


def check_env_name(name: str) -> tuple[str, str, int]:
    """Return (domain, task, action_repeat) for a registered name, or raise a one-line error."""
    if name not in TASKS:
        raise UserError(f"unknown env '{name}'; valid names: {', '.join(TASKS)}")
    return TASKS[name]


def make_env(name: str, **overrides: Any) -> DMCEnv:
    """Build a registered task, e.g. ``make_env('dmc_walker', image_size=64, obs_type='state')``.

    Overrides: ``image_size`` (84), ``camera`` (0), ``frame_stack`` (3),
    ``action_repeat`` (the task's standard), ``obs_type`` ('pixels' | 'state'),
    ``fast_render`` (True), ``seed`` (None).
    """
    domain, task, action_repeat = check_env_name(name)
    kwargs: dict[str, Any] = {"action_repeat": action_repeat}
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DMCEnv(domain, task, **kwargs)
    except TypeError as e:
        raise UserError(f"bad option for make_env('{name}'): {e}") from None


__all__ = ["TASKS", "DMCEnv", "FastRenderer", "check_env_name", "flatten_observation", "make_env"]
