"""Block-pushing envs (C-SWM shapes2d / cubes3d), their episode files and their collection."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl4rl.data import FrameDataset, collect, load_episode
from ssl4rl.envs import BLOCK_ENVS, TASKS, check_env_name, episode_steps, has_rewards, make_env
from ssl4rl.envs.blocks import COLORS, DIRECTIONS, GRID, N_ACTIONS
from ssl4rl.errors import UserError
from helpers import assert_one_line

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = [[0, 0], [0, 1], [4, 4], [2, 2], [3, 0]]  # (row, col) of objects 0..4


def _reference_move(state: np.ndarray, action: int) -> np.ndarray:
    """The rule, written independently: move object a // 4 one cell in direction a % 4 unless blocked."""
    pos = state.reshape(-1, 2).copy()
    obj, d = divmod(action, 4)
    r, c = pos[obj] + DIRECTIONS[d]
    if 0 <= r < GRID and 0 <= c < GRID and not any((p == (r, c)).all() for p in pos):
        pos[obj] = (r, c)
    return pos.ravel()


def _rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    frames, states = [obs], [info["state"]]
    for a in actions:
        obs, _, _, _, info = env.step(a)
        frames.append(obs)
        states.append(info["state"])
    return np.stack(frames), np.stack(states)


def test_spaces_and_info():
    env = make_env("shapes2d", seed=0)
    obs, info = env.reset()
    assert env.observation_space.shape == obs.shape == (3, 50, 50) and obs.dtype == np.uint8
    assert env.action_space.n == N_ACTIONS == 20
    assert info["state"].dtype == np.float32 and info["state"].shape == (10,) and info["discount"] == 1.0
    assert env.action_repeat == 1 and env.state_dim == 10 and env.state_names[:2] == ["obj0_row", "obj0_col"]
    assert len({tuple(p) for p in info["state"].reshape(5, 2)}) == 5  # distinct cells
    assert check_env_name("cubes3d") == ("blocks", "cubes3d", 1)
    assert not has_rewards("shapes2d") and has_rewards("dmc_cartpole")
    assert episode_steps("shapes2d") == 100 and episode_steps("dmc_walker") == 500
    state_env = make_env("shapes2d", obs_type="state", seed=0)
    np.testing.assert_array_equal(state_env.reset()[0], info["state"])


def test_blocked_moves_do_nothing_and_a_free_move_moves_one_cell():
    env = make_env("shapes2d", seed=0, max_steps=5)
    env.reset()
    env.set_state(LAYOUT)
    before = env.render()
    # obj0 up and left (off the grid), obj0 right (into obj1), obj2 down (off the grid)
    for action in (0 * 4 + 0, 0 * 4 + 3, 0 * 4 + 1, 2 * 4 + 2):
        obs, reward, term, trunc, info = env.step(action)
        np.testing.assert_array_equal(info["state"], np.ravel(LAYOUT))
        np.testing.assert_array_equal(obs, before.transpose(2, 0, 1))
        assert reward == 0.0 and not term and not trunc
    obs, _, _, trunc, info = env.step(0 * 4 + 2)  # obj0 down into a free cell
    want = np.array(LAYOUT)
    want[0] = (1, 0)
    np.testing.assert_array_equal(info["state"].reshape(5, 2), want)
    assert trunc  # max_steps=5 reached
    assert not np.array_equal(obs, before.transpose(2, 0, 1))


def test_determinism_under_seed():
    actions = np.random.default_rng(0).integers(0, N_ACTIONS, 30)
    a, b, c = (make_env("shapes2d") for _ in range(3))
    fa, sa = _rollout(a, 7, actions)
    fb, sb = _rollout(b, 7, actions)
    fc, sc = _rollout(c, 8, actions)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(sa, sc) and not np.array_equal(fa, fc)
    np.testing.assert_array_equal(make_env("shapes2d", seed=7).reset()[1]["state"], sa[0])  # make_env(seed=) == reset(seed=)
    for t, act in enumerate(actions):  # the env obeys the rule
        np.testing.assert_array_equal(sa[t + 1], _reference_move(sa[t], int(act)))


