import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from ssl4rl.envs import TASKS, make_env
from ssl4rl.errors import UserError

SIZE = 32


@pytest.mark.parametrize("name", list(TASKS))
def test_make_env_contract(name):
    env = make_env(name, image_size=SIZE, seed=0)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*spec.*", category=UserWarning)
            check_env(env, skip_render_check=True)

        assert env.action_repeat == TASKS[name][2]
        obs, info = env.reset(seed=1)
        assert obs.dtype == np.uint8 and obs.shape == (3 * 3, SIZE, SIZE)
        assert env.observation_space.contains(obs)
        assert info["state"].dtype == np.float32 and info["state"].shape == (env.state_dim,)
        assert len(env.state_names) == env.state_dim == len(set(env.state_names))

        t0 = env.physics.data.time
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.dtype == np.uint8 and obs.shape == (9, SIZE, SIZE)
        assert isinstance(reward, float) and not terminated and not truncated
        assert info["state"].dtype == np.float32 and info["state"].shape == (env.state_dim,)
        elapsed = env.physics.data.time - t0
    finally:
        env.close()

    # one agent step = action_repeat control steps: compare with an env without repeat
    ref = make_env(name, obs_type="state", action_repeat=1, seed=0)
    try:
        ref.reset()
        t0 = ref.physics.data.time
        ref.step(ref.action_space.sample())
        one = ref.physics.data.time - t0
    finally:
        ref.close()
    assert elapsed == pytest.approx(TASKS[name][2] * one)


def _rollout(seed, actions):
    env = make_env("dmc_cartpole", image_size=SIZE, seed=seed)
    try:
        obs, info = env.reset()
        out = [(obs, 0.0, info["state"], info["physics"])]
        for a in actions:
            obs, r, _, _, info = env.step(a)
            out.append((obs, r, info["state"], info["physics"]))
    finally:
        env.close()
    return out


def test_determinism_same_seed_and_different_seed():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(5, 1)).astype(np.float32)
    a, b = _rollout(3, actions), _rollout(3, actions)
    for (o1, r1, s1, p1), (o2, r2, s2, p2) in zip(a, b, strict=False):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(p1, p2)
    assert any(r != 0 for _, r, _, _ in a[1:])  # rewards are real, not all zero

    c = _rollout(4, actions[:0])
    assert not np.array_equal(a[0][3], c[0][3])  # different initial physics state
    assert not np.array_equal(a[0][2], c[0][2])


def test_reset_seed_is_reproducible():
    env = make_env("dmc_cartpole", obs_type="state")
    try:
        s1, _ = env.reset(seed=7)
        s2, _ = env.reset(seed=7)
        s3, _ = env.reset(seed=8)
    finally:
        env.close()
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)


def test_state_observations():
    env = make_env("dmc_walker", obs_type="state", seed=0)
    try:
        assert env.observation_space.shape == (env.state_dim,)
        obs, info = env.reset()
        assert obs.dtype == np.float32 and obs.shape == (env.state_dim,)
        np.testing.assert_array_equal(obs, info["state"])
        obs, _, _, _, info = env.step(env.action_space.sample())
        np.testing.assert_array_equal(obs, info["state"])
        # state envs never need a GL context
        assert env._renderer is None
    finally:
        env.close()


def test_unknown_env_name():
    with pytest.raises(UserError) as exc:
        make_env("dmc_nope")
    msg = str(exc.value)
    assert "\n" not in msg
    assert "dmc_nope" in msg
    for name in TASKS:
        assert name in msg


def test_frame_stack():
    env = make_env("dmc_cheetah", image_size=SIZE, frame_stack=3, seed=0)
    try:
        obs, _ = env.reset()
        first = obs[:3].copy()
        np.testing.assert_array_equal(obs[3:6], first)
        np.testing.assert_array_equal(obs[6:9], first)
        np.testing.assert_array_equal(first, env.render().transpose(2, 0, 1))

        obs, *_ = env.step(np.ones(env.action_space.shape, np.float32))
        np.testing.assert_array_equal(obs[6:9], env.render().transpose(2, 0, 1))
        np.testing.assert_array_equal(obs[0:3], first)  # oldest frames shift down
        np.testing.assert_array_equal(obs[3:6], first)
        assert not np.array_equal(obs[6:9], first)  # the cheetah moved

        obs2, *_ = env.step(np.ones(env.action_space.shape, np.float32))
        np.testing.assert_array_equal(obs2[3:6], obs[6:9])
        np.testing.assert_array_equal(obs2[0:3], first)
    finally:
        env.close()


def test_frame_stack_one():
    env = make_env("dmc_reacher", image_size=SIZE, frame_stack=1, seed=0)
    try:
        obs, _ = env.reset()
        assert obs.shape == (3, SIZE, SIZE)
        assert env.observation_space.shape == (3, SIZE, SIZE)
    finally:
        env.close()


@pytest.mark.parametrize("fast", [True, False])
def test_render_fast_and_standard(fast):
    env = make_env("dmc_walker", image_size=48, fast_render=fast, seed=0)
    try:
        env.reset()
        img = env.render()
    finally:
        env.close()
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert img.min() != img.max()
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10


def test_close_is_idempotent():
    env = make_env("dmc_cartpole", image_size=SIZE)
    env.reset()
    assert env._renderer is not None
    env.close()
    assert env._renderer is None
    env.close()  # a second close is harmless


def test_subproc_vec_env():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = make_vec_env(lambda: make_env("dmc_cartpole", image_size=SIZE), n_envs=2, vec_env_cls=SubprocVecEnv)
    try:
        obs = venv.reset()
        assert obs.shape == (2, 9, SIZE, SIZE) and obs.dtype == np.uint8
        for _ in range(2):
            obs, rewards, dones, infos = venv.step(np.zeros((2, 1), np.float32))
        assert obs.shape == (2, 9, SIZE, SIZE) and obs.dtype == np.uint8
        assert rewards.shape == (2,)
        assert all(i["state"].shape == (5,) for i in infos)
        assert obs.max() > obs.min()
    finally:
        venv.close()


def test_gymnasium_async_vector_env():
    import functools

    import gymnasium as gym

    fns = [functools.partial(make_env, "dmc_cartpole", image_size=SIZE, seed=i) for i in range(2)]
    venv = gym.vector.AsyncVectorEnv(fns, context="spawn")
    obs, info = venv.reset(seed=0)
    assert obs.shape == (2, 9, SIZE, SIZE) and obs.dtype == np.uint8
    obs, rew, term, trunc, info = venv.step(np.zeros((2, 1), np.float32))
    assert obs.shape == (2, 9, SIZE, SIZE) and rew.shape == (2,)
    assert info["state"].shape == (2, 5)
    venv.close()
