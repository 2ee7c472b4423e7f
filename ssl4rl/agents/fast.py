"""Faster SAC on frozen features, on true state and with CnnPolicy (``FastSAC``), and faster env workers
(``SplitVecEnv``, what ``vec_env=subproc`` builds).

``FastSAC``: SB3's SAC update with fewer operations. (With it, ``FrozenFeatures(normalize=True)`` normalises each
frame's features once, when they are cached, and ``StackedProjection(prenormalized=True)`` folds the LayerNorm's
affine part into its linear layer: the same function as the LayerNorm on raw features, without a pass over every
sampled frame in every forward and backward pass; ``ssl4rl.agents.features``.)

The update is SB3's (``stable_baselines3.sac.SAC.train``): the same losses, in the same order, on the same replay
samples drawn by the same RNG calls, with the same hyper-parameters and the same number of updates. What differs is
how it is computed; each change gives the same numbers in exact arithmetic, and float rounding may differ in the
last bits:

- the actor loss runs the critic with the critic's parameters frozen, so its backward pass computes the gradient
  for the actor only (SB3 also computes the critic's parameter gradients there, then discards them), and the
  critic's first layer takes the features' product apart from the actions', so that backward pass skips the
  features' columns as well;
- Adam runs fused (``torch.optim.Adam(fused=True)``: one kernel per optimiser) for the actor, the critic and the
  entropy coefficient;
- the target networks' Polyak average is two ``torch._foreach`` calls instead of two ops per tensor;
- a replay batch is gathered by ``torch.index_select`` from tensors that share the buffer's memory (one copy
  instead of numpy's fancy indexing followed by ``torch.tensor``'s copy);
- stacked frozen features (``stacked_frames`` > 1, set for ``FrozenFeatures`` stacks): a next observation is its
  observation shifted by one frame plus one new frame, so only the new frame is gathered, and the actor projects only
  that frame of the next observation (the other frames' projections are the observation's, same parameters). Every
  transition is checked for this before it can be sampled; one that does not hold switches the shortcut off;
- switching the policy between training and evaluation mode (twice per agent step, a walk over every module) is
  skipped when no layer behaves differently in the two modes.

Without fused Adam (``fused = False``) and without the two shortcuts that reorder sums (the split first layer and the
frame reuse), the parameters are bit-identical to SB3's after any number of updates. Anything not covered (gSDE,
batch-norm statistics, ``VecNormalize``, memory-optimised or n-step replay) falls back to SB3's ``train``. Runs stay
seeded-repeatable and resume bit-identically: the update is deterministic, and its state (policy, optimisers,
entropy coefficient, RNGs, replay buffer) is SB3's.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn
from torch.nn import functional as F

from ssl4rl.agents.features import StackedProjection
from ssl4rl.runs import log

# layers whose forward is the same in training and evaluation mode
MODE_FREE = (nn.Linear, nn.ReLU, nn.Tanh, nn.LayerNorm, nn.Identity, nn.Flatten, nn.Conv2d, nn.ELU, nn.LeakyReLU)


def fused_adam_kwargs(policy_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``policy_kwargs`` with ``fused=True`` added to the optimiser's keyword arguments (Adam only)."""
    kwargs = dict(policy_kwargs or {})
    if kwargs.get("optimizer_class", torch.optim.Adam) is torch.optim.Adam:
        kwargs["optimizer_kwargs"] = {"fused": True, **dict(kwargs.get("optimizer_kwargs") or {})}
    return kwargs


