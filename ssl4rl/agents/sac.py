"""SAC (Stable-Baselines3) on frozen encoder features, on true state, or end to end on pixels.

Counting: one agent step = ``action_repeat`` environment steps. ``steps`` and
every reported x-axis are ENVIRONMENT steps, as in the PlaNet/CURL/DrQ tables.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from ssl4rl.agents import checkpoint
from ssl4rl.agents.features import FrozenFeatures, StackedProjection
from ssl4rl.config import AgentConfig, TrainConfig, validate_config
from ssl4rl.encoders import Encoder, build_encoder, encoder_meta, load_encoder
from ssl4rl.envs import check_dmc_task, make_env
from ssl4rl.errors import UserError
from ssl4rl.resolve import resolve_encoder_path
from ssl4rl.fields import build
from ssl4rl.runs import claimed_run_dir, log
from ssl4rl.utils import atomic_path, check_memory, progress_bar, resolve_device, seed_everything, write_json
from ssl4rl.viz import save_gif, save_learning_curve

VEC_ENVS = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}


SAC_ENCODERS = ("mvp", "state", "random", "cnn")  # besides a saved encoder folder

class Pipeline:
    """How observations reach the policy for one ``encoder=`` choice."""

    def __init__(self, env: str, encoder: str, frame_stack: int, image_size: int | None, runs_root: str | Path,
                 device: torch.device, seed: int) -> None:
        self.env, self.kind, self.frame_stack, self.device = env, encoder, frame_stack, device
        self.encoder: Encoder | None = None
        self.encoder_path: str | None = None
        if encoder == "state":
            self.env_kwargs: dict[str, Any] = {"obs_type": "state", "image_size": image_size or 84}
        elif encoder == "cnn":
            self.env_kwargs = {"frame_stack": frame_stack, "image_size": image_size or 84}
        else:
            if encoder == "random":
                torch.manual_seed(seed)
                self.encoder = build_encoder("vit")
            else:
                path = resolve_encoder_path(encoder, runs_root, allowed=SAC_ENCODERS)
                meta = encoder_meta(path)
                self.encoder = load_encoder(path)
                self.encoder_path = str(path)
                log.info(f"encoder {path}: {meta['arch']} from {meta['method']}, {meta['feature_dim']}-d features")
            self.encoder.to(device).eval()
            self.env_kwargs = {"frame_stack": 1, "image_size": image_size or self.encoder.image_size}

    def make_venv(self, n_envs: int, seed: int, vec_env: str = "dummy") -> VecEnv:
        env, kwargs = self.env, dict(self.env_kwargs)
        venv = make_vec_env(lambda: make_env(env, **kwargs), n_envs=n_envs, seed=seed, vec_env_cls=VEC_ENVS[vec_env])
        return FrozenFeatures(venv, self.encoder, self.frame_stack) if self.encoder is not None else venv

    def policy(self, agent: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = {"net_arch": list(agent["net_arch"])}
        if self.kind == "cnn":
            return "CnnPolicy", kwargs
        if self.encoder is not None and agent.get("proj_dim", 0) > 0:
            kwargs["features_extractor_class"] = StackedProjection
            kwargs["features_extractor_kwargs"] = {"frame_stack": self.frame_stack, "proj_dim": agent["proj_dim"]}
        return "MlpPolicy", kwargs


def evaluate(model: SAC, venv: VecEnv, episodes: int, video: bool = False) -> tuple[list[float], list[np.ndarray]]:
    """Deterministic returns of ``episodes`` episodes (one env); frames of the first if ``video``."""
    returns, frames, total = [], [], 0.0
    obs = venv.reset()
    while len(returns) < episodes:
        if video and not returns:
            frames.append(venv.env_method("render", indices=[0])[0])
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, done, _ = venv.step(action)
        total += float(reward[0])
        if done[0]:
            returns.append(total)
            total = 0.0
    return returns, frames


class _Progress(BaseCallback):
    """Progress bar in environment steps, training-episode log, periodic evaluation, resume marks."""

    def __init__(self, total_env_steps: int, action_repeat: int, eval_every: int,
                 evaluate_fn: Callable[[int], list[float]], show: bool) -> None:
        super().__init__()
        self.total, self.repeat, self.eval_every, self.evaluate_fn = total_env_steps, action_repeat, eval_every, evaluate_fn
        self.bar = progress_bar(total=total_env_steps, desc="train SAC", unit="env step", disable=not show, unit_scale=True)
        self.train_returns: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float, float]] = []
        self.resumed_at: list[int] = []
        self._next_eval = eval_every
        self.eval_seconds = self.rl_seconds = 0.0
        self._mark_resume = False

    def env_steps(self) -> int:
        return self.num_timesteps * self.repeat

    def state(self) -> dict[str, Any]:
        """What the learning-curve log needs to continue after a resume."""
        return {"train_returns": [list(x) for x in self.train_returns], "evals": [list(x) for x in self.evals],
                "resumed_at": list(self.resumed_at), "next_eval": self._next_eval, "eval_seconds": self.eval_seconds,
                "rl_seconds": self.rl_seconds}

    def restore(self, state: dict[str, Any], env_steps: int) -> None:
        self.train_returns = [(int(s), float(r)) for s, r in state["train_returns"]]
        self.evals = [(int(s), float(m), float(sd)) for s, m, sd in state["evals"]]
        self.resumed_at = [*state["resumed_at"], env_steps]
        self._next_eval, self.eval_seconds, self.rl_seconds = state["next_eval"], state["eval_seconds"], state["rl_seconds"]
        self.bar.update(env_steps)
        self._mark_resume = True

    def _on_training_start(self) -> None:
        if self._mark_resume:  # TensorBoard shows where a second process took over
            self.logger.record("run/resumed_at_env_steps", self.resumed_at[-1])
            self.logger.dump(self.num_timesteps)
            self._mark_resume = False

    def _on_step(self) -> bool:
        steps = self.env_steps()
        self.bar.update(min(steps, self.total) - self.bar.n)
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.train_returns.append((steps, float(info["episode"]["r"])))
                self.bar.set_postfix(ret=f"{info['episode']['r']:.0f}", refresh=False)
                self.logger.record("rollout/return_vs_env_steps", float(info["episode"]["r"]))
        if self.eval_every and steps >= self._next_eval and steps < self.total:
            self._next_eval += self.eval_every
            t = time.time()
            rets = self.evaluate_fn(len(self.evals))
            self.eval_seconds += time.time() - t
            self.evals.append((steps, float(np.mean(rets)), float(np.std(rets))))
            self.logger.record("eval/mean_return", float(np.mean(rets)))
            log.info(f"eval at {steps} env steps: {np.mean(rets):.1f} ± {np.std(rets):.1f}")
        return True


def _check_replay_memory(venv: VecEnv, size: int) -> None:
    """Refuse, before SB3 allocates it, a replay buffer that does not fit in memory (observations stored twice)."""
    obs = int(np.prod(venv.observation_space.shape)) * np.dtype(venv.observation_space.dtype).itemsize
    act = int(np.prod(venv.action_space.shape)) * 4
    check_memory(size * (2 * obs + act + 16), f"agent.buffer_size={size}: a replay buffer of {size:,} transitions",
                 "lower agent.buffer_size")


def _allocate(buffer: Any) -> None:
    """Touch every page of the replay buffer now, so memory stays flat while it fills."""
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        array = getattr(buffer, name, None)
        if array is not None:
            array.fill(0)


SAFE_ON_RESUME = ("progress", "video")  # display only: the result is bit-identical whatever their value


def train_agent(
    env: str,
    encoder: str,
    out: str | Path,
    steps: int = 100_000,
    agent: dict[str, Any] | None = None,
    frame_stack: int = 3,
    image_size: int | None = None,
    n_envs: int = 1,
    vec_env: str = "dummy",
    eval_every: int = 20_000,
    eval_episodes: int = 10,
    video: bool = True,
    runs_root: str | Path = "runs",
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    ckpt_every: int = 10_000,
) -> dict[str, Any]:
    """Train SAC for ``steps`` environment steps; evaluate; write results, curve, video, weights to ``out``.

    The arguments are those of ``TrainConfig`` (``agent``: options of ``AgentConfig``); they are validated as the
    command line's are, and ``out`` is claimed as the command line claims it: a finished run or a folder another
    process holds is refused in one line. Every ``ckpt_every`` env steps the whole training state goes to
    ``out/checkpoint``; a call with an ``out`` holding one continues from it and ends bit-identical to an
    uninterrupted run.
    """
    agent_cfg = build(AgentConfig, dict(agent or {}), "agent.")
    cfg = TrainConfig(agent=agent_cfg, out=str(out), env=env, encoder=str(encoder), runs_root=str(runs_root), steps=steps,
                      frame_stack=frame_stack, image_size=image_size, n_envs=n_envs, vec_env=vec_env,
                      eval_every=eval_every, ckpt_every=ckpt_every, eval_episodes=eval_episodes, video=video, seed=seed,
                      device=device, progress=progress)
    validate_config(cfg)
    repeat = check_dmc_task(env, "SAC")[2]
    if steps < repeat or ckpt_every < repeat:
        raise UserError(f"steps={steps}, ckpt_every={ckpt_every}: each must be at least one agent step ({repeat} env steps)")
    config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    with claimed_run_dir(out, config_yaml, resume_file=checkpoint.CHECKPOINT, safe_keys=SAFE_ON_RESUME) as (out, _):
        return _train(cfg, out, repeat)


def _train(cfg: TrainConfig, out: Path, repeat: int) -> dict[str, Any]:
    env, encoder, steps, seed = cfg.env, cfg.encoder, cfg.steps, cfg.seed
    agent = dataclasses.asdict(cfg.agent)
    frame_stack, image_size, n_envs, vec_env = cfg.frame_stack, cfg.image_size, cfg.n_envs, cfg.vec_env
    eval_every, eval_episodes, video, ckpt_every = cfg.eval_every, cfg.eval_episodes, cfg.video, cfg.ckpt_every
    checkpoint.recover(out)
    saved = checkpoint.read(out) if (out / checkpoint.CHECKPOINT).exists() else None  # refused before anything is built
    seed_everything(seed)
    dev = resolve_device(cfg.device)
    pipe = Pipeline(env, encoder, frame_stack, image_size, cfg.runs_root, dev, seed)
    venv = pipe.make_venv(n_envs, seed, vec_env)
    eval_venv = pipe.make_venv(1, seed + 10_000)
    agent_steps = max(1, steps // repeat)
    policy, policy_kwargs = pipe.policy(agent)
    _check_replay_memory(venv, min(agent["buffer_size"], agent_steps))
    model = SAC(
        policy, venv, learning_rate=agent["learning_rate"], buffer_size=min(agent["buffer_size"], agent_steps),
        learning_starts=min(agent["learning_starts"], agent_steps // 2), batch_size=agent["batch_size"],
        tau=agent["tau"], gamma=agent["gamma"], train_freq=agent["train_freq"], gradient_steps=agent["gradient_steps"],
        ent_coef=agent["ent_coef"], policy_kwargs=policy_kwargs, tensorboard_log=str(out / "tb"),
        seed=seed, device=dev, verbose=0,
    )
    _allocate(model.replay_buffer)

    def periodic_eval(k: int) -> list[float]:
        eval_venv.seed(seed + 20_000 + k)  # each evaluation its own episodes, whatever ran before
        return evaluate(model, eval_venv, 5)[0]

    cb = _Progress(agent_steps * repeat, repeat, eval_every, periodic_eval, cfg.progress)
    if saved is not None:
        cb.restore(checkpoint.restore(saved, out, model, venv), model.num_timesteps * repeat)
        log.info(f"resumed from {out / checkpoint.CHECKPOINT} at {model.num_timesteps * repeat} env steps "
                 "(the lines above are the earlier process's)")
    log.info(
        f"SAC on {env} with encoder={encoder} ({policy}, obs {venv.observation_space.shape}): "
        f"{agent_steps * repeat} env steps = {agent_steps} agent steps x action repeat {repeat}, device {dev}"
    )
    chunk = max(1, ckpt_every // repeat)
    while model.num_timesteps < agent_steps:
        t0, evals_before = time.time(), cb.eval_seconds
        n = min(chunk - model.num_timesteps % chunk, agent_steps - model.num_timesteps)
        model.learn(total_timesteps=n, callback=cb, tb_log_name="sac", reset_num_timesteps=model._last_obs is None)
        cb.rl_seconds += time.time() - t0 - (cb.eval_seconds - evals_before)  # periodic evaluations excluded
        if model.num_timesteps < agent_steps:
            checkpoint.save(out, model, venv, cb.state())
    cb.bar.close()
    eval_venv.seed(seed + 10_000)
    returns, frames = evaluate(model, eval_venv, eval_episodes, video=video)
    mean, std = float(np.mean(returns)), float(np.std(returns))
    cb.evals.append((agent_steps * repeat, mean, std))
    log.info(f"final eval over {eval_episodes} episodes: {mean:.1f} ± {std:.1f} (RL part {cb.rl_seconds / 60:.1f} min)")
    with atomic_path(out / "policy.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.policy.state_dict().items()}, str(tmp))
    save_learning_curve(out / "curve.png", cb.train_returns, cb.evals, title=f"SAC {env}, encoder={encoder}",
                        marks=cb.resumed_at)
    if frames:
        save_gif(out / "eval.gif", frames)
    results = {
        "env": env,
        "encoder": encoder,
        "encoder_path": pipe.encoder_path,
        "policy": policy,
        "eval_return_mean": mean,
        "eval_return_std": std,
        "eval_returns": returns,
        "eval_episodes": eval_episodes,
        "env_steps": agent_steps * repeat,
        "agent_steps": agent_steps,
        "action_repeat": repeat,
        "rl_seconds": round(cb.rl_seconds, 1),
        "periodic_eval_seconds": round(cb.eval_seconds, 1),
        "env_steps_per_second": round(agent_steps * repeat / max(cb.rl_seconds, 1e-9), 1),
        "frames_encoded": getattr(venv, "frames_encoded", None),
        "evals": cb.evals,
        "resumed_at_env_steps": cb.resumed_at,
        "seed": seed,
        "device": str(dev),
    }
    write_json(out / "results.json", results)
    shutil.rmtree(out / checkpoint.CHECKPOINT, ignore_errors=True)  # finished: the outputs above replace it
    venv.close()
    eval_venv.close()
    return results

