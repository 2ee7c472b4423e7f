"""M of the recurrent world model (Ha & Schmidhuber, "World Models", 2018): an MDN-RNN.

An LSTM (256 units by default) reads (z_t, a_t) and its hidden state h_t; its output parameterises, for every
latent dimension independently, a mixture of ``mixtures`` (5) Gaussians over z_{t+1} (weights, means,
log standard deviations), as in the paper. A linear reward head on the same output predicts r_t, the reward
of taking a_t in z_t, which lets a controller be trained inside the model ("in the dream") on tasks whose
reward is not a survival bonus. No done head: DMC episodes never end early, a dream lasts an episode.

Sampling at temperature tau follows the paper's code: the mixture weights are softmax(logits / tau) and the
chosen component's standard deviation is multiplied by sqrt(tau); tau = 0 gives the mixture MODE as a
deterministic prediction (the mean of the most likely component).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.errors import UserError
from ssl4rl.worldmodels.io import WorldModel, register_world_model

State = tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c), each (1, B, hidden)


class Mixture(NamedTuple):
    """Per-dimension Gaussian mixtures; each field is (..., z_dim, mixtures)."""

    logit_pi: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor


def mdn_log_prob(target: torch.Tensor, mix: Mixture) -> torch.Tensor:
    """log p(target) under ``mix``, per dimension: target (..., z_dim) -> (..., z_dim)."""
    x = target.unsqueeze(-1)
    log_normal = -0.5 * ((x - mix.mu) / mix.log_sigma.exp()).pow(2) - mix.log_sigma - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(F.log_softmax(mix.logit_pi, dim=-1) + log_normal, dim=-1)


def mdn_sample(
    mix: Mixture,
    tau: float,
    uniform: torch.Tensor | None = None,
    normal: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw z (..., z_dim) from ``mix`` at temperature ``tau`` (0: the mode, deterministically).

    ``uniform`` (component choice, U(0,1)) and ``normal`` (N(0,1)) may be given, shaped like z or
    broadcastable to it, so several rollouts can share their random numbers; otherwise they are drawn from
    ``generator``."""
    if tau < 0:
        raise UserError(f"temperature={tau}: must be at least 0")
    shape = mix.mu.shape[:-1]
    if tau == 0:
        k = mix.logit_pi.argmax(-1, keepdim=True)
        return mix.mu.gather(-1, k).squeeze(-1)
    if uniform is None:
        uniform = torch.rand(shape, generator=generator, device=mix.mu.device)
    if normal is None:
        normal = torch.randn(shape, generator=generator, device=mix.mu.device)
    logits = mix.logit_pi / tau
    cdf = (logits - logits.amax(-1, keepdim=True)).exp().cumsum(-1)  # unnormalised: F.softmax over 5 is slow on CPU
    k = (cdf < uniform.expand(shape).unsqueeze(-1) * cdf[..., -1:]).sum(-1, keepdim=True).clamp(max=mix.mu.shape[-1] - 1)
    mu, log_sigma = mix.mu.gather(-1, k).squeeze(-1), mix.log_sigma.gather(-1, k).squeeze(-1)
    return mu + log_sigma.exp() * math.sqrt(tau) * normal


@register_world_model
class MDNRNN(WorldModel):
    """LSTM + per-dimension mixture density head over z_{t+1} + reward head over r_t."""

    kind = "mdnrnn"

    def __init__(self, z_dim: int = 32, action_dim: int = 1, hidden: int = 256, mixtures: int = 5) -> None:
        super().__init__()
        for name, value in (("z_dim", z_dim), ("action_dim", action_dim), ("hidden", hidden), ("mixtures", mixtures)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192:
                raise UserError(f"{name}={value!r}: must be a whole number from 1 to 8192")
        self.z_dim, self.action_dim, self.hidden, self.mixtures = z_dim, action_dim, hidden, mixtures
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.mdn = nn.Linear(hidden, 3 * z_dim * mixtures)
        self.reward = nn.Linear(hidden, 1)

    def config(self) -> dict[str, Any]:
        return {"z_dim": self.z_dim, "action_dim": self.action_dim, "hidden": self.hidden, "mixtures": self.mixtures}

    def initial_state(self, batch: int) -> State:
        """The zero LSTM state of ``batch`` sequences (dreams and real episodes start from it)."""
        dev = self.reward.weight.device
        return torch.zeros(1, batch, self.hidden, device=dev), torch.zeros(1, batch, self.hidden, device=dev)

    def forward(self, z: torch.Tensor, a: torch.Tensor, state: State | None = None) -> tuple[Mixture, torch.Tensor, State]:
        """z (B,T,z_dim), a (B,T,action_dim) -> mixture over z_{t+1} (B,T,z_dim,K), reward r_t (B,T), LSTM state."""
        out, state = self.lstm(torch.cat([z, a], dim=-1), state)
        params = self.mdn(out).view(*out.shape[:-1], 3, self.z_dim, self.mixtures)
        mix = Mixture(params[..., 0, :, :], params[..., 1, :, :], params[..., 2, :, :])
        return mix, self.reward(out).squeeze(-1), state

    def step(self, z: torch.Tensor, a: torch.Tensor, state: State) -> tuple[Mixture, torch.Tensor, State]:
        """One step for a batch: z (B,z_dim), a (B,action_dim) -> mixture (B,z_dim,K), reward (B,), new state;
        the new hidden state ``state[0][0]`` is the h_{t+1} a controller sees next."""
        mix, reward, state = self(z.unsqueeze(1), a.unsqueeze(1), state)
        return Mixture(*(p.squeeze(1) for p in mix)), reward.squeeze(1), state

    def loss(
        self, z: torch.Tensor, a: torch.Tensor, r: torch.Tensor, reward_weight: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Sequences z (B,T+1,z_dim), a (B,T,A), r (B,T) -> mean negative log-likelihood of z_{t+1} per
        dimension (nats) + ``reward_weight`` x the reward's mean squared error."""
        mix, reward, _ = self(z[:, :-1], a)
        nll = -mdn_log_prob(z[:, 1:], mix).mean()
        mse = F.mse_loss(reward, r)
        total = nll + reward_weight * mse
        return total, {"loss": total.item(), "nll": nll.item(), "reward_mse": mse.item()}
