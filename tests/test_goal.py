"""Goal-image planning: the goal tasks, the latent-cost planner, and the CLI (resume, bad goal images)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl4rl.agents.goal import BlockGoals, GoalPlanner, ReacherGoals, check_goal_image, run_goal
from ssl4rl.envs.blocks import COLORS, DIRECTIONS, GRID
from ssl4rl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


class OracleBlocks:
    """A perfect latent model of shapes2d: the latent is the objects' (row, col), read from the frame's colours,
    and ``step`` applies the env's rule (a blocked move does nothing)."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 2, 3, 1).numpy()
        cell = x.shape[1] // GRID
        z = np.zeros((len(x), len(COLORS), 2), np.float32)
        for n, img in enumerate(x):
            for i, colour in enumerate(COLORS):
                ys, xs = np.nonzero(np.all(img == colour, axis=-1))
                z[n, i] = ys.mean() // cell, xs.mean() // cell
        return torch.from_numpy(z)

    def step(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        a = actions.argmax(-1)
        obj, direction = a // 4, a % 4
        rows = torch.arange(len(z))
        target = z[rows, obj] + torch.as_tensor(DIRECTIONS, dtype=z.dtype)[direction]
        inside = ((target >= 0) & (target < GRID)).all(-1)
        free = ~(z == target[:, None]).all(-1).any(-1)
        out = z.clone()
        move = inside & free
        out[rows[move], obj[move]] = target[move]
        return out


def test_block_goals_are_reachable_and_differ_from_the_start():
    task = BlockGoals("shapes2d", 50, seed=0)
    start, goal = task.start(3)
    assert start.shape == goal.shape == (3, 50, 50) and not np.array_equal(start, goal)
    assert 10 <= task.budget <= 20 and not task.reached()
    assert np.array_equal(task.start(3)[1], goal)  # seeded by the goal index alone


def test_exhaustive_latent_planning_with_a_perfect_model_beats_random():
    model, task = OracleBlocks(), BlockGoals("shapes2d", 50, seed=0)
    planner = GoalPlanner(model, task, horizon=2, candidates=10, iterations=1, top_k=2)
    assert planner.exhaustive
    planned = [run_goal(model, task, planner, i, seed=0) for i in range(10)]
    random = [run_goal(model, task, None, i, seed=0) for i in range(10)]
    assert np.mean([r["success"] for r in planned]) >= 0.8
    assert np.mean([r["success"] for r in planned]) > np.mean([r["success"] for r in random])
    ok = next(r for r in planned if r["success"])
    assert ok["final_latent_distance"] == 0 and ok["steps"] <= 20 and ok["frames"].shape[-1] == 100  # side by side


def test_categorical_cem_also_reaches_goals_with_a_perfect_model():
    model, task = OracleBlocks(), BlockGoals("shapes2d", 50, seed=1)
    planner = GoalPlanner(model, task, horizon=3, candidates=200, iterations=3, top_k=20, planner="cem")
    assert not planner.exhaustive
    assert np.mean([run_goal(model, task, planner, i, seed=1)["success"] for i in range(5)]) >= 0.6


def test_reacher_goal_frame_shows_the_fingertip_on_the_target():
    task = ReacherGoals(32, seed=0)
    start, goal = task.start(0)
    assert start.shape == goal.shape == (3, 32, 32) and not np.array_equal(start, goal)
    physics = task.env.physics
    tip = physics.named.data.geom_xpos["finger", :2]
    target = physics.named.model.geom_pos["target", :2]
    assert 0.05 <= np.linalg.norm(target) <= 0.20
    assert np.linalg.norm(tip - target) > 0 and task.budget == 50


def test_goal_image_size_is_checked():
    assert check_goal_image(np.zeros((50, 50, 3), np.uint8), 50).shape == (3, 50, 50)
    with pytest.raises(UserError, match="50x50"):
        check_goal_image(np.zeros((64, 64, 3), np.uint8), 50)
    with pytest.raises(UserError, match="uint8"):
        check_goal_image(np.zeros((3, 50, 50), np.float32), 50)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args, "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(scope="module")
def tiny_cswm(tmp_path_factory):
    """A C-SWM world model trained for a few steps on a few shapes2d episodes, through the CLIs."""
    root = tmp_path_factory.mktemp("cswm")
    assert _cli("envs/collect.py", "env=shapes2d", "episodes=4", "episode_steps=20", f"out={root / 'data'}").returncode == 0
    p = _cli("pretrain/run.py", "method=cswm", f"data.path={root / 'data'}", "steps=10", "method.batch_size=32",
             "method.hidden_dim=16", "ckpt_every=10", f"out={root / 'run'}")
    assert p.returncode == 0, p.stderr[-2000:]
    return root / "run"


def _outcomes(results: dict) -> dict:
    return {arm: [(r["success"], r["steps"], r["final_latent_distance"]) for r in recs]
            for arm, recs in results["per_goal"].items()}


def test_plan_goal_cli_writes_results_and_resumes_after_a_kill(tiny_cswm, tmp_path):
    args = ["agents/plan_goal.py", f"worldmodel={tiny_cswm}", "goals=2", "videos=1", "candidates=20", "top_k=5"]
    p = _cli(*args, f"out={tmp_path / 'whole'}")
    assert p.returncode == 0, p.stderr[-2000:]
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert set(whole["summary"]) == {"planner", "random"} and whole["summary"]["planner"]["goals"] == 2
    assert whole["exhaustive"] and (tmp_path / "whole" / "goal_000_planner.gif").exists()
    assert "| planner |" in (tmp_path / "whole" / "goals.md").read_text()
    assert not (tmp_path / "whole" / "checkpoint.json").exists()
    killed = _cli("tests/kill_at.py", "3", *args, f"out={tmp_path / 'resumed'}")
    assert killed.returncode == -signal.SIGKILL and (tmp_path / "resumed" / "checkpoint.json").exists()
    p = _cli(*args, f"out={tmp_path / 'resumed'}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert _outcomes(json.loads((tmp_path / "resumed" / "results.json").read_text())) == _outcomes(whole)


def test_plan_goal_cli_plans_towards_a_given_goal_image(tiny_cswm, tmp_path):
    import imageio.v3 as iio

    task = BlockGoals("shapes2d", 50, seed=0)
    iio.imwrite(tmp_path / "goal.png", task.start(0)[1].transpose(1, 2, 0))
    p = _cli("agents/plan_goal.py", f"worldmodel={tiny_cswm}", f"goal_image={tmp_path / 'goal.png'}", "random_control=false",
             f"out={tmp_path / 'g'}")
    assert p.returncode == 0, p.stderr[-2000:]
    results = json.loads((tmp_path / "g" / "results.json").read_text())
    assert results["summary"]["planner"]["goals"] == 1 and results["goal_image"].endswith("goal.png")
