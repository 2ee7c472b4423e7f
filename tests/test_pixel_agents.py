"""Pixel agents (DrQ, CURL, fine-tuning, auxiliary SSL losses, decoupled training, PPO) on real dmc_cartpole at
tiny sizes: where gradients reach the encoder, the update formulas (EMA targets, K/M averaging, CURL's logits),
the optimizer groups, the encoder warm-up, resume after SIGKILL, and the command line's one-line refusals.

Models are built through the code path a run takes (``Pipeline`` + ``_model``); ``model.learn(FILLED)`` fills the
replay with random actions (``learning_starts`` = FILLED, so no update happens) before a test calls the pieces of
one update itself."""

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssl4rl.agents import checkpoint
from ssl4rl.agents.sac import Pipeline, _model, check_config, train_agent
from ssl4rl.config import PPOConfig, TrainConfig, agent_configs, aux_methods, validate_config
from ssl4rl.encoders import build_encoder, load_encoder, save_encoder
from ssl4rl.losses.bilinear import bilinear_info_nce, bilinear_logits
from ssl4rl.utils import seed_everything

ROOT = Path(__file__).resolve().parent.parent
SIZE = 16
TINY_CONV = {"arch": "conv", "image_size": SIZE, "channels": 8, "feature_dim": 8, "layers": 2, "stride2": 2}
AGENT_STEPS = 1000  # the schedule a built model is given (nothing here runs that long)
FILLED = 30  # random agent steps in the replay before a test updates by hand
BATCH = 8
CPU = torch.device("cpu")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _agent(name: str = "drq", **change):
    return dataclasses.replace(agent_configs()[name], backbone=dict(TINY_CONV), batch_size=BATCH, learning_starts=FILLED,
                               net_arch=[16], buffer_size=AGENT_STEPS, **change)


@pytest.fixture
def build(tmp_path):
    """``build(agent, agent_change, **train_config)``: a PixelSAC (or PPO) as a run builds it, its replay filled."""
    venvs = []

    def make(agent="drq", agent_change=None, fill=True, **train):
        a = train.pop("agent_config", None) or _agent(agent, **(agent_change or {}))
        cfg = TrainConfig(agent=a, env="dmc_cartpole", encoder=train.pop("encoder", "scratch"), steps=8 * AGENT_STEPS,
                          device="cpu", progress=False, out=str(tmp_path / "run"), **train)
        validate_config(cfg)
        check_config(cfg)
        seed_everything(0)
        pipe = Pipeline(cfg, CPU)
        venv = pipe.make_venv(1, 0)
        venvs.append(venv)
        model = _model(cfg, pipe, venv, tmp_path, CPU, AGENT_STEPS)
        if fill:
            model.learn(FILLED)  # random actions into the replay; learning_starts = FILLED: no update yet
            assert model._n_updates == 0
        return model

    yield make
    for venv in venvs:
        venv.close()


def _grad_sum(params) -> float:
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


def _no_grad(params) -> bool:
    return all(p.grad is None or not p.grad.any() for p in params)


