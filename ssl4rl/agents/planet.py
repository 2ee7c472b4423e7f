"""PlaNet (Hafner et al., 2019): learn an RSSM latent world model from pixels and act by planning in it.

Loop: ``seed_episodes`` episodes of uniformly random actions, then repeatedly ``updates_per_episode`` model
updates on sequence batches drawn from the episode replay, then one episode collected by planning (CEM,
Gaussian exploration noise 0.3 added to the planned action), until ``cfg.steps`` ENVIRONMENT steps (agent
steps x action repeat; a cartpole episode is 1000 env steps = 125 decisions). The agent keeps the posterior
of the frames seen so far and replans at every step (``ssl4rl.planning``; reward = sum of the reward head's
predictions over the horizon). ``cfg.frame_stack`` is not used: the recurrent state carries the history.

Encoder (``cfg.encoder``): ``scratch`` (a small conv net trained end to end, on ``image_size`` or
``agent.decoder_size`` = 32 px frames) or a saved ssl4rl encoder folder (``mvp`` resolves to one), FROZEN:
each env step's frame is encoded once and the replay keeps features. Objective (``cfg.objective``):
``recon`` | ``contrastive`` | ``barlow`` (``ssl4rl.worldmodels.rssm``); by default ``recon`` for scratch and
``contrastive`` for a frozen encoder (reconstructing pixels from a frozen encoder's features would only
train the decoder-side of the model, while InfoNCE ties the latent to the features the encoder provides).

CPU defaults (2-core laptop): PlaNet's state sizes (200/30/200), batches of 32 x 32 instead of 50 x 50,
CEM 300 candidates x 5 iterations (top 30) instead of 1000 x 10 (top 100): 0.19 s per decision on one core
(``benchmarks/planning_speed.py``), so one cartpole episode costs ~25 s of planning plus ~12 s (cached
features) to ~48 s (32 px pixels) of updates (0.12 s and 0.48 s per 32 x 32 update).
On a GPU, ``agent.candidates=1000 agent.iterations=10 agent.top_k=100 agent.batch_size=50 agent.seq_len=50``.

Outputs in ``out``: ``results.json``, ``curve.png``, ``tb/``, ``worldmodel/`` (``save_world_model``; a frozen
encoder travels inside it), ``eval.gif`` and ``prediction.gif`` (real frames next to the open-loop
prediction) when ``cfg.video``. Checkpoints go to ``out/checkpoint`` at episode boundaries (the first one
before any episode, then the first boundary after every ``ckpt_every`` env steps): model, optimiser, the
replay's episodes (``replay.npz``, no pickle), generators, every RNG and the log. Each episode resets its env
with its own seed, so no env state needs saving; a rerun with the same ``out`` ends bit-identical.
"""

from __future__ import annotations

import itertools
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from ssl4rl.agents import checkpoint
from ssl4rl.encoders import load_encoder
from ssl4rl.envs import check_env_name, episode_steps, has_rewards, make_env
from ssl4rl.config import PlanetConfig
from ssl4rl.errors import UserError
from ssl4rl.fields import validate
from ssl4rl.planning import PLANNERS
from ssl4rl.resolve import ENCODERS, encoder_names, resolve_encoder_path
from ssl4rl.runs import claimed_run_dir, log
from ssl4rl.utils import check_memory, checked_np_load, progress_bar, resolve_device, seed_everything, write_json
from ssl4rl.viz import save_gif, save_learning_curve
from ssl4rl.worldmodels import encoder_spec, save_world_model
from ssl4rl.worldmodels.metrics import evaluate_world_model, prediction_video
from ssl4rl.worldmodels.rssm import RSSM, EpisodeBuffer, check_objective

PERIODIC_EVAL_EPISODES = 5  # at most this many episodes per periodic evaluation (the final one uses eval_episodes)


