"""SB3 agents on frozen encoder features, on true state, or with a pixel encoder that learns (DrQ, CURL, fine-tuning,
auxiliary SSL losses, decoupled training; ``ssl4rl.agents.pixel``), and PPO (``ssl4rl.agents.ppo``).

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
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from ssl4rl.agents import checkpoint
from ssl4rl.agents.fast import FastSAC, SplitVecEnv
from ssl4rl.agents.features import FrozenFeatures, StackedProjection
from ssl4rl.agents.pixel import AuxLoss, FrameEncoder, PixelSAC, PixelSettings
from ssl4rl.agents.ppo import build_ppo
from ssl4rl.agents.replay import FrameReplayBuffer
from ssl4rl.config import PIXEL_AGENTS, AgentConfig, TrainConfig, aux_methods, validate_config
from ssl4rl.encoders import Encoder, build_encoder, encoder_meta, load_encoder
from ssl4rl.envs import check_dmc_task, make_env
from ssl4rl.errors import UserError
from ssl4rl.methods.base import MethodContext
from ssl4rl.resolve import encoder_names, resolve_encoder_path
from ssl4rl.runs import claimed_run_dir, log
from ssl4rl.utils import atomic_path, check_memory, progress_bar, resolve_device, seed_everything, write_json
from ssl4rl.viz import save_gif, save_learning_curve

VEC_ENVS = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}


def encoder_mode(cfg: TrainConfig) -> str | None:
    """How the encoder learns: ``cfg.encoder_mode``, else finetune for drq/curl and encoder=scratch, else frozen
    (None for encoder=state and cnn, which have no ssl4rl encoder)."""
    if cfg.encoder in ("state", "cnn"):
        return None
    if cfg.encoder_mode is not None:
        return cfg.encoder_mode
    return "finetune" if cfg.agent.name in PIXEL_AGENTS or cfg.encoder == "scratch" else "frozen"


def check_config(cfg: TrainConfig) -> None:
    """One-line refusals of settings that cannot work together, before anything is built or written."""
    agent, mode = cfg.agent, encoder_mode(cfg)
    names = encoder_names(agent.name)
    if cfg.encoder not in names and not Path(cfg.encoder).exists():
        resolve_encoder_path(cfg.encoder, cfg.runs_root, allowed=names)  # the one line naming the valid names
    use = "use encoder=scratch or a saved encoder folder"
    refusals = [  # (refused when, the one line)
        (mode is None and cfg.encoder_mode is not None,
         f"encoder_mode={cfg.encoder_mode} with encoder={cfg.encoder}: there is no ssl4rl encoder to freeze or train; {use}"),
        (mode is None and cfg.aux is not None,
         f"aux={cfg.aux} with encoder={cfg.encoder}: the auxiliary loss trains a pixel encoder; {use}"),
        (mode is None and agent.name in PIXEL_AGENTS,
         f"agent={agent.name} with encoder={cfg.encoder}: {agent.name} trains a pixel encoder; {use} (agent=sac for "
         "state or cnn)"),
        (mode == "frozen" and cfg.aux is not None,
         f"aux={cfg.aux} with encoder_mode=frozen: nothing would train the encoder; use encoder_mode=finetune or "
         "decoupled"),
        (mode == "frozen" and agent.name in PIXEL_AGENTS,
         f"agent={agent.name} with encoder_mode=frozen: frozen features are cached once per env step, so augmentation "
         "cannot apply; use agent=sac encoder_mode=frozen"),
        (mode == "decoupled" and cfg.aux is None and getattr(agent, "curl_weight", 0) == 0,
         "encoder_mode=decoupled: only the auxiliary loss trains the encoder, and there is none; add aux=<method> "
         "(e.g. aux=simclr aux_positive=temporal, as ATC)"),
        (mode is not None and agent.name == "ppo" and (cfg.aux is not None or mode == "decoupled"),
         "agent=ppo takes encoder_mode=frozen or finetune without aux; aux losses need replay (agent=sac, drq or curl)"),
    ]
    for refused, line in refusals:
        if refused:
            raise UserError(line)
    if mode is None:
        return
    if mode != "frozen" and cfg.encoder not in names:
        image_size = int(encoder_meta(resolve_encoder_path(cfg.encoder, cfg.runs_root, allowed=names))["image_size"])
        if cfg.image_size is not None and cfg.image_size != image_size:
            raise UserError(f"image_size={cfg.image_size}: the saved encoder {cfg.encoder} takes {image_size} px frames, "
                            f"and a {mode} encoder sees the env's frames as they are; use image_size={image_size}")


class Pipeline:
    """How observations reach the policy for one run: true state, SB3's CnnPolicy, frozen features cached per env
    step (``FrozenFeatures``), or stacked frames through a learning ssl4rl encoder (``FrameEncoder``)."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.env, self.kind, self.frame_stack, self.device = cfg.env, cfg.encoder, cfg.frame_stack, device
        self.mode = encoder_mode(cfg)
        # frozen SAC features with the LayerNorm projection: FrozenFeatures normalises each frame once, when it is
        # cached, and the projection folds the LayerNorm's affine part into its linear layer (the same function)
        self.prenorm = self.mode == "frozen" and cfg.agent.name == "sac" and cfg.agent.proj_dim > 0
        self.encoder: Encoder | None = None
        self.encoder_path: str | None = None
        if self.kind == "state":
            self.env_kwargs: dict[str, Any] = {"obs_type": "state", "image_size": cfg.image_size or 84}
            return
        if self.kind == "cnn":
            self.env_kwargs = {"frame_stack": cfg.frame_stack, "image_size": cfg.image_size or 84}
            return
        self.encoder = self._encoder(cfg)
        self.encoder.to(device)
        if self.mode == "frozen":
            self.encoder.eval()
            self.env_kwargs = {"frame_stack": 1, "image_size": cfg.image_size or self.encoder.image_size}
        else:
            margin = 2 * cfg.agent.pad if getattr(cfg.agent, "augment", "none") == "crop" else 0
            self.env_kwargs = {"frame_stack": cfg.frame_stack, "image_size": self.encoder.image_size + margin}

    def _encoder(self, cfg: TrainConfig) -> Encoder:
        if self.kind == "random":
            torch.manual_seed(cfg.seed)
            return build_encoder("vit")
        if self.kind == "scratch":
            torch.manual_seed(cfg.seed)
            backbone = dict(cfg.agent.backbone)
            if cfg.image_size is not None:
                backbone["image_size"] = cfg.image_size
            return build_encoder(backbone.pop("arch"), **backbone)
        path = resolve_encoder_path(self.kind, cfg.runs_root, allowed=encoder_names(cfg.agent.name))
        meta = encoder_meta(path)
        self.encoder_path = str(path)
        log.info(f"encoder {path}: {meta['arch']} from {meta['method']}, {meta['feature_dim']}-d features")
        return load_encoder(path)

    def make_venv(self, n_envs: int, seed: int, vec_env: str = "dummy") -> VecEnv:
        env, kwargs = self.env, dict(self.env_kwargs)
        # subproc: the first env in this process, the others in workers (SplitVecEnv; the same envs, seeds and results)
        cls = SplitVecEnv if vec_env == "subproc" else VEC_ENVS[vec_env]
        venv = make_vec_env(lambda: make_env(env, **kwargs), n_envs=n_envs, seed=seed, vec_env_cls=cls)
        if self.mode != "frozen":
            return venv
        return FrozenFeatures(venv, self.encoder, self.frame_stack, normalize=self.prenorm)

    def policy(self, agent: Any) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = {"net_arch": list(agent.net_arch)}
        if self.kind == "cnn":
            return "CnnPolicy", kwargs
        if self.mode == "frozen" and agent.proj_dim > 0:
            kwargs["features_extractor_class"] = StackedProjection
            kwargs["features_extractor_kwargs"] = {"frame_stack": self.frame_stack, "proj_dim": agent.proj_dim}
        if self.mode in ("finetune", "decoupled"):
            kwargs["features_extractor_class"] = FrameEncoder
            kwargs["features_extractor_kwargs"] = {"encoder": self.encoder, "frame_stack": self.frame_stack}
            kwargs["share_features_extractor"] = True
            return "CnnPolicy", kwargs
        return "MlpPolicy", kwargs


