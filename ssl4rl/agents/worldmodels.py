"""The recurrent world model (Ha & Schmidhuber, "World Models", 2018) on a DMC task: ``agent=worldmodels``.

    python agents/train.py env=dmc_cartpole agent=worldmodels                      # V = a VAE it trains
    python agents/train.py env=dmc_cartpole agent=worldmodels encoder=<folder>     # V = a frozen ssl4rl encoder + PCA
    python agents/train.py env=dmc_cartpole agent=worldmodels agent.random_m=true  # + the untrained-M control

Pipeline (``train_worldmodels``), each stage checkpointed under ``out/checkpoint/``:

1. collect ``steps`` env steps of uniform-random episodes (``ssl4rl.data.collect``); ``agent.holdout`` of them are
   held out for validation losses and the reconstruction figure;
2. V: train the VAE on single frames (``encoder=vae``), or fit a PCA map on a frozen encoder's features;
3. encode every episode (VAE: posterior mean and log-variance; M trains on fresh samples of z each batch, as the
   paper);
4. M: train the MDN-RNN on the encoded sequences (mixture NLL of z_{t+1} + reward MSE);
5. C: CMA-ES on the linear controller a = tanh(W [z, h] + b), by default in the DREAM (rollouts inside M at
   temperature ``agent.temperature`` from encoded reset frames, the predicted rewards summed over an episode's
   length), or in the real env (``agent.train_in=real``); the final controller is the ES mean;
6. evaluate the final controller in the real env (``eval_episodes``) and in the dream (``agent.dream_eval``
   rollouts); with ``agent.random_m=true`` stages 5-6 also run on an untrained M (the control of the PyTorch
   replication that found it scores as well on CarRacing).

Outputs: ``results.json`` (real and dream returns, their gap, per variant; ``eval_return_*`` keys are the trained
M's real returns so ``ssl4rl.report`` lists the run), the table (printed, and ``results.md``), ``vae_recon.png``,
``cma_curve.png`` (best and mean population fitness per generation, the ES mean's dream fitness, real-env checks),
``eval.gif`` (the controller in the real env) and ``dream.gif`` (a dream decoded by the VAE), and the models under
``worldmodel/`` (``vae`` or ``v``, ``mdnrnn``, ``controller``; the control's under ``worldmodel_random_m/``),
loadable with ``load_world_model``.

Resume: V and M checkpoint every ``agent.ckpt_updates`` optimizer steps, CMA-ES after every generation (its state
without pickle, ``ssl4rl.worldmodels.controller.es_state``); every random draw comes from a generator seeded by
the run seed and the stage (dream noise and env seeds by the generation), so a rerun with the same ``out=`` after a
SIGKILL ends with a bit-identical controller. ``ckpt_every`` and ``eval_every`` (env-step schedules of SAC) and
``frame_stack`` (M carries the history; V sees one frame) are not used.

Default sizes and timings, measured stage by stage with short runs on this project's 2-core CPU (shared with
other jobs, one torch thread; two threads under contention were 5x slower for the VAE), dmc_cartpole at 64 px:
100 random episodes (``steps=100000``, 12.5k agent steps at ~425/s) ~30 s; VAE 1500 steps of batch 64 at
0.26 s ~6.5 min; M 1500 steps of 32 whole episodes (125 steps) at 0.09-0.2 s ~2.5-5 min; CMA-ES in the dream,
289 parameters, (64 + the ES mean) x 16 rollouts x 125 steps at 1.4-2.2 s per generation (the LSTM over 1040
rollouts is most of it), 200 generations ~5-7 min: 15-20 minutes in all, ~5-7 more with ``agent.random_m=true``.
``train_in=real``: 16 candidates x 1 episode at ~5.6 s per generation (+10 s once, creating 16 envs), 40
generations ~4 min instead of the dream's. The return a default run reaches has not been measured here.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl4rl.config import WorldModelsConfig
from ssl4rl.data import collect, load_split
from ssl4rl.data.episodes import Episode
from ssl4rl.encoders import encoder_meta, load_encoder
from ssl4rl.envs import DMC_EPISODE_ENV_STEPS, check_env_name, episode_steps, has_rewards, make_env
from ssl4rl.errors import UserError
from ssl4rl.fields import build
from ssl4rl.runs import claimed_run_dir, log
from ssl4rl.utils import atomic_path, load_tensors, progress_bar, read_json, resolve_device, write_json, write_text
from ssl4rl.viz import _save_fig, plt, save_gif, save_image_rows
from ssl4rl.worldmodels import load_world_model, save_world_model
from ssl4rl.worldmodels.controller import LinearController, batched_actions, cma_generation, es_state, make_es, restore_es
from ssl4rl.worldmodels.mdnrnn import MDNRNN, mdn_sample
from ssl4rl.worldmodels.vae import ConvVAE, ProjectedEncoder

CHECKPOINT = "checkpoint"
# what a damaged or foreign checkpoint raises (weights_only refuses a pickle payload with UnpicklingError)
_UNREADABLE = (RuntimeError, KeyError, ValueError, EOFError, TypeError, IndexError, pickle.UnpicklingError)
OBJECTIVES = (None, "recon")  # V's objective is the VAE's reconstruction; other objectives come as encoder=<folder>
VARIANTS = ("trained_m", "random_m")


def agent_config(agent: Any) -> WorldModelsConfig:
    """``cfg.agent`` (a WorldModelsConfig, an OmegaConf node or a dict) as a validated WorldModelsConfig; an unknown
    option or a value outside its declared range is one UserError line."""
    if isinstance(agent, WorldModelsConfig):
        values = dataclasses.asdict(agent)
    else:
        from omegaconf import OmegaConf

        values = dict(OmegaConf.to_container(agent, resolve=True) if OmegaConf.is_config(agent) else agent)
    return build(WorldModelsConfig, values, "agent.")


def check_config(cfg: Any) -> WorldModelsConfig:
    """One-line refusals of what this agent cannot do, before anything is written; returns the checked agent config."""
    agent = agent_config(cfg.agent)
    check_env_name(cfg.env)
    if not has_rewards(cfg.env):
        raise UserError(f"env={cfg.env} gives no rewards; agent=worldmodels trains its controller on rewards: "
                        "use a dm_control task (e.g. env=dmc_cartpole)")
    if cfg.objective not in OBJECTIVES:
        raise UserError(f"objective={cfg.objective}: agent=worldmodels trains V as a VAE (objective=recon); for another "
                        "objective pretrain an encoder (pretrain/run.py) and pass encoder=<its folder>")
    if cfg.encoder != "vae" and not (Path(str(cfg.encoder)) / "encoder.json").is_file():
        raise UserError(f"encoder={cfg.encoder}: agent=worldmodels takes encoder=vae (trained here) or a saved encoder "
                        "folder (with encoder.json)")
    if cfg.encoder == "vae" and cfg.image_size is not None and cfg.image_size % 16:
        raise UserError(f"image_size={cfg.image_size}: the VAE needs a multiple of 16 (e.g. 64, the paper's)")
    return agent


def _seed(seed: int, what: str) -> int:
    """A 32-bit seed for one purpose of one run (stable across processes)."""
    return zlib.crc32(f"{seed}:{what}".encode())


def _generator(seed: int, what: str, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(_seed(seed, what))


class _Book:
    """``checkpoint/progress.json``: finished stages, seconds spent per stage, where the run resumed."""

    def __init__(self, ck: Path) -> None:
        self.path = ck / "progress.json"
        self.data = read_json(self.path) if self.path.exists() else {"done": [], "seconds": {}, "resumed_at": []}

    def done(self, stage: str) -> bool:
        return stage in self.data["done"]

    def finish(self, stage: str, seconds: float) -> None:
        self.data["done"].append(stage)
        self.add_seconds(stage, seconds)

    def add_seconds(self, stage: str, seconds: float) -> None:
        self.data["seconds"][stage] = round(self.data["seconds"].get(stage, 0.0) + seconds, 2)
        write_json(self.path, self.data)


# --- the trainable parts -----------------------------------------------------------------------------


def _optimize(
    name: str, model: torch.nn.Module, loss_fn: Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]],
    steps: int, lr: float, clip: float | None, path: Path, every: int, seed: int, progress: bool,
) -> list[tuple[int, float]]:
    """Adam on ``loss_fn(generator)`` for ``steps`` steps, resuming from and checkpointing to ``path`` (model,
    optimiser, generator, step, loss history); returns the history (step, mean loss of the last 50 steps)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = _generator(seed, name)
    start, history, recent = 0, [], []
    if path.exists():
        try:
            ck = load_tensors(path)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            gen.set_state(ck["generator"])
            start, history, recent = int(ck["step"]), [tuple(h) for h in ck["history"]], list(ck["recent"])
        except _UNREADABLE as e:
            raise UserError(f"{path}: not a checkpoint of this run ({type(e).__name__}); choose a new out=") from None
        log.info(f"{name}: resumed from {path} at step {start}")
    model.train()
    bar = progress_bar(total=steps, initial=start, desc=f"train {name}", unit="step", disable=not progress)
    for step in range(start, steps):
        loss, logs = loss_fn(gen)
        if not torch.isfinite(loss):
            raise UserError(f"{name}: the loss became {float(loss)} at step {step}; lower agent.{name}_lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        recent.append(logs["loss"])
        if (step + 1) % 50 == 0 or step + 1 == steps:
            history.append((step + 1, float(np.mean(recent))))
            bar.set_postfix(loss=f"{history[-1][1]:.3f}")
            recent = []
        bar.update(1)
        if (step + 1) % every == 0 and step + 1 < steps:
            with atomic_path(path) as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "generator": gen.get_state(),
                            "step": step + 1, "history": history, "recent": recent}, tmp)
    bar.close()
    model.eval()
    return history


