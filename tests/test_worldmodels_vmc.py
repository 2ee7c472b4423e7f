"""The recurrent world model (V: VAE, M: MDN-RNN, C: CMA-ES controller) and its agent pipeline."""

import hashlib
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import assert_one_line
from ssl4rl.agents.worldmodels import train_worldmodels
from ssl4rl.config import WorldModelsConfig
from ssl4rl.data import load_split
from ssl4rl.encoders import build_encoder, save_encoder
from ssl4rl.errors import UserError
from ssl4rl.worldmodels import load_world_model, save_world_model
from ssl4rl.worldmodels.controller import LinearController, batched_actions, cma_generation, es_state, make_es, restore_es
from ssl4rl.worldmodels.mdnrnn import MDNRNN, Mixture, mdn_log_prob, mdn_sample
from ssl4rl.worldmodels.vae import ConvVAE, ProjectedEncoder

ROOT = Path(__file__).resolve().parent.parent


def _frames(tiny_dataset, n=16):
    train, _ = load_split(tiny_dataset, holdout=0.0)
    return torch.from_numpy(np.concatenate([e.frames for e in train]))[:: 375 // n][:n]


# --- M: the MDN-RNN -------------------------------------------------------------------------------------


def _hand_mixture():
    """Two latent dimensions, three Gaussians each; the most likely component is 1 in dim 0 and 0 in dim 1."""
    logit_pi = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    mu = torch.tensor([[-10.0, 5.0, 20.0], [7.0, -20.0, 40.0]])
    return Mixture(logit_pi, mu, torch.full((2, 3), math.log(0.1)))


def test_sampling_at_temperature_zero_gives_the_mixture_mode():
    mix = _hand_mixture()
    assert torch.equal(mdn_sample(mix, 0.0), torch.tensor([5.0, 7.0]))  # the most likely component's mean, exactly
    gen = torch.Generator().manual_seed(0)
    cold = torch.stack([mdn_sample(mix, 1e-6, generator=gen) for _ in range(200)])
    assert (cold - torch.tensor([5.0, 7.0])).abs().max() < 1e-3  # tau -> 0 approaches the mode


def test_sampling_at_temperature_one_follows_the_mixture_weights():
    mix = _hand_mixture()
    batch = Mixture(*(p.expand(20000, 2, 3) for p in mix))
    z = mdn_sample(batch, 1.0, generator=torch.Generator().manual_seed(0))
    chosen = (z.unsqueeze(-1) - mix.mu).abs().argmin(-1)  # the means are far apart, sigma 0.1
    freq = torch.stack([(chosen == k).float().mean(0) for k in range(3)], -1)
    assert torch.allclose(freq, torch.softmax(mix.logit_pi, -1), atol=0.015)
    within = (z - batch.mu.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)).std()
    assert abs(within - 0.1) < 0.005  # the component's own standard deviation


def test_mdn_log_likelihood_equals_a_hand_computed_one():
    mix = Mixture(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 2.0]]), torch.log(torch.tensor([[1.0, 0.5]])))
    x = 1.0
    normal = lambda x, m, s: math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    hand = math.log(0.25 * normal(x, 0.0, 1.0) + 0.75 * normal(x, 2.0, 0.5))
    assert mdn_log_prob(torch.tensor([x]), mix).item() == pytest.approx(hand, rel=1e-6)


def test_mdnrnn_loss_is_the_mean_nll_of_the_next_latent_plus_the_weighted_reward_error():
    torch.manual_seed(0)
    m = MDNRNN(z_dim=1, action_dim=1, hidden=3, mixtures=2)
    z, a, r = torch.randn(1, 3, 1), torch.randn(1, 2, 1), torch.randn(1, 2)
    loss, logs = m.loss(z, a, r, reward_weight=0.5)
    mix, reward, _ = m(z[:, :-1], a)
    nll = 0.0
    for t in range(2):  # z_{t+1} under the mixture predicted at t
        w = torch.softmax(mix.logit_pi[0, t, 0], -1).tolist()
        mus, sigmas = mix.mu[0, t, 0].tolist(), mix.log_sigma[0, t, 0].exp().tolist()
        x = z[0, t + 1, 0].item()
        p = sum(wk * math.exp(-0.5 * ((x - mk) / sk) ** 2) / (sk * math.sqrt(2 * math.pi))
                for wk, mk, sk in zip(w, mus, sigmas, strict=True))
        nll -= math.log(p) / 2
    mse = sum((reward[0, t].item() - r[0, t].item()) ** 2 for t in range(2)) / 2
    assert logs["nll"] == pytest.approx(nll, rel=1e-5) and logs["reward_mse"] == pytest.approx(mse, rel=1e-5)
    assert loss.item() == pytest.approx(nll + 0.5 * mse, rel=1e-5)


# --- V: the VAE and the frozen-encoder projection --------------------------------------------------------