def evaluate(model: Any, venv: VecEnv, episodes: int, video: bool = False) -> tuple[list[float], list[np.ndarray]]:
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
                 evaluate_fn: Callable[[int], list[float]], show: bool, agent: str = "sac") -> None:
        super().__init__()
        self.total, self.repeat, self.eval_every, self.evaluate_fn = total_env_steps, action_repeat, eval_every, evaluate_fn
        self.bar = progress_bar(total=total_env_steps, desc=f"train {agent}", unit="env step", disable=not show, unit_scale=True)
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


def _check_replay_memory(venv: VecEnv, size: int, frames_once: bool) -> None:
    """Refuse, before it is allocated, a replay buffer that does not fit in memory (SB3's stores observations twice;
    the frame replay each frame about once)."""
    space = venv.observation_space
    obs = int(np.prod(space.shape)) * np.dtype(space.dtype).itemsize
    per_step = obs * 5 // (4 * space.shape[0] // 3) if frames_once else 2 * obs
    act = int(np.prod(venv.action_space.shape)) * 4
    check_memory(size * (per_step + act + 16), f"agent.buffer_size={size}: a replay buffer of {size:,} transitions",
                 "lower agent.buffer_size")


def _allocate(buffer: Any) -> None:
    """Touch every page of SB3's replay buffer now, so memory stays flat while it fills."""
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        array = getattr(buffer, name, None)
        if array is not None:
            array.fill(0)