class FastSAC(SAC):
    """``stable_baselines3.SAC`` whose ``train`` does the same update with fewer operations (module docstring).

    ``stacked_frames``: the observation is this many equal blocks (frames), and each next observation is the
    observation shifted by one block plus a new one (``FrozenFeatures``); 0 or 1: no such structure is assumed.
    """

    fused = True  # fused Adam (False: SB3's default Adam, for comparisons)
    split_sums = True  # the shortcuts that reorder sums (split first critic layer, reused frame projections)

    def __init__(self, policy: Any, env: Any, stacked_frames: int = 0, **kwargs: Any) -> None:
        if self.fused:
            kwargs["policy_kwargs"] = fused_adam_kwargs(kwargs.get("policy_kwargs"))
        self.stacked_frames = stacked_frames
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.fused and self.ent_coef_optimizer is not None:  # SB3 builds a plain Adam here; the same one, fused
            self.ent_coef_optimizer = torch.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1), fused=True)
        actor_params = {id(p) for p in self.actor.parameters()}
        # the critic's own parameters (not a features extractor it may share with the actor): frozen in the actor loss
        self._critic_only = [p for p in self.critic.parameters() if id(p) not in actor_params]
        self._polyak_src = list(self.critic.parameters())
        self._polyak_dst = list(self.critic_target.parameters())
        if all(type(m) in MODE_FREE for m in self.policy.modules() if not any(True for _ in m.children())):
            # no layer behaves differently in training and evaluation mode: switching modes changes nothing
            self.policy.set_training_mode = self._set_mode_flag  # type: ignore[method-assign]
        q_nets = self.critic.q_networks
        self._split_q = self.split_sums and not self.critic.share_features_extractor and all(
            isinstance(q[0], nn.Linear) and all(type(m) in MODE_FREE for m in q) for q in q_nets)
        shape = self.observation_space.shape
        self._shifted = (self.split_sums and self.stacked_frames > 1 and shape is not None and len(shape) == 1
                         and shape[0] % self.stacked_frames == 0
                         and isinstance(self.actor.features_extractor, StackedProjection)
                         and self.actor.features_extractor.frame_stack == self.stacked_frames
                         and not self.policy.share_features_extractor)
        self._checked_pos: int | None = None  # replay rows up to here satisfy the shifted-stack structure
        self._rb_cache: tuple[tuple[np.ndarray, ...], list[torch.Tensor]] | None = None

    def _set_mode_flag(self, mode: bool) -> None:
        self.policy.training = mode

    def _fast(self) -> bool:
        return (not self.use_sde and not self.batch_norm_stats and self._vec_normalize_env is None
                and type(self.replay_buffer) is ReplayBuffer and not self.replay_buffer.optimize_memory_usage)

    def _check_shifted(self) -> None:
        """Check the transitions added since the last call: next observation = observation shifted by one frame plus
        a new one. The first that is not switches the frame shortcut off for the rest of the run."""
        rb = self.replay_buffer
        size, pos = rb.buffer_size, rb.pos
        if self._checked_pos is None:  # first call in this process: every filled row
            rows = np.arange(size if rb.full else pos)
        else:
            rows = (self._checked_pos + np.arange((pos - self._checked_pos) % size)) % size
        self._checked_pos = pos
        if not len(rows):
            return
        d = rb.obs_shape[0] // self.stacked_frames
        if not np.array_equal(rb.next_observations[rows, :, :-d], rb.observations[rows, :, d:]):
            self._shifted = False
            log.warning("replay: a next observation is not its observation shifted by one frame; every frame of the "
                        "next observations is gathered and projected from now on")

    def _sample(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """A replay batch as SB3's ``ReplayBuffer.sample`` draws it (same indices, same RNG calls), gathered once;
        and the new frame of each next observation (None without the frame shortcut)."""
        rb = self.replay_buffer
        upper = rb.buffer_size if rb.full else rb.pos
        batch_inds = np.random.randint(0, upper, size=batch_size)
        env_inds = np.random.randint(0, high=rb.n_envs, size=(batch_size,))
        arrays = (rb.observations, rb.actions, rb.next_observations, rb.dones, rb.timeouts, rb.rewards)
        if self._rb_cache is None or any(a is not b for a, b in zip(self._rb_cache[0], arrays, strict=True)):
            rows = rb.buffer_size * rb.n_envs  # (rows, -1) tensors that share the buffer's memory
            self._rb_cache = (arrays, [torch.from_numpy(a.reshape(rows, -1)) for a in arrays])
        obs, actions, next_obs, dones, timeouts, rewards = self._rb_cache[1]
        idx = torch.from_numpy(batch_inds * rb.n_envs + env_inds)
        obs_b, act_b, done_b, timeout_b, reward_b = (torch.index_select(a, 0, idx)
                                                     for a in (obs, actions, dones, timeouts, rewards))
        new_b = None
        if self._shifted:
            d = obs.shape[1] // self.stacked_frames
            new_b = torch.index_select(next_obs[:, -d:], 0, idx)
            next_b = torch.cat([obs_b[:, d:], new_b], dim=1)
        else:
            next_b = torch.index_select(next_obs, 0, idx)
        obs_b, next_b = obs_b.view(batch_size, *rb.obs_shape), next_b.view(batch_size, *rb.obs_shape)
        done_b = done_b * (1 - timeout_b)  # only dones that are not timeouts (SB3's float32 arithmetic)
        to = self.device
        return (obs_b.to(to), act_b.to(to), next_b.to(to), done_b.to(to), reward_b.to(to),
                None if new_b is None else new_b.to(to))

    def _act(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``actor.action_log_prob`` from the actor's features (SB3's ``get_action_dist_params`` without gSDE)."""
        actor = self.actor
        latent_pi = actor.latent_pi(features)
        mean_actions = actor.mu(latent_pi)
        log_std = torch.clamp(actor.log_std(latent_pi), LOG_STD_MIN, LOG_STD_MAX)
        return actor.action_dist.log_prob_from_params(mean_actions, log_std)

    def _q_of_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``critic(obs, actions)`` with the critic frozen, differentiable in ``actions`` only: the first layer's
        product with the features, which no gradient needs, is computed apart from its product with the actions, so
        the backward pass skips the features' columns (SB3: one product with ``cat([features, actions])``)."""
        critic = self.critic
        if not self._split_q:
            return critic(obs, actions)
        with torch.no_grad():
            features = critic.extract_features(obs, critic.features_extractor)
        n = features.shape[1]
        out = []
        for q in critic.q_networks:
            first = q[0]
            with torch.no_grad():
                h = torch.addmm(first.bias, features, first.weight[:, :n].t())
            h = h + actions @ first.weight[:, n:].t()
            for layer in q[1:]:
                h = layer(h)
            out.append(h)
        return tuple(out)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        if not self._fast():
            return super().train(gradient_steps, batch_size)
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        if self._shifted:
            self._check_shifted()
        ent_coef_losses, ent_coefs, actor_losses, critic_losses = [], [], [], []
        actor, critic, target, tau = self.actor, self.critic, self.critic_target, self.tau
        for gradient_step in range(gradient_steps):
            obs, actions, next_obs, dones, rewards, next_new = self._sample(batch_size)
            if next_new is not None:
                features = actor.extract_features(obs, actor.features_extractor)
                actions_pi, log_prob = self._act(features)
            else:
                actions_pi, log_prob = actor.action_log_prob(obs)
            log_prob = log_prob.reshape(-1, 1)
            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = torch.exp(self.log_ent_coef.detach())
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                ent_coef_losses.append(ent_coef_loss.item())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())
            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()

            with torch.no_grad():
                if next_new is not None:  # the next observation's older frames are this observation's newer ones
                    p = features.shape[1] // self.stacked_frames
                    new = actor.features_extractor.project(next_new)
                    next_actions, next_log_prob = self._act(torch.cat([features[:, p:], new], dim=1))
                else:
                    next_actions, next_log_prob = actor.action_log_prob(next_obs)
                next_q = torch.cat(target(next_obs, next_actions), dim=1)
                next_q, _ = torch.min(next_q, dim=1, keepdim=True)
                next_q = next_q - ent_coef * next_log_prob.reshape(-1, 1)
                target_q = rewards + (1 - dones) * self.gamma * next_q

            current_q = critic(obs, actions)
            critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in current_q)
            assert isinstance(critic_loss, torch.Tensor)
            critic_losses.append(critic_loss.item())
            critic.optimizer.zero_grad()
            critic_loss.backward()
            critic.optimizer.step()

            for param in self._critic_only:  # the actor loss's backward then skips the critic's parameter gradients
                param.requires_grad_(False)
            try:
                q_pi = torch.cat(self._q_of_actions(obs, actions_pi), dim=1)
            finally:
                for param in self._critic_only:
                    param.requires_grad_(True)
            min_q_pi, _ = torch.min(q_pi, dim=1, keepdim=True)
            actor_loss = (ent_coef * log_prob - min_q_pi).mean()
            actor_losses.append(actor_loss.item())
            actor.optimizer.zero_grad()
            actor_loss.backward()
            actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                with torch.no_grad():  # SB3's polyak_update: target = target * (1 - tau) + tau * source
                    torch._foreach_mul_(self._polyak_dst, 1 - tau)
                    torch._foreach_add_(self._polyak_dst, self._polyak_src, alpha=tau)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        return None