def test_vae_shapes_loss_decreases_and_round_trips(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    frames = _frames(tiny_dataset)
    vae = ConvVAE(image_size=32, z_dim=8)
    mu, logvar = vae.latent(frames)
    assert mu.shape == logvar.shape == (16, 8) and vae.decode(mu).shape == (16, 3, 32, 32)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss, logs = vae.loss(frames, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["recon"])
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    vae.eval()
    save_world_model(vae, tmp_path / "vae", note="test")
    back = load_world_model(tmp_path / "vae", kind="vae")
    assert isinstance(back, ConvVAE) and back.config() == vae.config()
    assert torch.equal(back.latent(frames)[0], vae.latent(frames)[0])
    with pytest.raises(UserError) as e:
        ConvVAE(image_size=40)
    assert_one_line(e, "image_size=40", "16")


def test_projected_encoder_whitens_pca_components_and_round_trips(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("vit", image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")
    frames = _frames(tiny_dataset, 64)
    v = ProjectedEncoder.fit(enc, frames, z_dim=4)
    z, logvar = v.latent(frames)
    assert z.shape == (64, 4) and logvar is None
    assert torch.allclose(z.mean(0), torch.zeros(4), atol=1e-4) and torch.allclose(z.std(0), torch.ones(4), atol=1e-3)
    assert torch.allclose(torch.corrcoef(z.T), torch.eye(4), atol=1e-3)  # decorrelated components
    save_world_model(v, tmp_path / "v")
    assert torch.equal(load_world_model(tmp_path / "v", kind="projected_encoder").latent(frames)[0], z)
    assert ProjectedEncoder.fit(enc, frames, z_dim=None).z_dim == enc.feature_dim  # project=none: every feature


# --- C: the controller and CMA-ES ------------------------------------------------------------------------


def _sphere(pop):
    return -((pop - 0.5) ** 2).sum(1) + 0.1 * np.cos(7 * pop).sum(1)


def test_cma_state_saved_without_pickle_restores_the_same_next_populations(tmp_path):
    es = make_es(30, 0.3, popsize=8, seed=3)
    for _ in range(5):
        cma_generation(es, _sphere)
    torch.save(es_state(es), tmp_path / "es.pt")
    restored = restore_es(torch.load(tmp_path / "es.pt", weights_only=True))  # tensors and numbers only
    global_rng = np.random.get_state()[1].copy()
    for _ in range(10):  # the next populations, and every later one, are identical
        a, b = es.ask(), restored.ask()
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        f = (-_sphere(np.stack(a))).tolist()
        es.tell(a, f)
        restored.tell(b, f)
    assert np.array_equal(es.mean, restored.mean) and es.sigma == restored.sigma
    assert np.array_equal(np.random.get_state()[1], global_rng)  # CMA-ES draws from its own generator


def test_controller_trained_with_cma_es_improves_on_a_toy_problem():
    starts = torch.tensor([[1.0, -1.0], [0.5, 0.8], [-1.0, -0.3], [0.2, 1.0]])

    def returns(pop: np.ndarray) -> np.ndarray:  # a point pushed by a = tanh(W s + b) must reach the origin
        params = torch.as_tensor(pop, dtype=torch.float32)
        s = starts.expand(len(pop), 4, 2).clone()
        total = torch.zeros(len(pop))
        for _ in range(15):
            s = s + 0.2 * batched_actions(params, s, action_dim=2)
            total -= s.pow(2).sum(-1).mean(-1)
        return total.double().numpy()

    es = make_es(LinearController.n_params(2, 2), 0.3, popsize=10, seed=0)
    before = returns(es.mean[None])[0]
    for _ in range(30):
        cma_generation(es, returns)
    after = returns(es.mean[None])[0]
    assert after > 0.3 * before  # returns are negative: the squared distance summed over time shrank by > 70%
    c = LinearController.from_flat(es.mean, 2, 2)
    assert torch.allclose(c(starts), batched_actions(torch.as_tensor(c.flat())[None], starts[None], 2)[0])


# --- the pipeline -----------------------------------------------------------------------------------------


def _cfg(agent, **kw):
    base = dict(env="dmc_cartpole", encoder="vae", objective=None, steps=2000, seed=0, device="cpu", progress=False,
                ckpt_every=1000, eval_every=0, eval_episodes=1, video=True, image_size=32, frame_stack=1, runs_root="runs")
    return SimpleNamespace(**{**base, **kw}, agent=agent)


def test_pipeline_on_a_frozen_encoder_trained_in_the_real_env_with_the_random_m_control(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("vit", image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")
    save_encoder(enc, tmp_path / "enc", method="test")
    agent = WorldModelsConfig(z_dim=4, hidden=16, m_steps=10, m_batch=4, train_in="real", real_popsize=3,
                              real_rollouts=1, real_generations=2, real_check_every=2, random_m=True, dream_eval=3)
    out = tmp_path / "run"
    results = train_worldmodels(_cfg(agent, encoder=str(tmp_path / "enc")), out)
    assert json.loads((out / "results.json").read_text())["variants"] == results["variants"]
    assert set(results["variants"]) == {"trained_m", "random_m"}
    for r in results["variants"].values():
        assert len(r["real_returns"]) == 1 and r["dream_rollouts"] == 3
        assert r["gap"] == pytest.approx(r["dream_mean"] - r["real_mean"])
    # 2 episodes collected; per variant 2 generations x 3 candidates + 1 real check, 1 eval episode; 1000 env steps each
    assert (results["collect_env_steps"], results["train_env_steps"], results["eval_env_steps"]) == (2000, 14000, 2000)
    assert results["v"]["kind"] == "projected_encoder" and results["cma"]["parameters"] == 4 + 16 + 1
    assert load_world_model(out / "worldmodel" / "v").z_dim == 4
    assert load_world_model(out / "worldmodel_random_m" / "controller", kind="controller").in_dim == 20
    assert (out / "cma_curve.png").is_file() and (out / "eval.gif").is_file() and (out / "results.md").is_file()
    assert not (out / "dream.gif").exists()  # no decoder behind a frozen encoder
    assert not (out / "checkpoint").exists()


@pytest.mark.parametrize("kw, needles", [
    ({"env": "shapes2d"}, ("shapes2d", "no rewards")),
    ({"env": "dmc_nothing"}, ("dmc_nothing",)),
    ({"agent": {"train_in": "moon"}}, ("train_in", "moon", "dream, real")),
    ({"agent": {"bogus": 1}}, ("agent.bogus", "valid")),
    ({"agent": {"popsize": 2}}, ("agent.popsize=2", ">= 3")),
    ({"objective": "contrastive"}, ("objective=contrastive", "encoder=")),
    ({"encoder": "state"}, ("encoder=state", "vae")),
    ({"image_size": 40}, ("image_size=40", "16")),
])
def test_hostile_settings_are_refused_in_one_line_before_anything_runs(kw, needles, tmp_path):
    kw = dict(kw)
    cfg = _cfg(kw.pop("agent", WorldModelsConfig()), **kw)
    with pytest.raises(UserError) as e:
        train_worldmodels(cfg, tmp_path / "run")
    assert_one_line(e, *needles)
    assert not (tmp_path / "run").exists()


TINY = dict(z_dim=4, vae_steps=40, vae_batch=8, hidden=16, m_steps=30, m_batch=4, popsize=5, rollouts=2, generations=6,
            dream_horizon=20, dream_eval=2, ckpt_updates=10, real_check_every=0, random_m=True)
TINY_CLI = ["agents/train.py", "env=dmc_cartpole", "agent=worldmodels", "steps=2000", "image_size=32", "eval_episodes=1",
            "device=cpu", *(f"agent.{k}={str(v).lower()}" for k, v in TINY.items())]
CONTROLLERS = ("worldmodel/controller/model.safetensors", "worldmodel_random_m/controller/model.safetensors")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_until(args, marker: Path) -> None:
    """Start the CLI and SIGKILL it as soon as ``marker`` exists (or let it end)."""
    proc = subprocess.Popen([sys.executable, *args, "progress=false"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_vae_pipeline_then_the_cli_killed_mid_pipeline_resumes_to_the_same_controller(tmp_path, capsys):
    whole = tmp_path / "whole"
    results = train_worldmodels(_cfg(WorldModelsConfig(**TINY)), whole)  # uninterrupted, in process
    table = capsys.readouterr().out
    assert "| trained |" in table and "| random (untrained) |" in table
    assert table.strip() == (whole / "results.md").read_text().strip()
    assert results["resumed_at"] == [] and results["cma"]["generations"] == 6 and results["v"]["kind"] == "vae"
    assert len(json.loads((whole / "results.json").read_text())["variants"]["trained_m"]["real_returns"]) == 1
    for name in ("vae_recon.png", "cma_curve.png", "eval.gif", "dream.gif"):
        assert (whole / name).is_file(), name
    assert load_world_model(whole / "worldmodel" / "vae", kind="vae").z_dim == 4
    cut, ck = tmp_path / "cut", tmp_path / "cut" / "checkpoint"
    for marker in ("vae.pt", "cma_trained_m.pt"):  # SIGKILLed inside V training, then inside CMA-ES
        _run_until([*TINY_CLI, f"out={cut}"], ck / marker)
        assert ck.is_dir()
    done = subprocess.run([sys.executable, *TINY_CLI, f"out={cut}", "progress=false"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in CONTROLLERS:
        assert _sha(cut / name) == _sha(whole / name), name
    resumed = json.loads((cut / "results.json").read_text())
    # the controllers are bit-identical (above); the returns they score go through float convolutions whose last bits
    # depend on the process's thread count (this process vs the CLI's), so they are compared to 1e-6
    assert resumed["resumed_at"] and _leaves(resumed["variants"]) == pytest.approx(_leaves(results["variants"]), rel=1e-6)
    assert "resumed" in (cut / "log.txt").read_text() and not ck.exists()


def test_cli_refuses_an_unknown_train_in_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, "agents/train.py", "agent=worldmodels", "agent.train_in=moon",
                        f"out={tmp_path / 'r'}"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert "agent.train_in=moon" in p.stderr and "dream, real" in p.stderr


def _leaves(tree) -> list[float]:
    """The numbers of a nested dict/list, in order."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _leaves(tree[k])]
    if isinstance(tree, list):
        return [x for v in tree for x in _leaves(v)]
    return [float(tree)]