def _copy(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _saved_conv(folder: Path, image_size: int = SIZE) -> str:
    torch.manual_seed(0)
    save_encoder(build_encoder(**{**TINY_CONV, "image_size": image_size}), folder, method="test")
    return str(folder)


# --- where gradients go -------------------------------------------------------------------------------------


def test_actor_loss_leaves_the_encoder_alone_and_critic_curl_aux_losses_train_it(build):
    model = build("curl", aux="byol")
    enc, target_enc = list(model.encoder.parameters()), list(model.critic_target.features_extractor.encoder.parameters())
    assert model.critic.features_extractor is model.actor.features_extractor  # one encoder, shared
    data = model.replay_buffer.sample(BATCH)
    target = model.td_target(data.next_observations, data.rewards, data.dones)
    assert not target.requires_grad
    loss, h0 = model.critic_loss(data.observations, data.actions, target)
    assert h0.requires_grad

    model.policy.zero_grad(set_to_none=True)
    actor_loss, _ = model.actor_loss(h0)
    actor_loss.backward()
    assert _no_grad(enc), "the actor loss reached the encoder"
    assert _grad_sum(model.actor.mu.parameters()) > 0

    model.policy.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    assert _grad_sum(enc) > 0 and _grad_sum(model._q_online) > 0
    assert _no_grad(target_enc)

    model.policy.zero_grad(set_to_none=True)
    model.curl_loss(h0, data.observations).backward()
    assert _grad_sum(enc) > 0 and float(model.policy.curl_w.grad.abs().sum()) > 0
    assert _no_grad(target_enc)  # the key encoder only follows by EMA

    model.policy.zero_grad(set_to_none=True)
    aux, _ = model._aux.loss(model.replay_buffer, BATCH, 0)
    aux.backward()
    assert torch.isfinite(aux) and _grad_sum(enc) > 0
    assert _no_grad(model._q_online)


def test_decoupled_critic_leaves_the_encoder_alone_and_aux_trains_it(build):
    model = build("drq", encoder_mode="decoupled", aux="byol")
    assert model.pixel.mode == "decoupled"
    enc = list(model.encoder.parameters())
    data = model.replay_buffer.sample(BATCH)
    target = model.td_target(data.next_observations, data.rewards, data.dones)
    model.policy.zero_grad(set_to_none=True)
    loss, h0 = model.critic_loss(data.observations, data.actions, target)
    loss.backward()
    assert _no_grad(enc), "the critic loss reached a decoupled encoder"
    assert _grad_sum(model._q_online) > 0 and not h0.requires_grad

    model.policy.zero_grad(set_to_none=True)
    aux, _ = model._aux.loss(model.replay_buffer, BATCH, 0)
    aux.backward()
    assert _grad_sum(enc) > 0
    # one whole update moves the encoder (by the aux loss) and the Q networks
    before_enc, before_q = _copy(enc), _copy(model._q_online)
    model.train(1, BATCH)
    assert not _same(before_enc, enc) and not _same(before_q, model._q_online)


# --- the update formulas ------------------------------------------------------------------------------------


def test_targets_follow_their_ema_formulas(build):
    model = build("drq")
    tau, encoder_tau = model.tau, model.pixel.encoder_tau
    assert tau != encoder_tau  # the test tells the two rates apart
    enc, target_enc = list(model.encoder.parameters()), list(model.critic_target.features_extractor.encoder.parameters())
    assert _same(enc, target_enc)  # both start from the same encoder
    torch.manual_seed(3)
    with torch.no_grad():  # online weights away from the targets
        for p in [*enc, *model._q_online]:
            p.add_(0.1 * torch.randn_like(p))
    online_enc, online_q = _copy(enc), _copy(model._q_online)
    before_enc, before_q = _copy(target_enc), _copy(model._q_target)
    assert all(a.shape == b.shape for a, b in zip(online_q, before_q, strict=True))
    model.update_targets()
    for after, before, online in zip(target_enc, before_enc, online_enc, strict=True):
        torch.testing.assert_close(after, (1 - encoder_tau) * before + encoder_tau * online, rtol=0, atol=1e-6)
    for after, before, online in zip(model._q_target, before_q, online_q, strict=True):
        torch.testing.assert_close(after, (1 - tau) * before + tau * online, rtol=0, atol=1e-6)
    assert _same(online_enc, enc) and _same(online_q, model._q_online)  # the online weights stay


def _is_shift_of(view: torch.Tensor, obs: torch.Tensor, pad: int) -> bool:
    """``view`` is ``obs`` replicate-padded by ``pad`` and cropped back at some offset."""
    h, w = obs.shape[-2:]
    padded = F.pad(obs[None].float(), (pad,) * 4, mode="replicate")[0]
    return any(torch.equal(view.float(), padded[:, y : y + h, x : x + w])
               for y in range(2 * pad + 1) for x in range(2 * pad + 1))


def test_td_target_averages_over_k_augmentations_and_critic_loss_over_m(build):
    k, m = 3, 2
    model = build("drq", agent_change={"target_k": k, "critic_m": m})
    data = model.replay_buffer.sample(BATCH)
    obs, next_obs, n = data.observations, data.next_observations, BATCH
    alpha, gamma = model.ent_coef_value(), model.gamma

    torch.manual_seed(11)
    target = model.td_target(next_obs, data.rewards, data.dones)
    torch.manual_seed(11)  # the same draws, by hand: K shifted copies, then the actor's samples on all of them
    with torch.no_grad():
        x = model.augment(next_obs, k)
        actions, log_prob = model.actor_from_features(model.encode(x))
        soft = []
        for j in range(k):  # copy j of observation i is row j * n + i
            rows = slice(j * n, (j + 1) * n)
            assert all(_is_shift_of(x[j * n + i], next_obs[i], model.pixel.pad) for i in range(n))
            h_target = model.critic_target.features_extractor.features(x[rows])
            q = torch.stack([net(torch.cat([h_target, actions[rows]], 1)) for net in model.critic_target.q_networks])
            soft.append(q.min(0).values - alpha * log_prob[rows].reshape(-1, 1))
        expected = data.rewards + (1 - data.dones) * gamma * torch.stack(soft).mean(0)
    assert not all(torch.equal(x[:n], x[j * n : (j + 1) * n]) for j in range(1, k))  # K different views
    torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(torch.stack(soft).mean(0), soft[0])  # the average is not one view's

    torch.manual_seed(12)
    loss, h0 = model.critic_loss(obs, data.actions, target)
    torch.manual_seed(12)
    with torch.no_grad():
        x = model.augment(obs, m)
        per_view = []
        for j in range(m):
            h = model.encode(x[j * n : (j + 1) * n])
            if j == 0:
                torch.testing.assert_close(h0.detach(), h, rtol=1e-5, atol=1e-6)
            qs = [net(torch.cat([h, data.actions], 1)) for net in model.critic.q_networks]
            per_view.append(0.5 * sum(((q - target) ** 2).mean() for q in qs))
    torch.testing.assert_close(loss.detach(), torch.stack(per_view).mean(), rtol=1e-5, atol=1e-6)


def test_curl_logits_are_bilinear_minus_the_row_max_and_the_loss_is_cross_entropy(build):
    g = torch.Generator().manual_seed(0)
    q, keys, w = (torch.randn(*s, generator=g) for s in ((6, 5), (6, 5), (5, 5)))
    raw = torch.stack([torch.stack([q[i] @ w @ keys[j] for j in range(6)]) for i in range(6)])
    logits = bilinear_logits(q, keys, w)
    torch.testing.assert_close(logits, raw - raw.max(1, keepdim=True).values, rtol=1e-5, atol=1e-5)
    assert (logits.max(1).values == 0).all()
    diag = -(logits.diagonal() - torch.logsumexp(logits, 1)).mean()
    torch.testing.assert_close(bilinear_info_nce(q, keys, w), diag, rtol=1e-5, atol=1e-6)

    model = build("curl")
    data = model.replay_buffer.sample(BATCH)
    h = model.encode(model.augment(data.observations))
    torch.manual_seed(4)
    loss = model.curl_loss(h, data.observations)
    torch.manual_seed(4)  # the keys: the EMA encoder on another shift of the same observations
    with torch.no_grad():
        k = model.encode(model.augment(data.observations), target=True)
    raw = h @ model.policy.curl_w @ k.t()
    shifted = raw - raw.max(1, keepdim=True).values
    torch.testing.assert_close(loss, F.cross_entropy(shifted, torch.arange(BATCH)), rtol=1e-5, atol=1e-6)


# --- optimizer groups and the warm-up -----------------------------------------------------------------------


def test_sac_finetune_starts_from_the_saved_encoder(build, tmp_path):
    folder = _saved_conv(tmp_path / "enc")
    model = build("drq", fill=False, encoder=folder)
    saved = load_encoder(folder).state_dict()
    for extractor in (model.actor.features_extractor, model.critic_target.features_extractor):
        now = extractor.encoder.state_dict()
        assert saved.keys() == now.keys() and all(torch.equal(saved[k], now[k]) for k in saved)
    assert model.actor.features_extractor.encoder is not model.critic_target.features_extractor.encoder


def test_encoder_lr_multiplier_reaches_the_optimizer_groups(build):
    model = build("drq", encoder_lr_mult=0.1)
    lr = model.lr_schedule(1)
    enc = {id(p) for p in model.encoder.parameters()}

    def check() -> None:
        heads, encoder = model.critic.optimizer.param_groups
        assert {id(p) for p in encoder["params"]} == enc and not enc & {id(p) for p in heads["params"]}
        assert encoder["lr"] == pytest.approx(0.1 * lr) and heads["lr"] == pytest.approx(lr)
        assert all(gr["lr"] == pytest.approx(lr) for gr in model.actor.optimizer.param_groups)
        assert not enc & {id(p) for gr in model.actor.optimizer.param_groups for p in gr["params"]}

    check()
    for _ in range(2):  # SB3's schedule update, twice: the multiplier applies once, not compounded
        model._update_learning_rate([model.actor.optimizer, model.critic.optimizer])
        check()


def test_encoder_stays_unchanged_during_the_warmup(build):
    warm = FILLED + 10  # agent steps
    model = build("curl", aux="byol", encoder_warmup=8 * warm)
    enc = list(model.encoder.parameters())
    before_enc, before_q, before_w = _copy(enc), _copy(model._q_online), model.policy.curl_w.detach().clone()
    assert model.warming_up()
    model.train(2, BATCH)
    assert _same(before_enc, enc), "the encoder trained during its warm-up"
    assert torch.equal(before_w, model.policy.curl_w) and model._aux.steps == 0
    assert not _same(before_q, model._q_online)  # the Q networks did train
    model.num_timesteps = warm
    assert not model.warming_up()
    model.train(1, BATCH)
    assert not _same(before_enc, enc) and model._aux.steps == 1


# --- auxiliary SSL methods ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(aux_methods()))
def test_every_invariance_method_trains_a_decoupled_encoder_as_aux(method, build):
    model = build("drq", encoder_mode="decoupled", aux=method)
    enc = list(model.encoder.parameters())
    before = _copy(enc)
    model.train(2, BATCH)
    assert model._aux.steps == 2
    aux = model.logger.name_to_value["train/aux_loss"]
    assert aux == aux and abs(aux) < float("inf"), aux
    assert not _same(before, enc)  # decoupled: the aux loss alone moved it
    assert all(torch.isfinite(p).all() for p in enc)


def test_aux_methods_are_the_pair_methods():
    assert sorted(aux_methods()) == ["barlow", "byol", "dino", "moco", "mocov3", "simclr", "simsiam", "swav", "vicreg"]


# --- PPO ------------------------------------------------------------------------------------------------------


def _ppo(**change) -> PPOConfig:
    return dataclasses.replace(PPOConfig(), n_steps=16, batch_size=16, n_epochs=1, net_arch=[16], proj_dim=4, **change)


def test_ppo_finetune_keeps_the_pretrained_encoder_and_trains_it_at_its_lr(build, tmp_path):
    folder = _saved_conv(tmp_path / "enc")
    model = build(agent_config=_ppo(), fill=False, encoder=folder, encoder_mode="finetune", encoder_lr_mult=0.1)
    assert type(model).__name__ == "ScaledPPO" and model.policy.ortho_init
    extractor = model.policy.features_extractor
    assert model.policy.pi_features_extractor is extractor and model.policy.vf_features_extractor is extractor
    saved = load_encoder(folder).state_dict()
    now = extractor.encoder.state_dict()
    assert saved.keys() == now.keys() and all(torch.equal(saved[k], now[k]) for k in saved)
    rest, encoder = model.policy.optimizer.param_groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in extractor.encoder.parameters()}
    assert encoder["lr"] == pytest.approx(0.1 * model.lr_schedule(1)) and rest["lr"] == pytest.approx(model.lr_schedule(1))
    model.learn(16)  # one rollout, one update
    assert encoder["lr"] == pytest.approx(0.1 * model.lr_schedule(1))
    assert any(not torch.equal(saved[k], v) for k, v in extractor.encoder.state_dict().items())


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_ppo_runs_frozen_and_finetuned(mode, tmp_path):
    folder = _saved_conv(tmp_path / "enc")
    res = train_agent(TrainConfig(agent=_ppo(), env="dmc_cartpole", encoder=folder, encoder_mode=mode, steps=8 * 32,
                                  eval_every=0, eval_episodes=1, video=False, device="cpu", progress=False,
                                  out=str(tmp_path / "run")))
    assert res["agent"] == "ppo" and res["encoder_mode"] == mode and res["agent_steps"] == 32
    assert (res["frames_encoded"] is not None) == (mode == "frozen")
    assert (tmp_path / "run" / "policy.safetensors").stat().st_size > 0


