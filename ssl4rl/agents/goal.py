"""Goal-image planning: reach the configuration a goal frame shows by planning in a world model's latent space.

The cost is the latent distance to the encoded goal frame (no reward head): a candidate action sequence scores
``-sum_t ||z_t - z_goal||^2`` over its imagined states ``z_t = step(z_{t-1}, a_t)``, and the agent replans every
step (model-predictive control). Any world model with ``encode(uint8 frames) -> z`` and ``step(z, actions) -> z``
serves (C-SWM does).

Tasks (``GoalTask``):

- ``shapes2d`` / ``cubes3d``: the goal is the frame after ``goal_steps`` (5-10) random steps from the start; success
  means every object is at its goal cell within twice that many steps. Planning is exhaustive over the 20 discrete
  actions (``horizon`` <= 2) or categorical CEM.
- ``dmc_reacher``: the goal is a frame with the fingertip on the target (the arm is posed at random, the target is
  put under its fingertip, then the arm restarts from the episode's own pose); success means the fingertip is inside
  the target (dm_control's reward radius) within 50 agent steps. Planning is CEM over the 2-D torque.

A random policy is run on the same goals as the control.
"""

from __future__ import annotations

import abc
import time
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ssl4rl.config import GOAL_PLANNERS
from ssl4rl.envs import make_env
from ssl4rl.envs.blocks import BlockPushingEnv, N_ACTIONS
from ssl4rl.errors import UserError
from ssl4rl.planning import CEM, CategoricalCEM, check_rollout_memory, exhaustive_search
from ssl4rl.utils import checked_np_load


class LatentModel(Protocol):
    """What goal planning needs from a world model."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor: ...

    def step(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...


class GoalTask(abc.ABC):
    """One env with goals: ``start(i)`` poses goal ``i`` and returns (start frame, goal frame) as uint8 (3,H,W)."""

    discrete: bool
    action_dim: int
    budget: int  # agent steps allowed for the current goal

    @abc.abstractmethod
    def start(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Reset to goal ``i``'s start (seeded by ``i``); returns the start frame and the goal frame."""

    @abc.abstractmethod
    def act(self, action: Any) -> np.ndarray:
        """Take one agent step; returns the new frame."""

    @abc.abstractmethod
    def reached(self) -> bool:
        """Whether the goal is reached now."""

    @abc.abstractmethod
    def random_action(self, rng: np.random.Generator) -> Any:
        """A uniformly random action (the control policy)."""


class BlockGoals(GoalTask):
    """shapes2d / cubes3d: the goal is where ``goal_steps`` random moves take the objects; budget twice that."""

    discrete, action_dim = True, N_ACTIONS

    def __init__(self, env: str, image_size: int, seed: int, goal_steps: tuple[int, int] = (5, 10)) -> None:
        self.env: BlockPushingEnv = make_env(env, image_size=image_size, frame_stack=1)  # type: ignore[assignment]
        self.seed, self.goal_steps = seed, goal_steps
        self.goal: np.ndarray = np.zeros(0)
        self.budget = 0

    def start(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, i])
        obs, info = self.env.reset(seed=self.seed * 100_003 + i)
        start_state = info["state"].copy()
        n = int(rng.integers(self.goal_steps[0], self.goal_steps[1] + 1))
        info = {"state": start_state}
        while np.array_equal(info["state"], start_state):  # random moves that cancel out leave no goal: draw again
            self.env.set_state(start_state)
            for _ in range(n):
                goal_frame, _, _, _, info = self.env.step(int(rng.integers(N_ACTIONS)))
        self.goal, self.budget = info["state"].copy(), 2 * n
        self.env.set_state(start_state)
        return self.env.render().transpose(2, 0, 1), goal_frame

    def act(self, action: Any) -> np.ndarray:
        return self.env.step(int(action))[0]

    def reached(self) -> bool:
        return bool(np.array_equal(self.env.positions.ravel().astype(np.float32), self.goal))

    def random_action(self, rng: np.random.Generator) -> int:
        return int(rng.integers(N_ACTIONS))