def _frames(episodes: list[Episode]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([e.frames for e in episodes]))


def _train_v(cfg: Any, agent: WorldModelsConfig, train: list[Episode], held: list[Episode], ck: Path, dev: torch.device,
             size: int) -> tuple[Any, dict[str, Any]]:
    """Stage 2: the VAE (or the PCA map on a frozen encoder); returns V and its validation numbers."""
    frames, held_frames = _frames(train), _frames(held)
    if cfg.encoder != "vae":
        enc = load_encoder(cfg.encoder, dev)
        v = ProjectedEncoder.fit(enc, frames, agent.z_dim if agent.project == "pca" else None)
        return v, {"kind": v.kind, "z_dim": v.z_dim, "encoder": str(cfg.encoder), "project": agent.project}
    torch.manual_seed(_seed(cfg.seed, "vae-init"))
    vae = ConvVAE(size, agent.z_dim, agent.kl_tolerance).to(dev)

    def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        idx = torch.randint(len(frames), (agent.vae_batch,), generator=gen)
        return vae.loss(frames[idx].to(dev), gen)

    history = _optimize("vae", vae, loss, agent.vae_steps, agent.vae_lr, None, ck / "vae.pt", agent.ckpt_updates,
                        cfg.seed, cfg.progress)
    with torch.no_grad():
        val, logs = vae.loss(held_frames[:512].to(dev), _generator(cfg.seed, "vae-val"))
        mu, _ = vae.latent(held_frames[:512])
        mse = float((vae.decode(mu) - held_frames[:512].to(dev).float() / 255).pow(2).mean())
    return vae, {"kind": vae.kind, "z_dim": vae.z_dim, "train_loss": history[-1][1], "val_loss": float(val),
                 "val_kl": logs["kl"], "val_recon_mse_per_pixel": mse}


