"""PPO (Stable-Baselines3) on frozen cached features, or with a pixel encoder fine-tuned by PPO's loss.

Frozen: the same ``FrozenFeatures`` cache as SAC. Fine-tuned: the policy's shared features extractor is a
``FrameEncoder`` and the encoder's parameters sit in their own optimizer group at ``encoder_lr_mult`` x the lr.
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from ssl4rl.agents.pixel import FrameEncoder
from ssl4rl.config import PPOConfig


class ScaledPPO(PPO):
    """SB3's PPO whose optimizer groups may carry an ``lr_scale`` (the encoder's learning-rate multiplier)."""

    def __init__(self, *args: Any, encoder_lr_mult: float = 1.0, **kwargs: Any) -> None:
        self.encoder_lr_mult = encoder_lr_mult
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        extractor = self.policy.features_extractor
        if isinstance(extractor, FrameEncoder):  # keep the (pre-trained) encoder's weights, not SB3's orthogonal init
            extractor.reset_from(self.policy_kwargs["features_extractor_kwargs"]["encoder"])
            enc = {id(p) for p in extractor.encoder.parameters()}
            rest = [p for p in self.policy.parameters() if id(p) not in enc]
            groups = [{"params": rest, "lr_scale": 1.0},
                      {"params": list(extractor.encoder.parameters()), "lr_scale": self.encoder_lr_mult,
                       "lr": self.lr_schedule(1) * self.encoder_lr_mult}]
            self.policy.optimizer = self.policy.optimizer_class(groups, lr=self.lr_schedule(1),
                                                                **self.policy.optimizer_kwargs)

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer) -> None:
        super()._update_learning_rate(optimizers)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] *= group.get("lr_scale", 1.0)


def build_ppo(a: PPOConfig, policy: str, policy_kwargs: dict[str, Any], venv: VecEnv, agent_steps: int,
              encoder_lr_mult: float, tensorboard_log: str, seed: int, device: torch.device) -> ScaledPPO:
    """PPO with ``a``'s settings; a rollout is at most the run's length (tiny runs still make one update)."""
    n_steps = max(2, min(a.n_steps, agent_steps // venv.num_envs))
    return ScaledPPO(
        policy, venv, learning_rate=a.learning_rate, n_steps=n_steps, batch_size=min(a.batch_size, n_steps * venv.num_envs),
        n_epochs=a.n_epochs, gamma=a.gamma, gae_lambda=a.gae_lambda, clip_range=a.clip_range, ent_coef=a.ent_coef,
        vf_coef=a.vf_coef, max_grad_norm=a.max_grad_norm, policy_kwargs=policy_kwargs, tensorboard_log=tensorboard_log,
        seed=seed, device=device, verbose=0, encoder_lr_mult=encoder_lr_mult,
    )