@pytest.mark.parametrize("size", [50, 100])
def test_shapes2d_draws_each_object_in_its_colour_at_its_cell(size):
    env = make_env("shapes2d", image_size=size)
    env.reset(seed=0)
    env.set_state(LAYOUT)
    img = env.render()
    cell = size // GRID
    assert img.shape == (size, size, 3)
    covered = np.zeros((size, size), bool)
    for i, (r, c) in enumerate(LAYOUT):
        block = img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
        np.testing.assert_array_equal(block[cell // 2, cell // 2], COLORS[i])  # centre pixel
        painted = block.any(axis=2)
        assert (block[painted] == COLORS[i]).all()  # only this object's colour in its cell
        covered[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = True
    assert not img[~covered].any()  # black everywhere else
    # shapes cycle circle, triangle, square: a circle leaves its corners empty, a square fills them
    circle, square = (img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] for r, c in (LAYOUT[0], LAYOUT[2]))
    assert not circle[0, 0].any() and square[0, 0].any() and square.any(axis=2).all()


def test_cubes3d_frames_follow_the_cubes():
    env = make_env("cubes3d", image_size=50, frame_stack=2, seed=0)
    try:
        obs, _ = env.reset()
        assert obs.shape == (6, 50, 50)
        env.set_state(LAYOUT)
        first = env.render().copy()
        assert first.std() > 10  # a scene, not a blank frame
        obs, *_ = env.step(2 * 4 + 3)  # obj2 left: a free cell
        np.testing.assert_array_equal(obs[:3], first.transpose(2, 0, 1))  # frame stack: the older frame first
        assert np.abs(obs[3:].astype(int) - first.transpose(2, 0, 1)).sum() > 1000  # the cube moved
        env.step(2 * 4 + 1)  # and back
        np.testing.assert_array_equal(env.render(), first)
        env.step(0)  # blocked: nothing changes
        np.testing.assert_array_equal(env.render(), first)
    finally:
        env.close()


def test_get_state_set_state_round_trip():
    env = make_env("shapes2d", frame_stack=2)
    env.reset(seed=3)
    for a in (1, 5, 9, 13):
        env.step(a)
    buf = io.BytesIO()
    torch.save(env.get_state(), buf)  # what an agent checkpoint does
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    other = make_env("shapes2d", frame_stack=2)
    other.set_state(saved)
    for a in (2, 6, 17):
        x, y = env.step(a), other.step(a)
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[4]["state"], y[4]["state"])
        assert x[3] == y[3]
    np.testing.assert_array_equal(env.reset()[1]["state"], other.reset()[1]["state"])  # the reset RNG came along

    # positions alone: info['state'] of one env sets another (goal images)
    env.set_state(np.asarray(LAYOUT, np.float32).ravel())
    np.testing.assert_array_equal(env.get_state()["positions"].numpy(), LAYOUT)
    np.testing.assert_array_equal(env.positions, LAYOUT)
    goal = env.render()
    other.set_state(LAYOUT)
    np.testing.assert_array_equal(other.render(), goal)
    for bad, needle in ((LAYOUT[:4], "shape"), ([[0, 0]] * 5, "share a cell"), ([[0, 5], *LAYOUT[1:]], "0 to 4"),
                        ([[0, 0.5], *LAYOUT[1:]], "whole numbers")):
        with pytest.raises(UserError) as exc:
            env.set_state(bad)
        assert_one_line(exc, needle)


def test_collect_cli_writes_loadable_episodes(tmp_path):
    out = tmp_path / "shapes"
    p = subprocess.run([sys.executable, "envs/collect.py", "env=shapes2d", "episodes=3", "episode_steps=10", f"out={out}",
                        "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["action_space"] == {"type": "discrete", "n": 20} and meta["rewards"] is False
    assert meta["episodes"] == 3 and meta["episode_steps"] == 10 and meta["image_size"] == 50 and meta["frames"] == 33
    assert meta["action_dim"] == 20 and meta["state_dim"] == 10
    paths = sorted(out.glob("episode_*.npz"))
    assert len(paths) == 3
    with np.load(paths[0], allow_pickle=False) as z:
        assert "physics" not in z.files
    episodes = [load_episode(path) for path in paths]
    for ep in episodes:
        assert len(ep) == 10 and ep.frames.shape == (11, 3, 50, 50)
        assert ep.physics.shape == (11, 0) and ep.physics.dtype == np.float64
        assert ep.actions.dtype == np.float32 and ep.actions.shape == (10, 20)
        assert set(np.unique(ep.actions)) == {0.0, 1.0} and (ep.actions.sum(1) == 1).all()
        assert not ep.rewards.any() and (ep.discounts == 1).all()
        for t, row in enumerate(ep.actions):
            np.testing.assert_array_equal(ep.states[t + 1], _reference_move(ep.states[t], int(row.argmax())))
    assert not np.array_equal(episodes[0].states[0], episodes[1].states[0])  # each episode its own seed
    assert len(FrameDataset(episodes)) == 33  # the dataset classes (check_consistent) take them

    # Python API, the same seed: the same episodes; steps= counts env steps (100 per default episode)
    collect("shapes2d", 1, tmp_path / "py", episode_steps=10, progress=False)
    np.testing.assert_array_equal(load_episode(tmp_path / "py" / "episode_000000.npz").frames, episodes[0].frames)
    p = subprocess.run([sys.executable, "envs/collect.py", "env=shapes2d", "steps=150", f"out={tmp_path / 's'}",
                        "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["episodes"] == 2


def test_unknown_env_lists_every_name():
    with pytest.raises(UserError) as exc:
        make_env("blocks2d")
    assert_one_line(exc, "blocks2d", *TASKS, *BLOCK_ENVS)


@pytest.mark.parametrize("call, needle", [
    (lambda: make_env("shapes2d", image_size=64), "image_size=64"),
    (lambda: make_env("cubes3d", image_size=10), "image_size=10"),
    (lambda: make_env("shapes2d", action_repeat=2), "action_repeat=2"),
    (lambda: make_env("shapes2d", colour="red"), "colour"),
    (lambda: make_env("shapes2d", seed=0).step(20), "action=20"),
    (lambda: make_env("shapes2d", seed=0).step(1.5), "action=1.5"),
    (lambda: collect("dmc_cartpole", 1, "/nonexistent/never", episode_steps=126), "episode_steps=126"),
])
def test_bad_values_one_line(call, needle):
    with pytest.raises(UserError) as exc:
        call()
    assert_one_line(exc, needle)


def test_collect_cli_bad_image_size(tmp_path):
    p = subprocess.run([sys.executable, "envs/collect.py", "env=shapes2d", "image_size=64", "episodes=1",
                        f"out={tmp_path / 'x'}", "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and "image_size=64" in p.stderr
    assert "Traceback" not in p.stderr
    assert not list((tmp_path / "x").glob("episode_*.npz"))