def _encode(v: Any, episodes: list[Episode]) -> dict[str, torch.Tensor]:
    """Stage 3: latents of every frame (mu and, for the VAE, logvar) (E, T+1, z), actions (E, T, A), rewards (E, T)."""
    t = min(len(e) for e in episodes)  # DMC episodes all have the same length
    mu, logvar = v.latent(torch.from_numpy(np.concatenate([e.frames[: t + 1] for e in episodes])))
    shape = (len(episodes), t + 1, -1)
    out = {"mu": mu.cpu().reshape(shape),
           "actions": torch.from_numpy(np.stack([e.actions[:t] for e in episodes])),
           "rewards": torch.from_numpy(np.stack([e.rewards[:t] for e in episodes]))}
    if logvar is not None:
        out["logvar"] = logvar.cpu().reshape(shape)
    return out


def _sample_z(lat: dict[str, torch.Tensor], idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """z of episodes ``idx``: a fresh posterior sample for a VAE, the deterministic map otherwise."""
    mu = lat["mu"][idx]
    if "logvar" not in lat:
        return mu
    return mu + torch.exp(0.5 * lat["logvar"][idx]) * torch.randn(mu.shape, generator=gen, device=gen.device)


def _m_batch(lat: dict[str, torch.Tensor], batch: int, seq_len: int | None, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of (z (B,L+1,z), a (B,L,A), r (B,L)): whole episodes, or windows of ``seq_len`` steps."""
    e, t = lat["rewards"].shape
    idx = torch.randint(e, (batch,), generator=gen)
    z, a, r = _sample_z(lat, idx, gen), lat["actions"][idx], lat["rewards"][idx]
    if seq_len is None or seq_len >= t:
        return z, a, r
    start = torch.randint(t - seq_len + 1, (batch,), generator=gen)
    steps = start[:, None] + torch.arange(seq_len)
    rows = torch.arange(batch)[:, None]
    return z[rows, torch.cat([steps, steps[:, -1:] + 1], 1)], a[rows, steps], r[rows, steps]


def _new_m(cfg: Any, agent: WorldModelsConfig, z_dim: int, action_dim: int, dev: torch.device) -> MDNRNN:
    """M at its seeded initialisation (the random-M control keeps it)."""
    torch.manual_seed(_seed(cfg.seed, "m-init"))
    return MDNRNN(z_dim, action_dim, agent.hidden, agent.mixtures).to(dev).eval()


def _train_m(cfg: Any, agent: WorldModelsConfig, lat: dict[str, torch.Tensor], held: dict[str, torch.Tensor], ck: Path,
             dev: torch.device) -> tuple[MDNRNN, dict[str, Any]]:
    """Stage 4: the MDN-RNN on encoded sequences; returns M and its validation numbers."""
    m = _new_m(cfg, agent, lat["mu"].shape[-1], lat["actions"].shape[-1], dev)

    def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        z, a, r = _m_batch(lat, agent.m_batch, agent.seq_len, gen)
        return m.loss(z.to(dev), a.to(dev), r.to(dev), agent.reward_weight)

    history = _optimize("m", m, loss, agent.m_steps, agent.m_lr, 1.0, ck / "mdnrnn.pt", agent.ckpt_updates, cfg.seed,
                        cfg.progress)
    with torch.no_grad():
        gen = _generator(cfg.seed, "m-val")
        idx = torch.arange(len(held["rewards"]))
        _, logs = m.loss(_sample_z(held, idx, gen).to(dev), held["actions"].to(dev), held["rewards"].to(dev),
                         agent.reward_weight)
    return m, {"train_loss": history[-1][1], "val_nll": logs["nll"], "val_reward_mse": logs["reward_mse"],
               "reward_variance": float(held["rewards"].var())}


# --- rollouts --------------------------------------------------------------------------------------------


@torch.no_grad()
def dream_returns(m: MDNRNN, params: torch.Tensor, z0: torch.Tensor, horizon: int, tau: float, gen: torch.Generator,
                  record: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Roll P controllers (flat params (P, n)) R times each inside M from the start latents z0 (R, z); rollout r
    of every candidate uses the same start and the same random numbers. Returns the summed predicted rewards (P, R)
    and, if ``record``, the latents of candidate 0's rollout 0."""
    p, r, z_dim = params.shape[0], z0.shape[0], z0.shape[1]
    z = z0.repeat(p, 1)
    state = m.initial_state(p * r)
    total = torch.zeros(p * r, device=z.device)
    seen = [z[0]] if record else []
    for _ in range(horizon):
        x = torch.cat([z, state[0][0]], dim=-1).view(p, r, -1)
        a = batched_actions(params, x, m.action_dim).view(p * r, -1)
        mix, reward, state = m.step(z, a, state)
        total += reward
        u = torch.rand((r, z_dim), generator=gen, device=z.device).repeat(p, 1)
        eps = torch.randn((r, z_dim), generator=gen, device=z.device).repeat(p, 1)
        z = mdn_sample(mix, tau, u, eps)
        if record:
            seen.append(z[0])
    return total.view(p, r), seen


class RealRollouts:
    """Controllers with V and M in the real env: P envs stepped in lockstep, each episode from a given seed."""

    def __init__(self, env: str, image_size: int) -> None:
        self.env, self.image_size = env, image_size
        self.envs: list[Any] = []

    @torch.no_grad()
    def returns(self, v: Any, m: MDNRNN, params: torch.Tensor, seeds: list[int], record: bool = False
                ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Returns (P, len(seeds)) of P controllers, each run once from every env seed; the frames (H,W,3) of
        candidate 0's first episode if ``record``."""
        p = params.shape[0]
        while len(self.envs) < p:
            self.envs.append(make_env(self.env, image_size=self.image_size, frame_stack=1))
        returns, frames = np.zeros((p, len(seeds))), []
        for j, seed in enumerate(seeds):
            obs = [e.reset(seed=seed)[0] for e in self.envs[:p]]
            state, done = m.initial_state(p), False
            while not done:
                if record and j == 0:
                    frames.append(obs[0].transpose(1, 2, 0))
                z = v.latent(torch.from_numpy(np.stack(obs)))[0]
                a = batched_actions(params, torch.cat([z, state[0][0]], -1).unsqueeze(1), m.action_dim).squeeze(1)
                _, _, state = m.step(z, a, state)
                for i, (e, act) in enumerate(zip(self.envs[:p], a.cpu().numpy(), strict=True)):
                    obs[i], reward, term, trunc, _ = e.step(act)
                    returns[i, j] += reward
                    done = term or trunc  # DMC episodes all end at the same step
        return returns, frames

    def close(self) -> None:
        for e in self.envs:
            e.close()
        self.envs = []


# --- C: CMA-ES ----------------------------------------------------------------------------------------------


@dataclass
class _Evolution:
    """What one CMA-ES run needs besides the models."""

    tag: str  # trained_m | random_m
    dream: bool
    popsize: int
    rollouts: int
    generations: int
    horizon: int
    z0: Callable[[torch.Generator, int], torch.Tensor]  # (generator, R) -> start latents (R, z)
    real: RealRollouts
    log: dict[str, list] = field(default_factory=lambda: {"best": [], "mean": [], "es_mean": [], "seconds": [],
                                                          "real_checks": [], "real_episodes": []})


def _evolve(cfg: Any, agent: WorldModelsConfig, v: Any, m: MDNRNN, ev: _Evolution, ck: Path, dev: torch.device
            ) -> tuple[np.ndarray, dict[str, list]]:
    """Stage 5: CMA-ES on the controller (dream or real), checkpointed every generation; returns the ES mean
    (the final controller) and the per-generation log."""
    in_dim = v.z_dim + m.hidden
    path = ck / f"cma_{ev.tag}.pt"
    if path.exists():
        try:
            state = load_tensors(path)
            es, start, ev.log = restore_es(state["es"]), int(state["generation"]), state["log"]
        except _UNREADABLE as e:
            raise UserError(f"{path}: not a CMA-ES checkpoint of this run ({type(e).__name__}); choose a new out=") from None
        log.info(f"CMA-ES ({ev.tag}): resumed from {path} at generation {start}")
    else:
        es, start = make_es(LinearController.n_params(in_dim, m.action_dim), agent.sigma0, ev.popsize,
                            _seed(cfg.seed, f"cma-{ev.tag}")), 0
    center: list[float] = []

    def fitness(pop: np.ndarray) -> np.ndarray:
        g = es.countiter
        params = torch.as_tensor(np.vstack([pop, es.mean]) if ev.dream else pop, dtype=torch.float32, device=dev)
        if ev.dream:
            gen = _generator(cfg.seed, f"dream-{g}", dev)
            returns = dream_returns(m, params, ev.z0(gen, ev.rollouts), ev.horizon, agent.temperature, gen)[0]
            values = returns.mean(1).cpu().double().numpy()
            center.append(float(values[-1]))
            return values[:-1]
        seeds = [_seed(cfg.seed, f"real-{g}-{r}") for r in range(ev.rollouts)]
        ev.log["real_episodes"].append(len(pop) * len(seeds))
        return ev.real.returns(v, m, params, seeds)[0].mean(1)

    bar = progress_bar(total=ev.generations, initial=start, desc=f"CMA-ES {ev.tag} ({'dream' if ev.dream else 'real'})",
                       unit="gen", disable=not cfg.progress)
    for g in range(start, ev.generations):
        t0 = time.perf_counter()
        center.clear()
        values = cma_generation(es, fitness)
        ev.log["best"].append(float(values.max()))
        ev.log["mean"].append(float(values.mean()))
        ev.log["es_mean"].append(center[0] if center else None)
        if agent.real_check_every and (g + 1) % agent.real_check_every == 0:
            mean = torch.as_tensor(es.mean[None], dtype=torch.float32, device=dev)
            ret = float(ev.real.returns(v, m, mean, [_seed(cfg.seed, f"check-{g}")])[0][0, 0])
            ev.log["real_checks"].append([g + 1, ret])
        ev.log["seconds"].append(round(time.perf_counter() - t0, 3))
        bar.set_postfix(best=f"{values.max():.1f}", mean=f"{values.mean():.1f}")
        bar.update(1)
        with atomic_path(path) as tmp:
            torch.save({"es": es_state(es), "generation": g + 1, "log": ev.log}, tmp)
    bar.close()
    return np.array(es.mean), ev.log


# --- the pipeline -------------------------------------------------------------------------------------------


def train_worldmodels(cfg: Any, out: str | Path) -> dict[str, Any]:
    """Run (or resume) the V-M-C pipeline for ``cfg`` (a TrainConfig with ``agent`` a WorldModelsConfig) into ``out``;
    returns what ``out/results.json`` holds. ``out`` is claimed as the command line claims it."""
    agent = check_config(cfg)
    with claimed_run_dir(out, resume_file=CHECKPOINT) as (folder, _):
        return _train_worldmodels(cfg, folder, agent)


def _train_worldmodels(cfg: Any, out: Path, agent: WorldModelsConfig) -> dict[str, Any]:
    dev = resolve_device(cfg.device)
    ck = out / CHECKPOINT
    resuming = ck.is_dir() and any(ck.iterdir())
    ck.mkdir(parents=True, exist_ok=True)
    book = _Book(ck)
    if resuming:
        last = book.data["done"][-1] if book.data["done"] else "start"
        book.data["resumed_at"].append(last)
        log.info(f"resumed from {ck} after stage {last}")
    vae_run = cfg.encoder == "vae"
    size = cfg.image_size or (64 if vae_run else encoder_meta(cfg.encoder)["image_size"])
    ep_steps = episode_steps(cfg.env)
    repeat = check_env_name(cfg.env)[2]

    # 1. random rollouts
    episodes = max(2, math.ceil(cfg.steps / DMC_EPISODE_ENV_STEPS))
    if not book.done("collect"):
        t0 = time.perf_counter()
        shutil.rmtree(ck / "rollouts", ignore_errors=True)
        collect(cfg.env, episodes, ck / "rollouts", seed=cfg.seed, image_size=size, progress=cfg.progress)
        book.finish("collect", time.perf_counter() - t0)
    meta = read_json(ck / "rollouts" / "meta.json")
    train_eps, held_eps = load_split(ck / "rollouts", holdout=agent.holdout, seed=cfg.seed)
    if not any(e.rewards.any() for e in train_eps):
        raise UserError(f"env={cfg.env}: every reward of {episodes} random episodes is zero; agent=worldmodels needs "
                        "rewards (choose a dm_control task or more steps)")

    # 2. V
    v_dir = out / "worldmodel" / ("vae" if vae_run else "v")
    if not book.done("v"):
        t0 = time.perf_counter()
        v, v_info = _train_v(cfg, agent, train_eps, held_eps, ck, dev, size)
        save_world_model(v, v_dir, **v_info, env=cfg.env, image_size=size)
        book.finish("v", time.perf_counter() - t0)
    v = load_world_model(v_dir, dev)
    v_info = {k: val for k, val in read_json(v_dir / "model.json").items() if k not in ("format", "kwargs", "created")}
    if vae_run:
        _recon_figure(v, _frames(held_eps), out / "vae_recon.png")

    # 3. encode
    if not book.done("encode"):
        t0 = time.perf_counter()
        with atomic_path(ck / "latents.pt") as tmp:
            torch.save({"train": _encode(v, train_eps), "held": _encode(v, held_eps)}, tmp)
        book.finish("encode", time.perf_counter() - t0)
    try:
        latents = load_tensors(ck / "latents.pt")
        if not {"train", "held"} <= set(latents):
            raise KeyError("train/held")
    except _UNREADABLE as e:
        raise UserError(f"{ck / 'latents.pt'}: not a checkpoint of this run ({type(e).__name__}); choose a new out=") from None

    # 4. M
    m_dir = out / "worldmodel" / "mdnrnn"
    if not book.done("m"):
        t0 = time.perf_counter()
        m, m_info = _train_m(cfg, agent, latents["train"], latents["held"], ck, dev)
        save_world_model(m, m_dir, **m_info, env=cfg.env)
        book.finish("m", time.perf_counter() - t0)
    models = {"trained_m": load_world_model(m_dir, dev)}
    m_info = {k: val for k, val in read_json(m_dir / "model.json").items() if k not in ("format", "kwargs", "created")}
    if agent.random_m:
        models["random_m"] = _new_m(cfg, agent, v.z_dim, models["trained_m"].action_dim, dev)
        save_world_model(models["random_m"], out / "worldmodel_random_m" / "mdnrnn", untrained=True, env=cfg.env)

    # 5. C, 6. evaluation
    dream = agent.train_in == "dream"
    horizon = agent.dream_horizon or ep_steps
    real = RealRollouts(cfg.env, size)
    z0 = _start_latents(latents["train"], dev)
    variants, logs = {}, {}
    t_eval = 0.0
    try:
        for tag, m in models.items():
            stage = f"cma_{tag}"
            ev = _Evolution(tag, dream, agent.popsize if dream else agent.real_popsize,
                            agent.rollouts if dream else agent.real_rollouts,
                            agent.generations if dream else agent.real_generations, horizon, z0, real)
            c_dir = out / ("worldmodel" if tag == "trained_m" else "worldmodel_random_m") / "controller"
            t0 = time.perf_counter()
            if not book.done(stage):
                best, logs[tag] = _evolve(cfg, agent, v, m, ev, ck, dev)
                save_world_model(LinearController.from_flat(best, v.z_dim + m.hidden, m.action_dim), c_dir, env=cfg.env,
                                 train_in=agent.train_in, generations=ev.generations, popsize=ev.popsize)
                book.finish(stage, time.perf_counter() - t0)
            else:
                logs[tag] = load_tensors(ck / f"cma_{tag}.pt")["log"]
            c = load_world_model(c_dir, dev)
            t0 = time.perf_counter()
            variants[tag] = _evaluate(cfg, agent, v, m, c, real, z0, horizon, dev, out if tag == "trained_m" else None)
            t_eval += time.perf_counter() - t0
    finally:
        real.close()
    book.add_seconds("eval", t_eval)
    _cma_figure(logs, out / "cma_curve.png", agent.train_in)

    collect_steps = int(meta["frames"] - meta["episodes"]) * repeat
    train_steps = sum(sum(lg["real_episodes"]) + len(lg["real_checks"]) for lg in logs.values()) * ep_steps * repeat
    eval_steps = len(variants) * cfg.eval_episodes * ep_steps * repeat
    main = variants["trained_m"]
    results = {
        "agent": "worldmodels", "env": cfg.env, "encoder": str(cfg.encoder),
        "encoder_path": None if vae_run else str(cfg.encoder), "train_in": agent.train_in, "seed": cfg.seed,
        "eval_return_mean": main["real_mean"], "eval_return_std": main["real_std"], "eval_returns": main["real_returns"],
        "eval_episodes": cfg.eval_episodes, "variants": variants,
        "env_steps": collect_steps + train_steps + eval_steps, "collect_env_steps": collect_steps,
        "train_env_steps": train_steps, "eval_env_steps": eval_steps, "action_repeat": repeat,
        "random_policy_return": meta["mean_return"], "image_size": size,
        "v": v_info, "m": m_info,
        "cma": {"popsize": agent.popsize if dream else agent.real_popsize,
                "rollouts": agent.rollouts if dream else agent.real_rollouts,
                "generations": agent.generations if dream else agent.real_generations,
                "parameters": LinearController.n_params(v.z_dim + agent.hidden, models["trained_m"].action_dim),
                "horizon": horizon if dream else ep_steps, "temperature": agent.temperature,
                "seconds_per_generation": {t: round(float(np.mean(lg["seconds"])), 3) for t, lg in logs.items()}},
        "stage_seconds": book.data["seconds"],
        "rl_seconds": round(sum(book.data["seconds"].values()), 1),  # finished stages (a killed stage's time is lost)
        "resumed_at": book.data["resumed_at"], "device": str(dev),
        "config": dataclasses.asdict(agent),
    }
    write_json(out / "results.json", results)
    table = results_table(results)
    write_text(out / "results.md", table + "\n")
    print(table)
    shutil.rmtree(ck, ignore_errors=True)  # finished: the outputs above replace it
    return results


def _start_latents(lat: dict[str, torch.Tensor], dev: torch.device) -> Callable[[torch.Generator, int], torch.Tensor]:
    """Dream starts: encoded reset frames of the training episodes (a fresh posterior sample for a VAE), drawn
    with a generator on ``dev``."""
    first = {k: lat[k][:, 0].to(dev) for k in ("mu", "logvar") if k in lat}

    def draw(gen: torch.Generator, n: int) -> torch.Tensor:
        idx = torch.randint(len(first["mu"]), (n,), generator=gen, device=dev)
        return _sample_z(first, idx, gen)

    return draw


def _evaluate(cfg: Any, agent: WorldModelsConfig, v: Any, m: MDNRNN, c: LinearController, real: RealRollouts,
              z0: Callable[[torch.Generator, int], torch.Tensor], horizon: int, dev: torch.device, media: Path | None
              ) -> dict[str, Any]:
    """Stage 6: the controller's real returns (``eval_episodes``) and dream returns (``agent.dream_eval``); with
    ``media``, its real episode and a decoded dream as GIFs."""
    params = torch.as_tensor(c.flat()[None], device=dev)
    seeds = [_seed(cfg.seed, f"eval-{i}") for i in range(cfg.eval_episodes)]
    video = bool(media and cfg.video)
    real_ret, frames = real.returns(v, m, params, seeds, record=video)
    gen = _generator(cfg.seed, "dream-eval", dev)
    dream_ret, seen = dream_returns(m, params, z0(gen, agent.dream_eval), horizon, agent.temperature, gen,
                                    record=video and v.decodes)
    real_ret, dream_ret = real_ret[0].tolist(), dream_ret[0].cpu().double().numpy().tolist()
    if video:
        save_gif(media / "eval.gif", frames)
        if seen:
            with torch.no_grad():
                imgs = v.decode(torch.stack(seen)).clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            save_gif(media / "dream.gif", list(imgs))
    return {"real_mean": float(np.mean(real_ret)), "real_std": float(np.std(real_ret)), "real_returns": real_ret,
            "dream_mean": float(np.mean(dream_ret)), "dream_std": float(np.std(dream_ret)),
            "gap": float(np.mean(dream_ret) - np.mean(real_ret)), "dream_rollouts": len(dream_ret)}


def results_table(results: dict[str, Any]) -> str:
    """The run's table: real and dream return of each variant and their gap (markdown)."""
    tau = results["cma"]["temperature"]
    lines = [f"worldmodels on {results['env']}, V={results['v']['kind']}, C trained in the {results['train_in']} "
             f"(random policy: {results['random_policy_return']:.1f})",
             f"| M | real return | dream return (tau={tau:g}) | dream - real |", "|---|---|---|---|"]
    for tag, r in results["variants"].items():
        name = "trained" if tag == "trained_m" else "random (untrained)"
        lines.append(f"| {name} | {r['real_mean']:.1f} ± {r['real_std']:.1f} | {r['dream_mean']:.1f} ± {r['dream_std']:.1f} "
                     f"| {r['gap']:+.1f} |")
    return "\n".join(lines)


def _recon_figure(vae: ConvVAE, frames: torch.Tensor, path: Path) -> None:
    pick = frames[torch.linspace(0, len(frames) - 1, 8).long()]
    with torch.no_grad():
        recon = vae.decode(vae.latent(pick)[0]).cpu()
    save_image_rows(path, {"held-out frame": pick.float() / 255, "VAE": recon}, title="VAE reconstructions (posterior mean)")


def _cma_figure(logs: dict[str, dict[str, list]], path: Path, train_in: str) -> None:
    fig, axes = plt.subplots(1, len(logs), figsize=(5.5 * len(logs), 3.5), squeeze=False)
    for ax, (tag, lg) in zip(axes[0], logs.items(), strict=True):
        gens = np.arange(1, len(lg["best"]) + 1)
        ax.plot(gens, lg["best"], label="population best")
        ax.plot(gens, lg["mean"], label="population mean")
        if any(x is not None for x in lg["es_mean"]):
            ax.plot(gens, [np.nan if x is None else x for x in lg["es_mean"]], label="ES mean (dream)")
        if lg["real_checks"]:
            x, y = zip(*lg["real_checks"], strict=True)
            ax.plot(x, y, "o", label="ES mean (real env)")
        ax.set_xlabel("generation")
        ax.set_ylabel(f"return ({train_in})")
        ax.set_title(f"CMA-ES, M {'trained' if tag == 'trained_m' else 'untrained (control)'}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save_fig(fig, path)