# --- env workers ------------------------------------------------------------------------------------------------

SPIN_MAIN = 0.005  # s this process polls for a worker's step before it blocks (one env step is about 2 ms)
SPIN_WORKER = 0.0002  # s a worker polls for its next command before it blocks


def _recv(conn: Any, spin: float) -> Any:
    """``conn.recv()``, polling for up to ``spin`` seconds first: a process that blocks lets its core go idle, and
    waking an idle core costs about 50-100 us on a virtual machine, a few percent of a 2 ms env step."""
    if spin > 0:
        start = time.perf_counter()
        while not conn.poll() and time.perf_counter() - start < spin:
            pass
    return conn.recv()


def _shm_worker(remote: Any, parent_remote: Any, env_fn_wrapper: Any, buffer: Any, shape: tuple[int, ...],
                dtype: str, spin: float) -> None:
    """SB3's ``SubprocVecEnv`` worker, except that step and reset write the observation into ``buffer`` (shared
    memory) and send the rest, so no image is pickled through the pipe; and it polls for ``spin`` seconds before
    it blocks waiting for the next command."""
    from stable_baselines3.common.env_util import is_wrapped
    from stable_baselines3.common.vec_env.patch_gym import _patch_env

    parent_remote.close()
    env = _patch_env(env_fn_wrapper.var())
    obs_view = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    while True:
        try:
            cmd, data = _recv(remote, spin)
            if cmd == "step":
                observation, reward, terminated, truncated, info = env.step(data)
                done = terminated or truncated
                info["TimeLimit.truncated"] = truncated and not terminated
                reset_info: dict[str, Any] = {}
                if done:
                    info["terminal_observation"] = observation
                    observation, reset_info = env.reset()
                obs_view[...] = observation
                remote.send((reward, done, info, reset_info))
            elif cmd == "reset":
                observation, reset_info = env.reset(seed=data[0], **({"options": data[1]} if data[1] else {}))
                obs_view[...] = observation
                remote.send(reset_info)
            elif cmd == "render":
                remote.send(env.render())
            elif cmd == "close":
                env.close()
                remote.close()
                break
            elif cmd == "get_spaces":
                remote.send((env.observation_space, env.action_space))
            elif cmd == "env_method":
                remote.send(env.get_wrapper_attr(data[0])(*data[1], **data[2]))
            elif cmd == "get_attr":
                remote.send(env.get_wrapper_attr(data))
            elif cmd == "has_attr":
                try:
                    env.get_wrapper_attr(data)
                    remote.send(True)
                except AttributeError:
                    remote.send(False)
            elif cmd == "set_attr":
                remote.send(setattr(env, data[0], data[1]))
            elif cmd == "is_wrapped":
                remote.send(is_wrapped(env, data))
            else:
                raise NotImplementedError(f"`{cmd}` is not implemented in the worker")
        except (EOFError, KeyboardInterrupt):
            break


