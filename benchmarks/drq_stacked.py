"""Diagnostic: DrQ with the frames stacked on channels (one 3F-channel first conv, as the DrQ and CURL papers do)
instead of ssl4rl's per-frame encoder, to test whether per-frame encoding causes the pixel arms' plateau near 200.

    python benchmarks/drq_stacked.py env=dmc_cartpole agent=drq seed=0 steps=100000 eval_every=12500 \\
        eval_episodes=10 video=false progress=false out=runs/exp/drq_stacked/s0

Takes ``agents/train.py``'s arguments and runs it with ``FrameEncoder`` replaced by ``StackedFrameEncoder`` (the
first conv re-initialised for 3F channels with a fixed seed, so the actor's and the critic target's copies agree).
Scratch encoders only: the saved-encoder contract is per frame. Result (2026-12-04, seed 0): 157 / 214 / 256 / 216 /
189 at 12.5k-62.5k env steps, the same plateau as the per-frame encoder (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import copy
import runpy
import sys
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import ssl4rl.agents.sac as sac
from ssl4rl.agents.pixel import FrameEncoder
from ssl4rl.augment import center_crop
from ssl4rl.encoders import Encoder

ROOT = Path(__file__).resolve().parents[1]


class StackedFrameEncoder(FrameEncoder):
    """The encoder on the (N, 3F, H, W) stack at once: its first conv takes 3F channels; features (N, D)."""

    def __init__(self, observation_space: gym.spaces.Box, encoder: Encoder, frame_stack: int) -> None:
        BaseFeaturesExtractor.__init__(self, observation_space, encoder.feature_dim)
        self.encoder = copy.deepcopy(encoder)
        self.frame_stack = frame_stack
        self.encoder.convs[0] = self._first_conv(encoder)

    def _first_conv(self, source: Encoder) -> nn.Conv2d:
        c0 = source.convs[0]
        rng = torch.random.get_rng_state()
        torch.manual_seed(1234)
        conv = nn.Conv2d(3 * self.frame_stack, c0.out_channels, 3, stride=c0.stride)
        torch.random.set_rng_state(rng)
        return conv

    def reset_from(self, source: Encoder) -> None:
        state = dict(source.state_dict())
        first = self._first_conv(source)
        state["convs.0.weight"], state["convs.0.bias"] = first.weight.data, first.bias.data
        self.encoder.load_state_dict(state)
        self.encoder.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor, scale: float = 1 / 255) -> torch.Tensor:
        enc, f = self.encoder, self.frame_stack
        if x.shape[-1] != enc.image_size:
            x = center_crop(x, enc.image_size)
        mean, std = enc.mean.reshape(3).repeat(f).view(1, -1, 1, 1), enc.std.reshape(3).repeat(f).view(1, -1, 1, 1)
        x = ((x.float() * scale - mean) / std).contiguous(memory_format=torch.channels_last)
        return enc.head(enc.convs(x).flatten(1))


if __name__ == "__main__":
    sac.FrameEncoder = StackedFrameEncoder
    sys.argv = [str(ROOT / "agents" / "train.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
