"""The RSSM world model (objective and encoder switches, save/load) and its collapse-proof metrics."""

import numpy as np
import pytest
import torch
from torch import nn

from helpers import assert_one_line
from ssl4rl.data import Episode, SequenceDataset, load_split
from ssl4rl.encoders import build_encoder
from ssl4rl.errors import UserError
from ssl4rl.losses.gaussian_kl import free_nats_kl, gaussian_kl
from ssl4rl.worldmodels import encoder_spec, load_world_model, save_world_model
from ssl4rl.worldmodels.metrics import evaluate_world_model, prediction_video, psnr, train_offline
from ssl4rl.worldmodels.rssm import OBJECTIVES, RSSM, EpisodeBuffer, buffer_from_episodes

TINY = dict(deter=32, stoch=8, hidden=32, depth=8, image_size=32)


def _vit():
    torch.manual_seed(0)
    return build_encoder("vit", image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")


def _model(objective, frozen=False):
    torch.manual_seed(0)
    return RSSM(1, objective, encoder=encoder_spec(_vit()) if frozen else None, **TINY)


@pytest.fixture(scope="module")
def episodes(tiny_dataset):
    return load_split(tiny_dataset, holdout=0.34, seed=0)  # 2 train, 1 held-out cartpole episodes at 32 px


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("frozen", [False, True])
def test_each_objective_and_encoder_runs_an_update_and_round_trips(objective, frozen, episodes, tmp_path):
    model = _model(objective, frozen)
    buf = buffer_from_episodes(model, episodes[0])
    assert ("features" in buf.episodes[0]) == frozen and ("frames" in buf.episodes[0]) == (not frozen or objective == "recon")
    batch = buf.sample(3, 6, torch.Generator().manual_seed(0))
    assert batch["actions"].shape == (3, 5, 1) and batch["states"].shape[:2] == (3, 6)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("encoder.")}
    logs = model.update(batch, model.make_optimizer(), torch.Generator().manual_seed(0))
    assert all(np.isfinite(v) for v in logs.values()), logs
    for k, v in frozen_before.items():  # the frozen encoder never moves
        assert torch.equal(model.state_dict()[k], v)
    save_world_model(model, tmp_path / "wm", note="test")
    loaded = load_world_model(tmp_path / "wm", kind="rssm")
    obs = {k: v for k, v in batch.items() if k in ("features", "frames")}
    assert torch.equal(model.eval().open_loop(obs, batch["actions"], 3), loaded.open_loop(obs, batch["actions"], 3))
    if frozen:  # the encoder travels inside the world model and still maps frames to the cached features
        assert torch.allclose(loaded.prepare(episodes[0][0].frames[:4])["features"], buf.episodes[0]["features"][:4], atol=1e-6)


@pytest.mark.parametrize("objective, steps, drop", [("recon", 60, 5.0), ("contrastive", 150, 1.5)])
def test_rssm_overfits_a_tiny_batch(objective, steps, drop, episodes):
    model = _model(objective)
    gen = torch.Generator().manual_seed(0)
    batch = buffer_from_episodes(model, episodes[0]).sample(4, 12, gen)
    opt = model.make_optimizer()
    logs = [model.update(batch, opt, gen) for _ in range(steps)]
    assert logs[-1]["rep"] < logs[0]["rep"] / drop, (logs[0], logs[-1])
    assert logs[-1]["reward"] < logs[0]["reward"]


def test_unknown_objective_and_bad_sizes_are_one_line_errors():
    with pytest.raises(UserError) as e:
        RSSM(1, "pixels")
    assert_one_line(e, "'pixels'", "recon", "contrastive", "barlow")
    with pytest.raises(UserError) as e:
        RSSM(1, "recon", image_size=50)
    assert_one_line(e, "image_size=50", "16, 32, 64 or 128")
    with pytest.raises(UserError) as e:
        EpisodeBuffer().sample(2, 8)
    assert_one_line(e, "sequence length 8")


