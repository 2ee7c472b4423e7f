"""The fast paths of SAC on frozen features and of env workers compute what SB3 computes (ssl4rl.agents.fast)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv
from torch.nn import functional as F

from ssl4rl.agents.fast import FastSAC, SplitVecEnv
from ssl4rl.agents.features import FrozenFeatures, StackedProjection
from ssl4rl.encoders import build_encoder
from ssl4rl.envs import make_env

AGENT = dict(learning_rate=3e-4, buffer_size=400, learning_starts=40, batch_size=32, tau=0.01, gamma=0.99,
             train_freq=1, gradient_steps=1, ent_coef="auto", seed=0, device="cpu", verbose=0)


class _PlainFastSAC(FastSAC):
    fused = False  # SB3's Adam
    split_sums = False  # no reordered sums


def _frozen_venv(normalize: bool = False):
    torch.manual_seed(0)
    enc = build_encoder("vit", image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")
    venv = make_vec_env(lambda: make_env("dmc_cartpole", image_size=32, frame_stack=1), n_envs=1, seed=0)
    return FrozenFeatures(venv, enc, 3, normalize=normalize)


def _policy_kwargs(prenormalized: bool = False) -> dict:
    return {"net_arch": [32, 32], "features_extractor_class": StackedProjection,
            "features_extractor_kwargs": {"frame_stack": 3, "proj_dim": 8, "prenormalized": prenormalized}}


def _learn(cls, venv, steps: int, **kwargs):
    torch.manual_seed(0)
    model = cls("MlpPolicy", venv, **{**AGENT, **kwargs})
    model.learn(total_timesteps=steps)
    return model


@pytest.mark.parametrize("obs", ["state", "frozen"])
def test_fast_sac_without_fused_adam_is_sb3_bit_for_bit(obs):
    def venv():
        if obs == "state":
            return make_vec_env(lambda: make_env("dmc_cartpole", obs_type="state"), n_envs=1, seed=0)
        return _frozen_venv()

    kw = {} if obs == "state" else {"policy_kwargs": _policy_kwargs()}
    ref = _learn(SAC, venv(), 160, **kw)
    fast = _learn(_PlainFastSAC, venv(), 160, **kw)
    for name, tensor in ref.policy.state_dict().items():
        assert torch.equal(tensor, fast.policy.state_dict()[name]), name
    assert torch.equal(ref.log_ent_coef, fast.log_ent_coef)


def test_fast_sac_with_every_shortcut_makes_the_same_update_up_to_rounding():
    # no update before the one compared (rounding differences grow from update to update, as in any float change)
    ref = _learn(SAC, _frozen_venv(), 150, policy_kwargs=_policy_kwargs(), learning_starts=150)
    fast = _learn(FastSAC, _frozen_venv(normalize=True), 150, policy_kwargs=_policy_kwargs(prenormalized=True),
                  stacked_frames=3, learning_starts=150)
    assert fast._shifted and fast._split_q
    state = (np.random.get_state(), torch.get_rng_state())
    ref.train(1, 32)
    np.random.set_state(state[0])
    torch.set_rng_state(state[1])
    fast.train(1, 32)
    for name, tensor in ref.policy.state_dict().items():
        other = fast.policy.state_dict()[name]
        assert (tensor - other).abs().max() <= 1e-5 * tensor.abs().max().clamp_min(1e-3), name


def test_prenormalized_projection_is_the_layernorm_projection():
    space = gym.spaces.Box(-np.inf, np.inf, (3 * 40,), np.float32)
    torch.manual_seed(0)
    plain, folded = StackedProjection(space, 3, 8), StackedProjection(space, 3, 8, prenormalized=True)
    with torch.no_grad():
        plain.proj[0].weight.uniform_(0.5, 1.5)
        plain.proj[0].bias.normal_()
    folded.load_state_dict(plain.state_dict())
    x = torch.randn(16, 3, 40) * 3 + 1
    y_plain = plain(x.view(16, -1))
    y_folded = folded(F.layer_norm(x, (40,), eps=1e-5).view(16, -1))
    torch.testing.assert_close(y_folded, y_plain, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_plain)
    for a, b in zip(torch.autograd.grad((y_plain * g).sum(), list(plain.parameters())),
                    torch.autograd.grad((y_folded * g).sum(), list(folded.parameters())), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_a_next_observation_that_is_not_shifted_switches_the_frame_shortcut_off():
    fast = _learn(FastSAC, _frozen_venv(normalize=True), 60, policy_kwargs=_policy_kwargs(prenormalized=True),
                  stacked_frames=3)
    assert fast._shifted
    fast.replay_buffer.next_observations[5, 0, 0] += 1.0  # a row that breaks the structure
    fast._checked_pos = None  # as in a new process (a resumed run): every row is checked at the first update
    fast.learn(total_timesteps=1, reset_num_timesteps=False)
    assert not fast._shifted


def test_split_vec_env_steps_like_subproc_vec_env():
    def make():
        return make_env("dmc_cartpole", image_size=32)

    split = make_vec_env(make, n_envs=2, seed=3, vec_env_cls=SplitVecEnv)
    sub = make_vec_env(make, n_envs=2, seed=3, vec_env_cls=SubprocVecEnv)
    try:
        np.testing.assert_array_equal(split.reset(), sub.reset())
        actions = np.random.default_rng(0).uniform(-1, 1, (130, 2, 1)).astype(np.float32)
        for a in actions:  # past the end of the first episodes (125 agent steps)
            (o1, r1, d1, i1), (o2, r2, d2, i2) = split.step(a), sub.step(a)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(d1, d2)
            for x, y in zip(i1, i2, strict=True):
                assert x.keys() == y.keys()
                if "terminal_observation" in x:
                    np.testing.assert_array_equal(x["terminal_observation"], y["terminal_observation"])
        assert d1.dtype == d2.dtype and o1.dtype == o2.dtype == np.uint8
        assert split.get_attr("action_repeat") == sub.get_attr("action_repeat")
        assert split.get_attr("image_size", indices=[1]) == [32]
        saved = split.env_method("get_state")
        split.step(actions[0])
        for i, state in enumerate(saved):
            split.env_method("set_state", state, indices=[i])
        sub_saved = sub.env_method("get_state")
        assert len(saved) == len(sub_saved) == 2
        np.testing.assert_array_equal(split.env_method("render", indices=[1])[0], sub.env_method("render", indices=[1])[0])
    finally:
        split.close()
        sub.close()
