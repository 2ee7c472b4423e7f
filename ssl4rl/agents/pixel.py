"""SAC whose pixel encoder learns: DrQ, CURL, fine-tuning, an SSL method as auxiliary loss, decoupled (ATC) training.

One seam, inside Stable-Baselines3's SAC:

- ``FrameEncoder`` is the policy's features extractor: one ssl4rl ``Encoder`` (any saved encoder, or a fresh one)
  runs on each of the ``frame_stack`` frames of an observation and their features are concatenated, so a frozen,
  pre-trained or scratch encoder is the same object in every mode. Actor and critic share it
  (``share_features_extractor=True``); the critic target holds an EMA copy (``encoder_tau``), which is also CURL's
  key encoder.
- ``PixelSAC`` is SB3's ``SAC`` with ``train`` replaced (rollouts, replay, entropy tuning and logging stay SB3's):
  the critic loss, CURL's loss and the auxiliary loss train the encoder; the actor reads the encoder's output
  detached (as in CURL and DrQ, except that there the actor has its own linear + LayerNorm + tanh head on the
  detached conv map and only the convs are tied; here it reads the encoder's features, detached).
  ``decoupled`` detaches the critic too, so only the auxiliary loss trains the encoder.
- DrQ: a random shift of obs and next obs; the Q target is averaged over K augmentations of the next observation,
  the critic loss over M of the observation (K = M = 1 is RAD).

The actor update reuses the critic pass's features of the first augmentation (detached) instead of encoding the
batch again, which saves a forward pass per update; DrQ and CURL re-encode after the critic step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import SAC
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn

from ssl4rl.augment import center_crop, random_crop, random_shift
from ssl4rl.encoders import Encoder
from ssl4rl.losses import bilinear_info_nce
from ssl4rl.methods.base import Batch, Method


class FrameEncoder(BaseFeaturesExtractor):
    """SB3 features extractor: ``encoder`` on each stacked frame of (N, 3F, H, W) images, features concatenated to
    (N, F * D). Images larger than the encoder's size are centre-cropped (CURL acts on the centre). The encoder runs
    channels-last (about 2x faster convolutions on a CPU) with its normalisation fused into one multiply-add."""

    def __init__(self, observation_space: gym.spaces.Box, encoder: Encoder, frame_stack: int) -> None:
        super().__init__(observation_space, frame_stack * encoder.feature_dim)
        self.encoder = copy.deepcopy(encoder)  # a copy: SB3 builds the critic target's extractor from the same kwargs
        self.frame_stack = frame_stack

    def reset_from(self, source: Encoder) -> None:
        """Take ``source``'s weights (undoing SB3's re-initialisation of extractors) and go channels-last."""
        self.encoder.load_state_dict(source.state_dict())
        self.encoder.to(memory_format=torch.channels_last)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (SB3 divides uint8 observations by 255)."""
        return self.features(x01, 1.0)

    def features(self, x: torch.Tensor, scale: float = 1 / 255) -> torch.Tensor:
        """Features of images whose pixel values times ``scale`` are in [0, 1] (uint8 frames: 1 / 255)."""
        size = self.encoder.image_size
        if x.shape[-1] != size:
            x = center_crop(x, size)
        n, f = x.shape[0], self.frame_stack
        # (N, 3F, H, W) -> (N * F, H, W, 3) in one copy, seen as channels-last (N * F, 3, H, W): no copy if x is
        # channels-last already (an augmented batch)
        frames = x.permute(0, 2, 3, 1).reshape(n, size, size, f, 3).permute(0, 3, 1, 2, 4).reshape(n * f, -1)
        enc = self.encoder
        mean, std = enc.mean.reshape(3), enc.std.reshape(3)
        pixels = size * size  # (x * scale - mean) / std with per-pixel vectors (a size-3 broadcast does not vectorise)
        frames = torch.addcmul((-mean / std).repeat(pixels), frames.float(), (scale / std).repeat(pixels))
        return enc.forward_features(frames.view(n * f, size, size, 3).permute(0, 3, 1, 2)).reshape(n, -1)


@dataclass
class PixelSettings:
    """How ``PixelSAC`` trains its encoder (from ``AgentConfig`` and ``TrainConfig``)."""

    mode: str = "finetune"  # finetune | decoupled
    augment: str = "none"  # none | shift | crop
    pad: int = 4
    target_k: int = 1
    critic_m: int = 1
    encoder_tau: float = 0.05
    actor_every: int = 1
    target_every: int = 1
    curl_weight: float = 0.0
    encoder_lr_mult: float = 1.0
    warmup_steps: int = 0  # agent steps before the encoder trains
    aux_weight: float = 1.0
    aux_every: int = 1
    aux_k: int = 0  # 0: positives are two augmentations of a frame; k > 0: the frame k agent steps later