def check_config(cfg: Any) -> tuple[str, str]:
    """Refuse bad settings in one line before anything is built; returns (objective, encoder path or scratch)."""
    a = cfg.agent if isinstance(cfg.agent, PlanetConfig) else OmegaConf.to_object(cfg.agent)
    validate(a, "agent.")
    if not has_rewards(cfg.env):
        raise UserError(f"env={cfg.env} gives no rewards, and planet plans on predicted rewards; use a dmc_* env "
                        "(for goal images use agents/plan_goal.py)")
    if a.seq_len > episode_steps(cfg.env) + 1:
        raise UserError(f"agent.seq_len={a.seq_len}: longer than a {cfg.env} episode ({episode_steps(cfg.env) + 1} frames)")
    state = a.deter + 2 * a.stoch + 2 * a.hidden  # per imagined step: the state, its Gaussian, the MLP activations
    check_memory(8.0 * a.candidates * (a.horizon + 1) * state,
                 f"agent.candidates={a.candidates} x agent.horizon={a.horizon}: the planner's imagined rollouts",
                 "lower agent.candidates (PlaNet: 1000) or agent.horizon")
    if cfg.encoder in ENCODERS and cfg.encoder not in encoder_names("planet"):
        raise UserError(f"encoder={cfg.encoder}: planet takes encoder=scratch (a conv net trained with the model) or a "
                        "saved ssl4rl encoder folder (frozen, features cached; mvp picks the latest MAE encoder)")
    encoder = cfg.encoder if cfg.encoder == "scratch" else str(
        resolve_encoder_path(cfg.encoder, cfg.runs_root, allowed=encoder_names("planet")))
    objective = check_objective(cfg.objective or ("recon" if encoder == "scratch" else "contrastive"))
    return objective, encoder