# --- the command line -----------------------------------------------------------------------------------------

TINY_CLI = ["env=dmc_cartpole", *(f"agent.backbone.{k}={v}" for k, v in TINY_CONV.items() if k != "arch"),
            f"agent.batch_size={BATCH}", "agent.net_arch=[16]", "agent.learning_starts=15", "steps=480", "ckpt_every=160",
            "eval_every=0", "eval_episodes=1", "video=false", "device=cpu", "progress=false"]


def _cli(*args: str, kill_after: int | None = None) -> subprocess.CompletedProcess:
    pre = ["tests/kill_at.py", str(kill_after)] if kill_after else []
    return subprocess.run([sys.executable, *pre, "agents/train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("args", [["agent=drq"], ["agent=curl", "aux=byol", "aux_positive=temporal", "aux_k=2"]],
                         ids=["drq", "curl_aux_byol_temporal"])
def test_pixel_agent_killed_after_a_checkpoint_resumes_bit_identical(args, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    p = _cli(*TINY_CLI, *args, f"out={whole}")
    assert p.returncode == 0, p.stderr[-3000:]
    p = _cli(*TINY_CLI, *args, f"out={cut}", kill_after=2)  # SIGKILL right after the checkpoint at 40 agent steps
    assert p.returncode == -9, p.stderr[-3000:]
    assert (cut / checkpoint.CHECKPOINT).exists() and not (cut / "results.json").exists()
    p = _cli(*TINY_CLI, *args, f"out={cut}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert _sha(cut / "policy.safetensors") == _sha(whole / "policy.safetensors")
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole, cut))
    assert a["eval_returns"] == b["eval_returns"] and a["evals"] == b["evals"]
    assert b["resumed_at_env_steps"] == [8 * 40] and a["resumed_at_env_steps"] == []
    assert a["agent"] == args[0][6:] and a["encoder_mode"] == "finetune" and a["env_steps"] == 480
    assert a["aux"] == ("byol" if "aux=byol" in args else None)
    assert "resumed from" in (cut / "log.txt").read_text()


def test_cli_decoupled_aux_with_temporal_positives(tmp_path):
    out = tmp_path / "atc"
    p = _cli(*TINY_CLI, "agent=drq", "encoder_mode=decoupled", "aux=simclr", "aux_positive=temporal", f"out={out}")
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert (res["encoder_mode"], res["aux"], res["aux_positive"]) == ("decoupled", "simclr", "temporal")
    assert res["policy"] == "CnnPolicy" and res["env_steps"] == 480


@pytest.mark.parametrize("args,needle", [
    (["agent=drq", "aux=nope"], "aux=nope"),
    (["agent=sac", "encoder=state", "aux=byol"], "aux=byol with encoder=state"),
    (["agent=sac", "encoder_mode=finetune", "encoder=state"], "encoder_mode=finetune with encoder=state"),
    (["agent=drq", "encoder=<enc32>", "image_size=48"], "image_size=48"),
    (["agent=drq", "encoder_mode=decoupled"], "encoder_mode=decoupled"),
    (["agent=drq", "encoder_lr_mult=-1"], "encoder_lr_mult=-1"),
], ids=["unknown_aux", "aux_on_state", "finetune_state", "encoder_size", "decoupled_no_aux", "negative_lr_mult"])
def test_bad_pixel_agent_settings_get_one_line_and_exit_2(args, needle, tmp_path):
    if "encoder=<enc32>" in args:
        args = [f"encoder={_saved_conv(tmp_path / 'enc32', 32)}" if a == "encoder=<enc32>" else a for a in args]
    out = tmp_path / "never"
    p = _cli(*args, "steps=160", "device=cpu", "progress=false", f"out={out}")
    assert p.returncode == 2, p.stderr[-3000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def _sweep_results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]


def test_cli_every_aux_method_runs_in_one_multirun(tmp_path):
    """Each invariance method as the auxiliary loss from the command line: one joblib sweep, one job per method."""
    names = sorted(aux_methods())
    sweep = tmp_path / "sweep"
    p = _cli("-m", *TINY_CLI, "steps=160", "agent=drq", "encoder_mode=decoupled", f"aux={','.join(names)}",
             f"hydra.sweep.dir={sweep}")
    assert p.returncode == 0, p.stderr[-3000:]
    results = _sweep_results(sweep)
    assert sorted(r["aux"] for r in results) == names
    assert all(r["encoder_mode"] == "decoupled" and r["env_steps"] == 160 for r in results)


def test_cli_encoder_modes_and_ppo_run(tmp_path):
    """frozen and finetune SAC on the same scratch encoder, and PPO on frozen features, from the command line (PPO
    learns in whole rollouts: 20 agent steps of 20-step rollouts are exactly steps=160 on cartpole)."""
    sweep = tmp_path / "modes"
    p = _cli("-m", *TINY_CLI, "steps=160", "agent=sac", "encoder=scratch", "encoder_mode=frozen,finetune",
             f"hydra.sweep.dir={sweep}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(r["encoder_mode"] for r in _sweep_results(sweep)) == ["finetune", "frozen"]
    out = tmp_path / "ppo"
    p = _cli("env=dmc_cartpole", "agent=ppo", "encoder=scratch", "encoder_mode=frozen", *(f"agent.backbone.{k}={v}" for k, v
             in TINY_CONV.items() if k != "arch"), "agent.n_steps=20", "agent.batch_size=10", "steps=160", "eval_every=0",
             "eval_episodes=1", "video=false", "device=cpu", "progress=false", f"out={out}")
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert (res["agent"], res["encoder_mode"], res["env_steps"]) == ("ppo", "frozen", 160)