class _SharedObsSubprocVecEnv(SubprocVecEnv):
    """``SubprocVecEnv`` whose workers hand observations over in shared memory (array observation spaces)."""

    def __init__(self, env_fns: list[Callable[[], gym.Env]], observation_space: gym.spaces.Box,
                 start_method: str | None = None, spin: float = 0.0, worker_spin: float = 0.0) -> None:
        self.waiting, self.closed, self._spin = False, False, spin
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        shape, dtype = tuple(observation_space.shape), np.dtype(observation_space.dtype)
        self._buffers = [ctx.RawArray("b", max(1, int(np.prod(shape)) * dtype.itemsize)) for _ in env_fns]
        self._views = [np.frombuffer(b, dtype=dtype).reshape(shape) for b in self._buffers]
        self.remotes, self.work_remotes = zip(*[ctx.Pipe() for _ in env_fns], strict=True)
        self.processes = []
        for work_remote, remote, env_fn, buffer in zip(self.work_remotes, self.remotes, env_fns, self._buffers,
                                                       strict=True):
            args = (work_remote, remote, CloudpickleWrapper(env_fn), buffer, shape, dtype.str, worker_spin)
            process = ctx.Process(target=_shm_worker, args=args, daemon=True)  # type: ignore[attr-defined]
            process.start()
            self.processes.append(process)
            work_remote.close()
        self.remotes[0].send(("get_spaces", None))
        obs_space, action_space = self.remotes[0].recv()
        VecEnv.__init__(self, len(env_fns), obs_space, action_space)

    def step_wait(self) -> Any:
        results = [_recv(remote, self._spin) for remote in self.remotes]
        self.waiting = False
        rews, dones, infos, self.reset_infos = zip(*results, strict=True)  # type: ignore[assignment]
        return np.stack(self._views), np.stack(rews), np.stack(dones), infos

    def reset(self) -> np.ndarray:
        for env_idx, remote in enumerate(self.remotes):
            remote.send(("reset", (self._seeds[env_idx], self._options[env_idx])))
        self.reset_infos = [remote.recv() for remote in self.remotes]
        self._reset_seeds()
        self._reset_options()
        return np.stack(self._views)