def _seed(*key: int) -> int:
    """A 32-bit env seed from a key (run seed, stream, index): distinct streams never collide."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


class _Runner:
    """One env driven by random actions or by the planner in the model; returns episodes as replay dicts."""

    def __init__(self, env: Any, model: RSSM, planner: Any, device: torch.device) -> None:
        self.env, self.model, self.planner, self.device = env, model, planner, device
        self.low = torch.as_tensor(env.action_space.low, dtype=torch.float32)
        self.high = torch.as_tensor(env.action_space.high, dtype=torch.float32)
        self.decisions, self.decision_seconds = 0, 0.0

    def episode(self, seed: int, gen: torch.Generator, max_steps: int | None, mode: str, noise: float = 0.0,
                keep_frames: bool = False) -> tuple[dict[str, torch.Tensor], float, list[np.ndarray]]:
        """One episode (cut after ``max_steps`` agent steps unless None); ``mode`` random | plan. Returns the replay dict
        (model inputs, states, actions, rewards, discounts), the return and the raw frames if ``keep_frames``."""
        obs, info = self.env.reset(seed=seed)
        inputs, frames = [self.model.prepare(obs[None])], [obs] if keep_frames else []
        states, actions, rewards, discounts = [info["state"]], [], [], []
        belief = self.model.filter_step(None, None, inputs[0]) if mode == "plan" else None
        self.planner.reset()
        for _ in itertools.count() if max_steps is None else range(max_steps):
            if mode == "random":
                action = self.low + (self.high - self.low) * torch.rand(len(self.low), generator=gen)
            else:
                t = time.perf_counter()
                action = self.planner.act(self.model.reward_score(belief), gen, self.device).cpu()
                self.decision_seconds += time.perf_counter() - t
                self.decisions += 1
                if noise:
                    action = torch.maximum(torch.minimum(action + noise * torch.randn(len(action), generator=gen),
                                                         self.high), self.low)
            obs, reward, terminated, truncated, info = self.env.step(action.numpy())
            inputs.append(self.model.prepare(obs[None]))
            if keep_frames:
                frames.append(obs)
            states.append(info["state"])
            actions.append(action)
            rewards.append(reward)
            discounts.append(info["discount"])
            if mode == "plan":
                belief = self.model.filter_step(belief, action[None], inputs[-1])
            if terminated or truncated:
                break
        ep = {k: torch.cat([x[k] for x in inputs]) for k in inputs[0]}
        ep.update(states=torch.from_numpy(np.stack(states)).float(), actions=torch.stack(actions),
                  rewards=torch.tensor(rewards, dtype=torch.float32), discounts=torch.tensor(discounts, dtype=torch.float32))
        return ep, float(sum(rewards)), frames


# --- checkpoint ----------------------------------------------------------------------------------


def _save_checkpoint(out: Path, state: dict[str, Any], replay: EpisodeBuffer) -> None:
    """``out/checkpoint/{state.pt, replay.npz}``, written as ``checkpoint.new`` and swapped in (see
    ``ssl4rl.agents.checkpoint``: a kill leaves the old or the new one, ``recover`` tidies up)."""
    ck, new, old = out / checkpoint.CHECKPOINT, out / f"{checkpoint.CHECKPOINT}.new", out / f"{checkpoint.CHECKPOINT}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    torch.save(state, new / "state.pt")
    with open(new / "replay.npz", "wb") as f:
        np.savez(f, **replay.to_arrays())
    if ck.exists():
        ck.rename(old)
    new.rename(ck)
    shutil.rmtree(old, ignore_errors=True)


def _load_replay(path: Path) -> EpisodeBuffer:
    try:
        with checked_np_load(path, "replay buffer", "choose a new out=") as z:
            return EpisodeBuffer.from_arrays({k: z[k] for k in z.files})
    except (KeyError, ValueError, OSError, TypeError, IndexError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{path}: replay does not fit this run ({e}); resume with the run's own settings "
                        "or choose a new out=") from None


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": checkpoint._mt_state(np.random.get_state()),
            "python": checkpoint._py_state(random.getstate())}


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(checkpoint._mt_tuple(rng["numpy"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))


# --- the run -------------------------------------------------------------------------------------


def train_planet(cfg: Any, out: str | Path) -> dict[str, Any]:
    """Train PlaNet per ``cfg`` (a ``TrainConfig`` with ``agent`` a ``PlanetConfig``; see the module docstring);
    write results, figures, videos and the world model to ``out``; resume from ``out/checkpoint`` if present.
    ``out`` is claimed as the command line claims it."""
    objective, encoder = check_config(cfg)
    with claimed_run_dir(out, resume_file=checkpoint.CHECKPOINT) as (folder, _):
        return _train_planet(cfg, folder, objective, encoder)


def _train_planet(cfg: Any, out: Path, objective: str, encoder: str) -> dict[str, Any]:
    a = cfg.agent
    repeat = check_env_name(cfg.env)[2]
    checkpoint.recover(out)
    saved = checkpoint._read_state(out / checkpoint.CHECKPOINT / "state.pt") if (out / checkpoint.CHECKPOINT).exists() else None
    seed_everything(cfg.seed)
    dev = resolve_device(cfg.device)
    frozen = load_encoder(encoder) if encoder != "scratch" else None
    size = cfg.image_size or (frozen.image_size if frozen is not None else a.decoder_size)
    model_size = a.decoder_size if frozen is not None else size
    env = make_env(cfg.env, image_size=size, frame_stack=1, seed=cfg.seed)
    eval_env = make_env(cfg.env, image_size=size, frame_stack=1, seed=cfg.seed + 10_000)
    action_dim = int(env.action_space.shape[0])
    model = RSSM(action_dim, objective, encoder=encoder_spec(frozen) if frozen is not None else None, image_size=model_size,
                 deter=a.deter, stoch=a.stoch, hidden=a.hidden, depth=a.depth, free_nats=a.free_nats)
    if frozen is not None:
        model.encoder.load_state_dict(frozen.state_dict())
    model.to(dev)
    opt = model.make_optimizer(a.lr)
    planner_kwargs = {"temperature": a.temperature} if a.planner == "mppi" else {}
    planner = PLANNERS[a.planner](action_dim, a.horizon, a.candidates, a.iterations, top_k=a.top_k,
                                  low=env.action_space.low, high=env.action_space.high, **planner_kwargs)
    runner, eval_runner = _Runner(env, model, planner, dev), _Runner(eval_env, model, planner, dev)
    gen_train = torch.Generator().manual_seed(_seed(cfg.seed, 0))  # batches, posterior noise
    gen_act = torch.Generator().manual_seed(_seed(cfg.seed, 1))  # random actions, planner, exploration noise
    replay = EpisodeBuffer()
    total = max(1, cfg.steps // repeat)  # agent steps
    state: dict[str, Any] = {"agent_steps": 0, "episodes": 0, "updates": 0, "next_eval": cfg.eval_every,
                             "next_ckpt": 0, "train_returns": [], "evals": [], "resumed_at": [],
                             "seconds": {"update": 0.0, "collect": 0.0, "eval": 0.0}, "decisions": 0,
                             "decision_seconds": 0.0}
    if saved is not None:
        try:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            gen_train.set_state(saved["gen_train"])
            gen_act.set_state(saved["gen_act"])
            _set_rng_state(saved["rng"])
            state = saved["log"]
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise UserError(f"{out / checkpoint.CHECKPOINT}: checkpoint does not fit this run ({type(e).__name__}); "
                            "resume with the run's own settings or choose a new out=") from None
        replay = _load_replay(out / checkpoint.CHECKPOINT / "replay.npz")
        state["resumed_at"].append(state["agent_steps"] * repeat)
        log.info(f"resumed from {out / checkpoint.CHECKPOINT} at {state['agent_steps'] * repeat} env steps "
                 "(the lines above are the earlier process's)")
    log.info(f"planet on {cfg.env}: encoder={encoder}, objective={objective}, {size} px, {total * repeat} env steps = "
             f"{total} agent steps x action repeat {repeat}, {a.planner} {a.candidates}x{a.iterations}, device {dev}")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"))
    if state["resumed_at"]:
        writer.add_scalar("run/resumed_at_env_steps", state["resumed_at"][-1], state["agent_steps"] * repeat)

    def evaluate(k: int, episodes: int, keep_frames: bool = False) -> tuple[list[float], list[Any]]:
        """Planner without noise on the eval env; its own seeds and generator, so training is unaffected."""
        gen = torch.Generator().manual_seed(_seed(cfg.seed, 2, k))
        model.eval()
        runs = [eval_runner.episode(_seed(cfg.seed, 3, k, i), gen, None, "plan", keep_frames=keep_frames)
                for i in range(episodes)]
        return [r for _, r, _ in runs], runs

    bar = progress_bar(total=total * repeat, desc="train planet", unit="env step", disable=not cfg.progress, unit_scale=True)
    bar.update(state["agent_steps"] * repeat)
    while state["agent_steps"] < total:
        if state["agent_steps"] >= state["next_ckpt"]:
            state["next_ckpt"] = state["agent_steps"] + max(1, cfg.ckpt_every // repeat)
            _save_checkpoint(out, {"model": model.state_dict(), "opt": opt.state_dict(), "gen_train": gen_train.get_state(),
                                   "gen_act": gen_act.get_state(), "rng": _rng_state(), "log": state}, replay)
        seeding = state["episodes"] < a.seed_episodes
        t = time.time()
        if not seeding:
            losses = [model.update(replay.sample(a.batch_size, a.seq_len, gen_train), opt, gen_train, a.grad_clip)
                      for _ in range(a.updates_per_episode)]
            state["updates"] += a.updates_per_episode
            for key in losses[0]:
                writer.add_scalar(f"train/{key}", float(np.mean([x[key] for x in losses])), state["agent_steps"] * repeat)
        state["seconds"]["update"] += time.time() - t
        t, runner.decisions, runner.decision_seconds = time.time(), 0, 0.0
        model.eval()
        ep, ret, _ = runner.episode(_seed(cfg.seed, 4, state["episodes"]), gen_act, total - state["agent_steps"],
                                    "random" if seeding else "plan", noise=a.exploration_noise)
        state["seconds"]["collect"] += time.time() - t
        state["decisions"] += runner.decisions
        state["decision_seconds"] += runner.decision_seconds
        replay.add(ep)
        state["agent_steps"] += len(ep["actions"])
        state["episodes"] += 1
        steps = state["agent_steps"] * repeat
        state["train_returns"].append([steps, ret])
        writer.add_scalar("rollout/return_vs_env_steps", ret, steps)
        bar.update(steps - bar.n)
        bar.set_postfix(ret=f"{ret:.0f}", refresh=False)
        if cfg.eval_every and steps >= state["next_eval"] and state["agent_steps"] < total:
            t = time.time()
            returns, _ = evaluate(len(state["evals"]), min(PERIODIC_EVAL_EPISODES, cfg.eval_episodes))
            state["seconds"]["eval"] += time.time() - t
            state["evals"].append([steps, float(np.mean(returns)), float(np.std(returns))])
            writer.add_scalar("eval/mean_return", float(np.mean(returns)), steps)
            log.info(f"eval at {steps} env steps: {np.mean(returns):.1f} ± {np.std(returns):.1f}")
            while state["next_eval"] <= steps:
                state["next_eval"] += cfg.eval_every
    bar.close()

    t = time.time()
    returns, runs = evaluate(len(state["evals"]), cfg.eval_episodes, keep_frames=True)
    steps = state["agent_steps"] * repeat
    mean, std = float(np.mean(returns)), float(np.std(returns))
    state["evals"].append([steps, mean, std])
    state["seconds"]["eval"] += time.time() - t
    writer.add_scalar("eval/mean_return", mean, steps)
    log.info(f"final eval over {cfg.eval_episodes} episodes: {mean:.1f} ± {std:.1f}")
    held_out = EpisodeBuffer()
    for ep, _, _ in runs:
        held_out.add(ep)
    wm_metrics = _world_model_metrics(model, replay, held_out)
    save_world_model(model, out / "worldmodel", env=cfg.env, objective=objective, encoder_path=None if frozen is None
                     else encoder, image_size=size, env_steps=steps, seed=cfg.seed)
    save_learning_curve(out / "curve.png", [tuple(x) for x in state["train_returns"]], [tuple(x) for x in state["evals"]],
                        title=f"PlaNet {cfg.env}, encoder={Path(encoder).name}, objective={objective}",
                        marks=state["resumed_at"])
    video = None
    if cfg.video:
        frames = np.stack(runs[0][2])
        save_gif(out / "eval.gif", list(frames.transpose(0, 2, 3, 1)))
        pool = np.concatenate([np.stack(r[2]) for r in runs])
        video = prediction_video(model, frames, runs[0][0]["actions"], out / "prediction.gif",
                                 context=min(a.video_context, len(frames) - 1), pool=pool)
    results = {
        "agent": "planet", "env": cfg.env, "encoder": encoder, "objective": objective, "image_size": size,
        "eval_return_mean": mean, "eval_return_std": std, "eval_returns": returns, "eval_episodes": cfg.eval_episodes,
        "env_steps": steps, "agent_steps": state["agent_steps"], "action_repeat": repeat,
        "episodes": state["episodes"], "updates": state["updates"], "evals": state["evals"],
        "train_returns": state["train_returns"], "world_model": wm_metrics, "prediction_video": video,
        "seconds": {k: round(v, 1) for k, v in state["seconds"].items()},
        "seconds_per_decision": round(state["decision_seconds"] / max(1, state["decisions"]), 4),
        "planner": {"name": a.planner, "horizon": a.horizon, "candidates": a.candidates, "iterations": a.iterations,
                    "top_k": a.top_k},
        "resumed_at_env_steps": state["resumed_at"], "seed": cfg.seed, "device": str(dev),
    }
    write_json(out / "results.json", results)
    writer.close()
    env.close()
    eval_env.close()
    shutil.rmtree(out / checkpoint.CHECKPOINT, ignore_errors=True)  # finished: the outputs above replace it
    return results


def _world_model_metrics(model: RSSM, replay: EpisodeBuffer, held_out: EpisodeBuffer) -> dict[str, Any] | None:
    """Open-loop metrics of the final model: state probe fit on the replay, scored on the final evaluation's
    episodes (None when the episodes are too short for a window)."""
    ks = [k for k in (1, 5, 10) if k + 5 <= min(len(e["actions"]) + 1 for e in held_out.episodes)]
    if not ks:
        return None
    try:
        return evaluate_world_model(model, held_out, ks=ks, train_data=replay)
    except UserError as e:  # e.g. no replay episode long enough: report why instead of failing a finished run
        log.info(f"world-model metrics skipped: {e}")
        return None