def test_episode_buffer_round_trips_through_arrays(episodes):
    buf = buffer_from_episodes(_model("contrastive", frozen=True), episodes[0])
    back = EpisodeBuffer.from_arrays(buf.to_arrays())
    assert len(back) == len(buf) and back.steps == buf.steps
    for a, b in zip(buf.episodes, back.episodes, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert all(torch.equal(x, y) for x, y in zip(buf.sample(4, 7, g1).values(), back.sample(4, 7, g2).values(), strict=True))


def test_planning_scores_rank_candidates(episodes):
    model = _model("contrastive").eval()
    frames = torch.from_numpy(episodes[0][0].frames[:2])
    state = model.filter_step(None, None, model.prepare(frames[:1]))
    actions = torch.rand(7, 4, 1) * 2 - 1
    rewards = model.reward_score(state)(actions)
    assert rewards.shape == (7,) and torch.isfinite(rewards).all()
    goal = model.goal_score(state, model.prepare(frames[1:]))(actions)
    assert goal.shape == (7,) and (goal <= 0).all()


def test_gaussian_kl_matches_torch_and_free_nats_clamp_the_mean():
    g = torch.Generator().manual_seed(0)
    q = torch.distributions.Normal(torch.randn(5, 3, generator=g), torch.rand(5, 3, generator=g) + 0.1)
    p = torch.distributions.Normal(torch.randn(5, 3, generator=g), torch.rand(5, 3, generator=g) + 0.1)
    kl = gaussian_kl(q.loc, q.scale, p.loc, p.scale)
    assert torch.allclose(kl, torch.distributions.kl_divergence(q, p).sum(-1))
    assert float(free_nats_kl(kl, 1e9)) == 1e9 and float(free_nats_kl(kl, 0.0)) == pytest.approx(float(kl.mean()))


# --- metrics ---------------------------------------------------------------------------------------


def _line_world(n_episodes=6, steps=40, seed=0):
    """Episodes of a known system: state s (2,) moves by the action, s_{t+1} = s_t + a_t (whole numbers); the frame
    shows s in its pixel values. A model that knows the rule predicts the true state exactly."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(n_episodes):
        actions = rng.integers(-2, 3, size=(steps, 2)).astype(np.float32)
        states = np.concatenate([rng.integers(60, 100, size=(1, 2)), actions]).cumsum(0).astype(np.float32)
        frames = np.zeros((steps + 1, 3, 16, 16), np.uint8)
        frames[:, :2] = states[:, :, None, None].astype(np.uint8)
        eps.append(Episode(frames, actions, np.zeros(steps, np.float32), np.ones(steps, np.float32), states,
                           np.zeros((steps + 1, 1))))
    return eps


class _CopyState(nn.Module):
    """Reads the state off the last context frame and applies the known rule: latents = true future states."""

    def __init__(self, constant=False):
        super().__init__()
        self.constant = constant
        self.w = nn.Parameter(torch.zeros(1))

    def prepare(self, frames):
        return {"frames": torch.as_tensor(frames)}

    def open_loop(self, obs, actions, context):
        s = obs["frames"][:, context - 1, :2, 0, 0].float()
        pred = s[:, None] + actions[:, context - 1:].float().cumsum(1)
        return torch.zeros_like(pred) if self.constant else pred


def test_state_probe_r2_is_one_for_a_model_that_copies_the_state_and_not_for_a_constant_one():
    data = _line_world()
    good = evaluate_world_model(_CopyState(), data, ks=(1, 5, 10))
    const = evaluate_world_model(_CopyState(constant=True), data, ks=(1, 5, 10))
    assert good["ks"] == [1, 5, 10] and good["windows_test"] > 0
    assert all(r > 0.99 for r in good["r2"]), good
    assert all(r <= 0.01 for r in const["r2"]), const


def test_psnr_formula():
    target = torch.zeros(2, 3, 4, 4)
    assert psnr(target + 0.1, target) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(100)
    assert psnr(target + 0.5, target) == pytest.approx(10 * np.log10(4))
    assert psnr(target, target) == float("inf")


@pytest.mark.parametrize("objective", ["recon", "barlow"])
def test_evaluate_and_video_on_a_trained_rssm(objective, episodes, tmp_path):
    train, test = episodes
    model = _model(objective)
    logs = train_offline(model, SequenceDataset(train, length=10), steps=10, batch_size=4, progress=False)
    assert len(logs) == 10 and not model.training
    out = evaluate_world_model(model, test, ks=(1, 3), train_data=train, context=3)
    assert len(out["r2"]) == 2 and len(out["cosine"]) == 2 and len(out["cosine_constant"]) == 2
    assert ("psnr" in out) == (objective == "recon") and all(-1.0 <= c <= 1.0 for c in out["cosine"])
    frames = test[0].frames[:20]
    video = prediction_video(model, frames, test[0].actions[:19], tmp_path / "pred.gif", context=3)
    assert (tmp_path / "pred.gif").stat().st_size > 0 and video["frames"] == 17
    assert video["prediction"] == ("decoded" if objective == "recon" else "nearest of 20 real frames in embedding space")
    import imageio.v3 as iio

    gif = iio.imread(tmp_path / "pred.gif")
    assert gif.shape[0] == 17 and gif.shape[2] == 2 * (2 * 32 + 2)  # real | gap | predicted, scaled 2x
