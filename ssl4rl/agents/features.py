"""Frozen encoders in SB3: feature caching per env step, and a features extractor.

``FrozenFeatures`` is a ``VecEnvWrapper``: it encodes each new frame exactly
once per environment step, keeps the features of the last ``frame_stack``
frames, and hands the agent their concatenation. The replay buffer therefore
stores small feature vectors, not images, and no update ever re-runs the
encoder (the MVP recipe).

``StackedProjection`` is the small trainable head the policy puts on top: per frame, a LayerNorm, a
linear projection and tanh. SAC runs it ``prenormalized``: ``FrozenFeatures(normalize=True)`` caches each
frame's features normalised (zero mean, unit variance: the LayerNorm without its affine part, computed once
per frame), and the projection folds the LayerNorm's affine part into its linear layer. That is the same
function of the raw features, with the same parameters; it skips a LayerNorm pass over every sampled frame in
each forward and backward pass of an update, and the gradient of the normalised input, which nothing needs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn
from torch.nn import functional as F

from ssl4rl.encoders import Encoder

LN_EPS = 1e-5  # nn.LayerNorm's default, StackedProjection's


class FrozenFeatures(VecEnvWrapper):
    """Replace pixel observations (n, 3, H, W) by stacked frozen features (n, frame_stack * D); with ``normalize``
    each frame's features are normalised as a LayerNorm without affine part does (for
    ``StackedProjection(prenormalized=True)``)."""

    def __init__(self, venv: VecEnv, encoder: Encoder, frame_stack: int = 3, normalize: bool = False) -> None:
        shape = venv.observation_space.shape
        if shape is None or len(shape) != 3 or shape[0] != 3:
            raise ValueError(f"FrozenFeatures needs single-frame pixel envs (3,H,W), got {shape}")
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.frame_stack, self.dim, self.normalize = frame_stack, encoder.feature_dim, normalize
        space = gym.spaces.Box(-np.inf, np.inf, (frame_stack * self.dim,), dtype=np.float32)
        super().__init__(venv, observation_space=space)
        self._stack = np.zeros((venv.num_envs, frame_stack, self.dim), dtype=np.float32)
        self.last_frames: np.ndarray | None = None  # newest raw frames (for inspection)
        self.frames_encoded = 0

    def get_stack(self) -> dict[str, Any]:
        """The feature stacks and counter (for checkpoints)."""
        return {"stack": torch.from_numpy(self._stack.copy()), "frames_encoded": self.frames_encoded}

    def set_stack(self, state: dict[str, Any]) -> None:
        stack = state["stack"].numpy()
        if stack.shape != self._stack.shape:
            raise ValueError(f"feature stack {stack.shape} does not fit {self._stack.shape}")
        self._stack = stack.copy()
        self.frames_encoded = int(state["frames_encoded"])

    @torch.inference_mode()
    def _encode(self, frames: np.ndarray) -> np.ndarray:
        self.frames_encoded += len(frames)
        feats = self.encoder(torch.from_numpy(np.ascontiguousarray(frames))).float().cpu()
        if self.normalize:  # each frame's features to zero mean, unit variance: LayerNorm without its affine part
            feats = F.layer_norm(feats, (self.dim,), eps=LN_EPS)
        return feats.numpy()

    def _obs(self) -> np.ndarray:
        return self._stack.reshape(self.num_envs, -1).copy()

    def reset(self) -> np.ndarray:
        frames = self.venv.reset()
        self.last_frames = frames
        self._stack[:] = self._encode(frames)[:, None]
        return self._obs()

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        frames, rewards, dones, infos = self.venv.step_wait()
        self.last_frames = frames
        done_idx = np.flatnonzero(dones)
        terminal = [infos[i]["terminal_observation"] for i in done_idx if "terminal_observation" in infos[i]]
        feats = self._encode(frames if not terminal else np.concatenate([frames, np.stack(terminal)]))
        new, term_feats = feats[: self.num_envs], feats[self.num_envs :]
        self._stack = np.roll(self._stack, -1, axis=1)
        self._stack[:, -1] = new
        if len(term_feats):  # bootstrapping needs the stacked features of the last real frame
            for j, i in enumerate(i for i in done_idx if "terminal_observation" in infos[i]):
                infos[i]["terminal_observation"] = self._stack[i].reshape(-1).copy()
                infos[i]["terminal_observation"][-self.dim :] = term_feats[j]
        for i in done_idx:  # the new episode's stack starts full of its first frame
            self._stack[i] = new[i]
        return self._obs(), rewards, dones, infos


class StackedProjection(BaseFeaturesExtractor):
    """Per-frame LayerNorm + linear projection + tanh of stacked frozen features (trainable, small).

    MVP keeps the ViT's final norm trainable and projects the frozen feature;
    this does the same for each of the ``frame_stack`` frames.
    """

    def __init__(self, observation_space: gym.spaces.Box, frame_stack: int = 3, proj_dim: int = 64,
                 prenormalized: bool = False) -> None:
        """``prenormalized``: the observations come from ``FrozenFeatures(normalize=True)``."""
        super().__init__(observation_space, frame_stack * proj_dim)
        self.frame_stack, self.prenormalized = frame_stack, prenormalized
        dim = observation_space.shape[0] // frame_stack
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=LN_EPS), nn.Linear(dim, proj_dim), nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        n = obs.shape[0]
        if not self.prenormalized:
            return self.proj(obs.view(n, self.frame_stack, -1)).view(n, -1)
        return self.project(obs.view(n * self.frame_stack, -1)).view(n, -1)

    def project(self, frames: torch.Tensor) -> torch.Tensor:
        """The projection of single frames' features (m, D) -> (m, proj_dim)."""
        if not self.prenormalized:
            return self.proj(frames)
        # the input is already normalised per frame (FrozenFeatures(normalize=True)); LayerNorm's affine part is
        # folded into the linear layer: W (x w + b) + c = x (W diag(w))^T + (W b + c), the same function
        norm, linear = self.proj[0], self.proj[1]
        weight = linear.weight * norm.weight
        bias = torch.addmv(linear.bias, linear.weight, norm.bias)
        return torch.tanh(F.linear(frames, weight, bias))