class ReacherGoals(GoalTask):
    """dmc_reacher: the goal frame shows the fingertip on the target; 50 agent steps to get inside the target."""

    discrete = False

    def __init__(self, image_size: int, seed: int, budget: int = 50) -> None:
        self.env = make_env("dmc_reacher", image_size=image_size, frame_stack=1)
        self.action_dim = int(self.env.action_space.shape[0])
        self.seed, self.budget = seed, budget

    def start(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, i, 1])
        self.env.reset(seed=self.seed * 100_003 + i)
        physics = self.env.physics
        start_qpos = physics.data.qpos.copy()
        while True:  # a goal pose whose fingertip is where reacher-easy puts targets (5-20 cm from the centre)
            physics.data.qpos[:] = [rng.uniform(-np.pi, np.pi), rng.uniform(-2.8, 2.8)]
            physics.data.qvel[:] = 0
            physics.forward()
            tip = physics.named.data.geom_xpos["finger", :2].copy()
            if 0.05 <= np.linalg.norm(tip) <= 0.20:
                break
        physics.named.model.geom_pos["target", :2] = tip
        physics.forward()
        goal = self.env.render().transpose(2, 0, 1)
        physics.data.qpos[:] = start_qpos
        physics.data.qvel[:] = 0
        physics.forward()
        return self.env.render().transpose(2, 0, 1), goal

    def act(self, action: Any) -> np.ndarray:
        return self.env.step(np.asarray(action, np.float32))[0]

    def reached(self) -> bool:
        physics = self.env.physics
        radii = physics.named.model.geom_size[["target", "finger"], 0].sum()
        return bool(physics.finger_to_target_dist() <= radii)

    def random_action(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1, 1, self.action_dim).astype(np.float32)


GOAL_ENVS = ("shapes2d", "cubes3d", "dmc_reacher")


def make_goal_task(env: str, image_size: int, seed: int, goal_steps: tuple[int, int] = (5, 10)) -> GoalTask:
    """The goal task of ``env`` (one of ``GOAL_ENVS``)."""
    if env == "dmc_reacher":
        return ReacherGoals(image_size, seed)
    if env in ("shapes2d", "cubes3d"):
        return BlockGoals(env, image_size, seed, goal_steps)
    raise UserError(f"env={env}: goal-image planning has goals for {', '.join(GOAL_ENVS)}")


def check_goal_image(frame: np.ndarray, image_size: int) -> np.ndarray:
    """A goal image as uint8 (3, S, S) at the world model's size, or a one-line error naming the sizes."""
    if frame.ndim == 3 and frame.shape[-1] in (3, 4) and frame.shape[0] not in (3, 4):
        frame = frame[..., :3].transpose(2, 0, 1)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape != (3, image_size, image_size):
        raise UserError(f"goal image of shape {tuple(frame.shape)} ({frame.dtype}); the world model takes RGB "
                        f"{image_size}x{image_size} uint8 images: render the goal at that size")
    return np.ascontiguousarray(frame)


