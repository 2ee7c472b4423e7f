"""SB3's SAC update with fewer operations, for SAC on frozen features and on true state (``FastSAC``).

The update is SB3's (``stable_baselines3.sac.SAC.train``): the same losses, in the same order, on the same
replay samples drawn from the same RNG calls, the same hyper-parameters and one update per ``gradient_steps``.
What differs is how it is computed:

- the actor loss runs the critic with the critic's own parameters frozen, so its backward pass computes the
  gradient for the actor only (SB3 also computes the critic's parameter gradients there, and then discards them);
  the actor's gradients are the same numbers;
- Adam runs fused (one kernel over all of an optimiser's parameters; ``torch.optim.Adam(fused=True)``) for the
  actor, the critic and the entropy coefficient: the same update rule, whose last bits may round differently;
- the target networks' Polyak average is two ``torch._foreach`` calls instead of a loop of two ops per tensor
  (the same arithmetic);
- a replay batch is gathered by ``torch.index_select`` from tensors that share the buffer's memory (one copy
  instead of numpy's fancy indexing followed by ``torch.tensor``'s copy); the indices are drawn exactly as SB3
  draws them.

Anything this does not cover (gSDE, batch-norm statistics, a ``VecNormalize`` env, n-step replay) falls back to
SB3's own ``train``. Runs stay seeded-repeatable and resume bit-identically: the update is deterministic and its
state (policy, optimisers, entropy coefficient, RNGs) is what SB3's is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from torch import nn
from torch.nn import functional as F

# layers whose forward is the same in training and evaluation mode
MODE_FREE = (nn.Linear, nn.ReLU, nn.Tanh, nn.LayerNorm, nn.Identity, nn.Flatten, nn.Conv2d, nn.ELU, nn.LeakyReLU)


def fused_adam_kwargs(policy_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``policy_kwargs`` with ``fused=True`` added to the optimiser's keyword arguments (Adam only)."""
    kwargs = dict(policy_kwargs or {})
    if kwargs.get("optimizer_class", torch.optim.Adam) is torch.optim.Adam:
        kwargs["optimizer_kwargs"] = {"fused": True, **dict(kwargs.get("optimizer_kwargs") or {})}
    return kwargs


class FastSAC(SAC):
    """``stable_baselines3.SAC`` whose ``train`` does the same update with fewer operations (module docstring)."""

    fused = True  # fused Adam (False: SB3's default Adam, for comparisons)

    def __init__(self, policy: Any, env: Any, **kwargs: Any) -> None:
        if self.fused:
            kwargs["policy_kwargs"] = fused_adam_kwargs(kwargs.get("policy_kwargs"))
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
            # no layer behaves differently in training and evaluation mode: switching modes (twice per agent step,
            # a walk over every module) changes nothing, so only the flag is kept
            self.policy.set_training_mode = self._set_mode_flag  # type: ignore[method-assign]
        q_nets = self.critic.q_networks
        self._split_q = all(isinstance(q[0], nn.Linear) and all(type(m) in MODE_FREE for m in q) for q in q_nets)

    def _set_mode_flag(self, mode: bool) -> None:
        self.policy.training = mode

    def _fast(self) -> bool:
        return (not self.use_sde and not self.batch_norm_stats and self._vec_normalize_env is None
                and type(self.replay_buffer) is ReplayBuffer and not self.replay_buffer.optimize_memory_usage)

    def _sample(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """A replay batch as SB3's ``ReplayBuffer.sample`` draws it (same indices, same RNG calls), gathered once."""
        rb = self.replay_buffer
        upper = rb.buffer_size if rb.full else rb.pos
        batch_inds = np.random.randint(0, upper, size=batch_size)
        env_inds = np.random.randint(0, high=rb.n_envs, size=(batch_size,))
        arrays = (rb.observations, rb.actions, rb.next_observations, rb.dones, rb.timeouts, rb.rewards)
        cached = getattr(self, "_rb_views", None)
        if cached is None or any(a is not b for a, b in zip(cached[0], arrays, strict=True)):
            rows = rb.buffer_size * rb.n_envs  # (rows, -1) views that share the buffer's memory
            cached = (arrays, [torch.from_numpy(a.reshape(rows, -1)) for a in arrays])
            self._rb_views = cached
        idx = torch.from_numpy(batch_inds * rb.n_envs + env_inds)
        obs_b, act_b, next_b, done_b, timeout_b, reward_b = (torch.index_select(a, 0, idx) for a in cached[1])
        obs_b, next_b = obs_b.view(batch_size, *rb.obs_shape), next_b.view(batch_size, *rb.obs_shape)
        done_b = done_b * (1 - timeout_b)  # only dones that are not timeouts (SB3's float32 arithmetic)
        to = self.device
        return obs_b.to(to), act_b.to(to), next_b.to(to), done_b.to(to), reward_b.to(to)

    def _q_of_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``critic(obs, actions)`` with the critic frozen, differentiable in ``actions`` only: the first layer's
        product with the features, which no gradient needs, is computed apart from its product with the actions, so
        the backward pass skips the features' columns (SB3: one product with ``cat([features, actions])``)."""
        critic = self.critic
        if not self._split_q or critic.share_features_extractor:
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
        ent_coef_losses, ent_coefs, actor_losses, critic_losses = [], [], [], []
        actor, critic, target, tau = self.actor, self.critic, self.critic_target, self.tau
        for gradient_step in range(gradient_steps):
            obs, actions, next_obs, dones, rewards = self._sample(batch_size)
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

            for p in self._critic_only:  # the actor loss's backward then skips the critic's parameter gradients
                p.requires_grad_(False)
            try:
                q_pi = torch.cat(self._q_of_actions(obs, actions_pi), dim=1)
            finally:
                for p in self._critic_only:
                    p.requires_grad_(True)
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
