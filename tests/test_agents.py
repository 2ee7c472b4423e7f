"""Frozen-feature caching and SAC on it."""

import json

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env

from ssl4rl.agents import FrozenFeatures, train_agent
from ssl4rl.config import AgentConfig, TrainConfig
from ssl4rl.encoders import build_encoder, save_encoder
from ssl4rl.envs import make_env


def _tiny_vit():
    torch.manual_seed(0)
    return build_encoder("vit", image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")


def test_frozen_features_encode_each_frame_once_and_stack():
    enc = _tiny_vit()
    venv = FrozenFeatures(make_vec_env(lambda: make_env("dmc_cartpole", image_size=32, frame_stack=1), n_envs=2, seed=0), enc, 3)
    obs = venv.reset()
    assert obs.shape == (2, 3 * enc.feature_dim)
    first = obs[:, -enc.feature_dim :]
    np.testing.assert_allclose(obs[:, : enc.feature_dim], first)  # stack filled with the first frame
    assert venv.frames_encoded == 2
    obs2, _, _, _ = venv.step(np.zeros((2, 1), np.float32))
    assert venv.frames_encoded == 4  # one new frame per env per step, nothing re-encoded
    np.testing.assert_allclose(obs2[:, enc.feature_dim : 2 * enc.feature_dim], first)  # shifted left
    expected = enc.encode(torch.from_numpy(venv.last_frames)).numpy()
    np.testing.assert_allclose(obs2[:, -enc.feature_dim :], expected, rtol=1e-5, atol=1e-5)
    venv.close()


def test_terminal_observation_is_features_of_last_frame():
    enc = _tiny_vit()
    venv = FrozenFeatures(make_vec_env(lambda: make_env("dmc_cartpole", image_size=32, frame_stack=1), n_envs=1, seed=0), enc, 3)
    venv.reset()
    for _t in range(200):  # cartpole episodes are 125 agent steps
        obs, _, done, infos = venv.step(np.zeros((1, 1), np.float32))
        if done[0]:
            term = infos[0]["terminal_observation"]
            assert term.shape == (3 * enc.feature_dim,)
            # the new episode's stack is its first frame, repeated
            np.testing.assert_allclose(obs[0, : enc.feature_dim], obs[0, -enc.feature_dim :])
            assert not np.allclose(term, obs[0])
            break
    else:
        raise AssertionError("episode never ended")
    venv.close()


def test_train_agent_tiny_run_writes_results(tmp_path):
    enc = _tiny_vit()
    save_encoder(enc, tmp_path / "enc", method="test")
    out = tmp_path / "run"
    res = train_agent(TrainConfig(env="dmc_cartpole", encoder=str(tmp_path / "enc"), out=str(out), steps=8 * 60,
                                  agent=AgentConfig(learning_starts=20, batch_size=16, net_arch=[32, 32], proj_dim=8),
                                  eval_every=0, eval_episodes=1, device="cpu", progress=False))
    assert res["env_steps"] == 480 and res["agent_steps"] == 60 and res["action_repeat"] == 8
    assert res["frames_encoded"] >= 60
    for f in ("results.json", "curve.png", "eval.gif", "policy.safetensors"):
        assert (out / f).stat().st_size > 0
    assert json.loads((out / "results.json").read_text())["eval_episodes"] == 1


def test_state_oracle_uses_state_observations(tmp_path):
    res = train_agent(TrainConfig(env="dmc_cartpole", encoder="state", out=str(tmp_path / "s"), steps=8 * 40,
                                  agent=AgentConfig(learning_starts=10, batch_size=16, net_arch=[32, 32]),
                                  eval_every=0, eval_episodes=1, video=False, device="cpu", progress=False))
    assert res["policy"] == "MlpPolicy" and res["frames_encoded"] is None
    assert np.isfinite(res["eval_return_mean"])