def load_goal_image(path: str | Path, image_size: int) -> np.ndarray:
    """A goal image file (``.npy``, or an image such as ``.png``) as uint8 (3, S, S); a missing, unreadable,
    oversized or mismatching file is a one-line UserError naming it; sizes are checked before anything is decoded."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise UserError(f"goal_image={path}: file not found")
    fix = f"give a {image_size}x{image_size} RGB .png or a uint8 .npy"
    if p.suffix == ".npy":
        frame = checked_np_load(p, "goal image", fix)
    else:
        try:
            with warnings.catch_warnings():  # a large image is refused below, before decoding
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(p) as im:
                    size = im.size
                    frame = np.asarray(im.convert("RGB")) if size == (image_size, image_size) else None
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise UserError(f"goal_image={path}: not a readable image ({type(e).__name__}); {fix}") from None
        if frame is None:
            raise UserError(f"goal_image={path}: a {size[0]}x{size[1]} image; the world model takes RGB "
                            f"{image_size}x{image_size} images: render the goal at that size")
    try:
        return check_goal_image(frame, image_size)
    except UserError as e:
        raise UserError(f"goal_image={path}: {e}") from None


def latent_cost_score(model: LatentModel, z0: torch.Tensor, goal: torch.Tensor):
    """``score(actions (N,H,A)) -> (N,)``: minus the squared latent distances to ``goal`` summed along each rollout
    (so reaching the goal sooner, and staying there, scores higher)."""

    def score(actions: torch.Tensor) -> torch.Tensor:
        z = z0.expand(actions.shape[0], *z0.shape[1:])
        cost = torch.zeros(actions.shape[0])
        for t in range(actions.shape[1]):
            z = model.step(z, actions[:, t])
            cost += (z - goal).flatten(1).pow(2).sum(1)
        return -cost

    return score


class GoalPlanner:
    """Replans every step: exhaustive search (discrete, ``horizon`` <= 2), categorical CEM or CEM on the goal cost."""

    def __init__(self, model: LatentModel, task: GoalTask, horizon: int, candidates: int, iterations: int,
                 top_k: int, planner: str = "auto") -> None:
        self.model, self.task, self.horizon = model, task, horizon
        if planner not in GOAL_PLANNERS:
            raise UserError(f"unknown planner '{planner}'; valid: {', '.join(GOAL_PLANNERS)}")
        if planner == "exhaustive" and not task.discrete:
            raise UserError("planner=exhaustive needs discrete actions; use planner=cem on this env")
        self.exhaustive = task.discrete and (planner == "exhaustive" or (planner == "auto" and horizon <= 2))
        if task.discrete:
            self.cem: Any = CategoricalCEM(task.action_dim, horizon, candidates, iterations, top_k)
        else:
            self.cem = CEM(task.action_dim, horizon, candidates, iterations, top_k)

    @torch.no_grad()
    def act(self, frame: np.ndarray, goal_z: torch.Tensor, gen: torch.Generator) -> Any:
        z0 = self.model.encode(torch.from_numpy(frame[None]))
        if not self.exhaustive:
            check_rollout_memory(self.cem.candidates, self.horizon, z0[0].numel(), "latent values")
        score = latent_cost_score(self.model, z0, goal_z)
        if self.exhaustive:
            return int(exhaustive_search(score, self.task.action_dim, self.horizon)[0][0])
        if self.task.discrete:
            return self.cem.act(score, gen)
        return self.cem.act(score, gen).numpy()


def run_goal(model: LatentModel, task: GoalTask, planner: GoalPlanner | None, i: int, seed: int,
             goal: np.ndarray | None = None) -> dict[str, Any]:
    """Plan (or act at random when ``planner`` is None) towards goal ``i`` (or the given ``goal`` image from goal
    ``i``'s start), seeded by (``seed``, ``i``) alone, so goals can run in any order and a rerun resumes exactly.
    Returns success, steps used, seconds per decision, the final latent distance and the frames (each next to the goal)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + i)
    rng = np.random.default_rng([seed, i, 2])
    frame, task_goal = task.start(i)
    goal = task_goal if goal is None else goal
    goal_z = model.encode(torch.from_numpy(goal[None]))
    frames, reached, decision_s = [frame], goal is task_goal and task.reached(), []
    while not reached and len(frames) - 1 < task.budget:
        t0 = time.perf_counter()
        action = planner.act(frame, goal_z, gen) if planner is not None else task.random_action(rng)
        decision_s.append(time.perf_counter() - t0)
        frame = task.act(action)
        frames.append(frame)
        reached = goal is task_goal and task.reached()
    with torch.no_grad():
        distance = float((model.encode(torch.from_numpy(frame[None])) - goal_z).pow(2).sum())
    return {
        "success": bool(reached),
        "steps": len(frames) - 1,
        "seconds_per_decision": float(np.mean(decision_s)) if decision_s else 0.0,
        "final_latent_distance": distance,
        "frames": np.concatenate([np.stack(frames), np.broadcast_to(goal, (len(frames), *goal.shape))], axis=-1),
    }