SAFE_ON_RESUME = ("progress", "video")  # display only: the result is bit-identical whatever their value


def train_agent(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.agent`` (SAC, DrQ, CURL or PPO) for ``cfg.steps`` environment steps; evaluate; write results,
    curve, video and weights to ``cfg.out``.

    ``cfg`` is validated as the command line's is (``cfg.agent`` None: ``AgentConfig()``, i.e. agent=sac), and
    ``out`` is claimed as the command line claims it: a finished run or a folder another process holds is refused
    in one line. Every ``ckpt_every`` env steps the whole training state goes to ``out/checkpoint``; a call with an
    ``out`` holding one continues from it and ends bit-identical to an uninterrupted run.
    """
    if cfg.agent is None:
        cfg = dataclasses.replace(cfg, agent=AgentConfig())
    validate_config(cfg)
    repeat = check_dmc_task(cfg.env, "SAC")[2]
    if cfg.steps < repeat or cfg.ckpt_every < repeat:
        raise UserError(f"steps={cfg.steps}, ckpt_every={cfg.ckpt_every}: each must be at least one agent step "
                        f"({repeat} env steps)")
    check_config(cfg)
    config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    with claimed_run_dir(cfg.out, config_yaml, resume_file=checkpoint.CHECKPOINT, safe_keys=SAFE_ON_RESUME) as (out, _):
        return _train(cfg, out, repeat)


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with each tensor once: the encoder actor and critic share is kept under its first (actor) name."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    kept = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            kept[name] = tensor.detach().cpu().contiguous()
    return kept


def _aux(cfg: TrainConfig, encoder: Encoder, agent_steps: int) -> AuxLoss | None:
    """The auxiliary SSL loss ``cfg.aux`` built on ``encoder`` (its own generator, seeded from the run's seed)."""
    if cfg.aux is None:
        return None
    cls = aux_methods()[cfg.aux]
    ctx = MethodContext(generator=torch.Generator().manual_seed(cfg.seed + 30_000), total_steps=agent_steps,
                        num_samples=cfg.agent.buffer_size, batch_size=cfg.agent.batch_size)
    return AuxLoss(cls(encoder, cls.Config(), ctx))


def _model(cfg: TrainConfig, pipe: Pipeline, venv: VecEnv, out: Path, dev: torch.device, agent_steps: int) -> Any:
    """The SB3 algorithm of this run: SAC, PixelSAC (the encoder learns) or PPO."""
    a = cfg.agent
    policy, policy_kwargs = pipe.policy(a)
    if a.name == "ppo":
        return build_ppo(a, policy, policy_kwargs, venv, agent_steps, cfg.encoder_lr_mult, str(out / "tb"), cfg.seed, dev)
    buffer = min(a.buffer_size, agent_steps)
    pixel = pipe.mode in ("finetune", "decoupled")
    _check_replay_memory(venv, buffer, pixel)
    common = dict(
        learning_rate=a.learning_rate, buffer_size=buffer, learning_starts=min(a.learning_starts, agent_steps // 2),
        batch_size=a.batch_size, tau=a.tau, gamma=a.gamma, train_freq=a.train_freq, gradient_steps=a.gradient_steps,
        ent_coef=a.ent_coef, policy_kwargs=policy_kwargs, tensorboard_log=str(out / "tb"), seed=cfg.seed, device=dev,
        verbose=0,
    )
    if not pixel:  # frozen features, true state or CnnPolicy: SB3's SAC update, computed with fewer operations
        if pipe.prenorm:
            policy_kwargs["features_extractor_kwargs"] = {**policy_kwargs["features_extractor_kwargs"], "prenormalized": True}
        stacked = pipe.frame_stack if pipe.mode == "frozen" else 0  # FrozenFeatures: stacks shift by one frame a step
        model = FastSAC(policy, venv, stacked_frames=stacked, **common)
        _allocate(model.replay_buffer)
        return model
    settings = PixelSettings(
        mode=pipe.mode, augment=a.augment, pad=a.pad, target_k=a.target_k, critic_m=a.critic_m,
        encoder_tau=a.encoder_tau, actor_every=a.actor_every, target_every=a.target_every, curl_weight=a.curl_weight,
        encoder_lr_mult=cfg.encoder_lr_mult, warmup_steps=cfg.encoder_warmup // check_dmc_task(cfg.env, "SAC")[2],
        aux_weight=cfg.aux_weight, aux_every=cfg.aux_every, aux_k=cfg.aux_k if cfg.aux_positive == "temporal" else 0,
    )
    return PixelSAC(policy, venv, pixel=settings, aux=_aux(cfg, pipe.encoder, agent_steps),
                    replay_buffer_class=FrameReplayBuffer, **common)


def _train(cfg: TrainConfig, out: Path, repeat: int) -> dict[str, Any]:
    env, encoder, steps, seed = cfg.env, cfg.encoder, cfg.steps, cfg.seed
    n_envs, vec_env = cfg.n_envs, cfg.vec_env
    eval_every, eval_episodes, video, ckpt_every = cfg.eval_every, cfg.eval_episodes, cfg.video, cfg.ckpt_every
    checkpoint.recover(out)
    saved = checkpoint.read(out) if (out / checkpoint.CHECKPOINT).exists() else None  # refused before anything is built
    seed_everything(seed)
    dev = resolve_device(cfg.device)
    pipe = Pipeline(cfg, dev)
    venv = pipe.make_venv(n_envs, seed, vec_env)
    eval_venv = pipe.make_venv(1, seed + 10_000)
    agent_steps = max(1, steps // repeat)
    model = _model(cfg, pipe, venv, out, dev, agent_steps)
    policy = pipe.policy(cfg.agent)[0]  # SB3's policy name (MlpPolicy, CnnPolicy), as results.json reports it
    name = cfg.agent.name

    def periodic_eval(k: int) -> list[float]:
        eval_venv.seed(seed + 20_000 + k)  # each evaluation its own episodes, whatever ran before
        return evaluate(model, eval_venv, 5)[0]

    cb = _Progress(agent_steps * repeat, repeat, eval_every, periodic_eval, cfg.progress, name)
    if saved is not None:
        cb.restore(checkpoint.restore(saved, out, model, venv), model.num_timesteps * repeat)
        log.info(f"resumed from {out / checkpoint.CHECKPOINT} at {model.num_timesteps * repeat} env steps "
                 "(the lines above are the earlier process's)")
    log.info(
        f"{name} on {env} with encoder={encoder} ({pipe.mode or 'no ssl4rl encoder'}; {policy}, obs "
        f"{venv.observation_space.shape}{f', aux={cfg.aux}' if cfg.aux else ''}): "
        f"{agent_steps * repeat} env steps = {agent_steps} agent steps x action repeat {repeat}, device {dev}"
    )
    chunk = max(1, ckpt_every // repeat)
    if name == "ppo":  # PPO learns in whole rollouts: checkpoints fall between them
        chunk = max(1, chunk // model.n_steps) * model.n_steps
    while model.num_timesteps < agent_steps:
        t0, evals_before = time.time(), cb.eval_seconds
        n = min(chunk - model.num_timesteps % chunk, agent_steps - model.num_timesteps)
        model.learn(total_timesteps=n, callback=cb, tb_log_name=name, reset_num_timesteps=model._last_obs is None)
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
        save_file(_unshared(model.policy.state_dict()), str(tmp))
    save_learning_curve(out / "curve.png", cb.train_returns, cb.evals, title=f"{name} {env}, encoder={encoder}",
                        marks=cb.resumed_at)
    if frames:
        save_gif(out / "eval.gif", frames)
    results = {
        "env": env,
        "agent": name,
        "encoder": encoder,
        "encoder_mode": pipe.mode,
        "aux": cfg.aux,
        "aux_positive": cfg.aux_positive if cfg.aux else None,
        "encoder_path": pipe.encoder_path,
        "policy": policy,
        "eval_return_mean": mean,
        "eval_return_std": std,
        "eval_returns": returns,
        "eval_episodes": eval_episodes,
        "env_steps": int(model.num_timesteps) * repeat,
        "agent_steps": int(model.num_timesteps),
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