class AuxLoss(nn.Module):
    """An ssl4rl method as an auxiliary loss on replay frames, sharing the agent's encoder (no second copy of losses).

    The method's heads and teachers are trained by the critic's optimizer at the agent's learning rate; its own
    recipe (lr, optimizer, batch size) does not apply. ``after_step`` runs the method's EMA / queue updates."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method
        self.steps = 0

    def loss(self, replay: Any, batch_size: int, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The method's loss on ``batch_size`` replay frames, positives ``k`` steps later (0: augmentation)."""
        frames, positive = replay.sample_frames(batch_size, k)
        device = self.method.encoder.mean.device
        batch = Batch(frames, torch.arange(len(frames)), positive).to(device)
        return self.method.training_step(batch, self.steps)

    def after_step(self) -> None:
        self.steps += 1
        self.method.after_step(self.steps)


class PixelSAC(SAC):
    """SB3 SAC with a learning pixel encoder; ``train`` routes gradients as CURL and DrQ do (one difference: the
    module doc)."""

    def __init__(self, *args: Any, pixel: PixelSettings, aux: AuxLoss | None = None, **kwargs: Any) -> None:
        self.pixel, self._aux = pixel, aux
        kwargs.setdefault("policy_kwargs", {})["share_features_extractor"] = True
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ setup
    def _setup_model(self) -> None:
        super()._setup_model()
        source = self.policy_kwargs["features_extractor_kwargs"]["encoder"]
        self.actor.features_extractor.reset_from(source)
        self.critic_target.features_extractor.reset_from(source)
        self.encoder: Encoder = self.actor.features_extractor.encoder
        dim = self.actor.features_extractor.features_dim
        if self.pixel.curl_weight > 0:  # CURL's W, initialised as CURL does
            self.policy.curl_w = nn.Parameter(torch.rand(dim, dim, device=self.device))
        if self._aux is not None:  # the agent's encoder (a copy with the same weights built the method's teachers)
            self._aux.method.encoder = self.encoder
            self.policy.aux = self._aux.to(self.device)
        enc = {id(p) for p in self.encoder.parameters()}
        target_enc = {id(p) for p in self.critic_target.features_extractor.encoder.parameters()}
        self._q_online = [p for p in self.critic.parameters() if id(p) not in enc]
        self._q_target = [p for p in self.critic_target.parameters() if id(p) not in target_enc]
        self._build_optimizers()

    def _build_optimizers(self) -> None:
        """Actor: its heads only. Critic: Q networks, CURL's W, the aux heads, and the encoder at ``encoder_lr_mult``."""
        lr = self.lr_schedule(1)
        enc = {id(p) for p in self.encoder.parameters()}
        actor = [p for p in self.actor.parameters() if id(p) not in enc]
        heads = [p for p in self.critic.parameters() if id(p) not in enc]
        heads += [self.policy.curl_w] if self.pixel.curl_weight > 0 else []
        if self._aux is not None:
            heads += [p for p in self._aux.parameters() if id(p) not in enc and p.requires_grad]
        opt = self.policy.optimizer_class
        kwargs = self.policy.optimizer_kwargs
        self.actor.optimizer = opt([{"params": actor, "lr_scale": 1.0}], lr=lr, **kwargs)
        mult = self.pixel.encoder_lr_mult
        groups = [{"params": heads, "lr_scale": 1.0},
                  {"params": list(self.encoder.parameters()), "lr_scale": mult, "lr": lr * mult}]
        self.critic.optimizer = opt(groups, lr=lr, **kwargs)

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer) -> None:
        """SB3's schedule, then each group's ``lr_scale`` (the encoder's LR multiplier)."""
        super()._update_learning_rate(optimizers)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] *= group.get("lr_scale", 1.0)

    def extra_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond the policy and optimizers: the auxiliary method's generator and step."""
        if self._aux is None:
            return {}
        return {"aux_generator": self._aux.method.generator.get_state(), "aux_steps": self._aux.steps}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self._aux is not None:
            self._aux.method.generator.set_state(state["aux_generator"])
            self._aux.steps = int(state["aux_steps"])

    # ------------------------------------------------------------------ the pieces of one update
    def augment(self, obs: torch.Tensor, copies: int = 1) -> torch.Tensor:
        """uint8 (N, 3F, H, W) -> ``copies`` x N uint8 observations, each shifted or cropped (one offset per
        observation, all its frames alike); copy j of observation i is row j * N + i."""
        x = obs.repeat(copies, 1, 1, 1) if copies > 1 else obs
        if self.pixel.augment == "shift":
            return random_shift(x, self.pixel.pad)
        if self.pixel.augment == "crop":
            return random_crop(x, self.encoder.image_size)
        return x

    def encode(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Features of uint8 observations by the online encoder (or the critic target's EMA encoder)."""
        return (self.critic_target if target else self.actor).features_extractor.features(obs)

    def warming_up(self) -> bool:
        """Within the frozen warm-up: no loss trains the encoder yet."""
        return self.num_timesteps < self.pixel.warmup_steps

    def encoder_trains(self) -> bool:
        """Whether the critic's gradient reaches the encoder now (finetune, after the frozen warm-up)."""
        return self.pixel.mode == "finetune" and not self.warming_up()

    def actor_from_features(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A squashed-Gaussian action and its log-probability from features ``h`` (SB3's actor heads)."""
        latent = self.actor.latent_pi(h)
        log_std = torch.clamp(self.actor.log_std(latent), LOG_STD_MIN, LOG_STD_MAX)
        return self.actor.action_dist.log_prob_from_params(self.actor.mu(latent), log_std)

    def q_values(self, h: torch.Tensor, actions: torch.Tensor, target: bool = False) -> list[torch.Tensor]:
        """Each Q network of the critic (or its target) on features ``h`` and ``actions``."""
        critic = self.critic_target if target else self.critic
        x = torch.cat([h, actions], dim=1)
        return [q(x) for q in critic.q_networks]

    def ent_coef_value(self) -> torch.Tensor:
        return torch.exp(self.log_ent_coef.detach()) if self.ent_coef_optimizer is not None else self.ent_coef_tensor

    def td_target(self, next_obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """DrQ's target: the soft Bellman target averaged over ``target_k`` augmentations of the next observation."""
        k, n = self.pixel.target_k, len(next_obs)
        with torch.no_grad():
            x = self.augment(next_obs, k)
            action, log_prob = self.actor_from_features(self.encode(x))
            q = torch.min(torch.cat(self.q_values(self.encode(x, target=True), action, True), 1), 1, keepdim=True).values
            soft = (q - self.ent_coef_value() * log_prob.reshape(-1, 1)).reshape(k, n, 1).mean(0)
            return rewards + (1 - dones) * self.gamma * soft

    def critic_loss(self, obs: torch.Tensor, actions: torch.Tensor, target: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The critic loss averaged over ``critic_m`` augmentations; also the first augmentation's features."""
        m, n = self.pixel.critic_m, len(obs)
        trains = self.encoder_trains()
        with torch.set_grad_enabled(trains):
            h = self.encode(self.augment(obs, m))
        qs = self.q_values(h if trains else h.detach(), actions.repeat(m, 1))
        loss = 0.5 * sum(F.mse_loss(q, target.repeat(m, 1)) for q in qs)
        return loss, h[:n]

    def curl_loss(self, h_anchor: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """CURL: the anchor's features against the EMA key encoder's features of another augmentation."""
        with torch.no_grad():
            keys = self.encode(self.augment(obs), target=True)
        return bilinear_info_nce(h_anchor, keys, self.policy.curl_w)

    def actor_loss(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SAC's actor loss on detached features (no gradient reaches the encoder); also the log-probabilities."""
        h = h.detach()
        action, log_prob = self.actor_from_features(h)
        q = torch.min(torch.cat(self.q_values(h, action), 1), 1, keepdim=True).values
        return (self.ent_coef_value() * log_prob.reshape(-1, 1) - q).mean(), log_prob

    def update_targets(self) -> None:
        """EMA of the Q networks at ``tau`` and of the encoder at ``encoder_tau``."""
        polyak_update(self._q_online, self._q_target, self.tau)
        polyak_update(self.encoder.parameters(), self.critic_target.features_extractor.encoder.parameters(),
                      self.pixel.encoder_tau)

    # ------------------------------------------------------------------ SB3's hook
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)
        logs: dict[str, list[float]] = {}

        def record(**values: torch.Tensor | float) -> None:
            for k, v in values.items():
                logs.setdefault(k, []).append(v.item() if isinstance(v, torch.Tensor) else v)

        for _ in range(gradient_steps):
            self._n_updates += 1
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            target = self.td_target(data.next_observations, data.rewards, data.dones)
            loss, h0 = self.critic_loss(data.observations, data.actions, target)
            record(critic_loss=loss)
            ssl_now = not self.warming_up()  # CURL and aux losses only train the encoder (and their heads)
            if self.pixel.curl_weight > 0 and ssl_now:
                anchor = h0 if self.encoder_trains() else self.encode(self.augment(data.observations))
                curl = self.curl_loss(anchor, data.observations)
                loss = loss + self.pixel.curl_weight * curl
                record(curl_loss=curl)
            aux_now = ssl_now and self._aux is not None and self._n_updates % self.pixel.aux_every == 0
            if aux_now:
                aux, _ = self._aux.loss(self.replay_buffer, batch_size, self.pixel.aux_k)
                loss = loss + self.pixel.aux_weight * aux
                record(aux_loss=aux)
            self.critic.optimizer.zero_grad()
            loss.backward()
            self.critic.optimizer.step()
            if aux_now:
                self._aux.after_step()
            if self._n_updates % self.pixel.actor_every == 0:
                actor_loss, log_prob = self.actor_loss(h0)
                if self.ent_coef_optimizer is not None:
                    ent_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                    self.ent_coef_optimizer.zero_grad()
                    ent_loss.backward()
                    self.ent_coef_optimizer.step()
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()
                record(actor_loss=actor_loss, ent_coef=self.ent_coef_value())
            if self._n_updates % self.pixel.target_every == 0:
                self.update_targets()
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for k, v in logs.items():
            self.logger.record(f"train/{k}", float(np.mean(v)))