class SplitVecEnv(VecEnv):
    """``vec_env=subproc``: the first env steps in this process while the others step in worker processes (SB3's
    worker protocol, observations handed over in shared memory). With two envs on two cores, this process is busy
    with its own env instead of waiting for two workers, and only one observation crosses processes per step.

    Each env is the same object with the same seed as under ``SubprocVecEnv``, so runs give the same results.
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], start_method: str | None = None) -> None:
        self._local = DummyVecEnv(env_fns[:1])
        self._local.buf_rews = np.zeros(1, dtype=np.float64)  # rewards as the workers send them (not cut to float32)
        space = self._local.observation_space
        self._remote: VecEnv | None = None
        if len(env_fns) > 1:
            if isinstance(space, gym.spaces.Box):
                # a core for each process: waiting processes poll briefly instead of letting their core go idle
                free = len(os.sched_getaffinity(0)) >= len(env_fns) if hasattr(os, "sched_getaffinity") else False
                spin, worker_spin = (SPIN_MAIN, SPIN_WORKER) if free else (0.0, 0.0)
                self._remote = _SharedObsSubprocVecEnv(env_fns[1:], space, start_method, spin, worker_spin)
            else:
                self._remote = SubprocVecEnv(env_fns[1:], start_method)
        super().__init__(len(env_fns), space, self._local.action_space)

    def _parts(self) -> list[tuple[VecEnv, slice]]:
        parts: list[tuple[VecEnv, slice]] = [(self._local, slice(0, 1))]
        if self._remote is not None:
            parts.append((self._remote, slice(1, self.num_envs)))
        return parts

    def step_async(self, actions: np.ndarray) -> None:
        if self._remote is not None:  # the workers first: they step while this process steps its own env
            self._remote.step_async(actions[1:])
        self._local.step_async(actions[:1])

    def step_wait(self) -> Any:
        obs, rews, dones, infos = self._local.step_wait()
        if self._remote is not None:
            r_obs, r_rews, r_dones, r_infos = self._remote.step_wait()
            obs = np.concatenate([obs, r_obs])
            rews, dones = np.concatenate([rews, r_rews]), np.concatenate([dones, r_dones])
            infos = [*infos, *r_infos]
        self.reset_infos = [info for venv, _ in self._parts() for info in venv.reset_infos]
        return obs, rews, dones, infos

    def reset(self) -> np.ndarray:
        for venv, part in self._parts():  # seeds and options given to this vec env go to the env they belong to
            venv._seeds, venv._options = self._seeds[part], self._options[part]
        obs = [venv.reset() for venv, _ in self._parts()]
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [info for venv, _ in self._parts() for info in venv.reset_infos]
        return np.concatenate(obs)

    def close(self) -> None:
        for venv, _ in self._parts():
            venv.close()

    def _targets(self, indices: Any) -> list[tuple[VecEnv, list[int]]]:
        wanted = list(self._get_indices(indices))
        return [(venv, [i - part.start for i in wanted if part.start <= i < part.stop]) for venv, part in self._parts()]

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [x for venv, ix in self._targets(indices) if ix for x in venv.get_attr(attr_name, ix)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        for venv, ix in self._targets(indices):
            if ix:
                venv.set_attr(attr_name, value, ix)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        return [x for venv, ix in self._targets(indices) if ix
                for x in venv.env_method(method_name, *method_args, indices=ix, **method_kwargs)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [x for venv, ix in self._targets(indices) if ix for x in venv.env_is_wrapped(wrapper_class, ix)]

    def has_attr(self, attr_name: str) -> bool:
        return self._local.has_attr(attr_name)

    def get_images(self) -> list[Any]:
        return [image for venv, _ in self._parts() for image in venv.get_images()]
