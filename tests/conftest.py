"""Shared fixtures. ``import ssl4rl`` first: it picks the headless GL backend
(and imports triton) before dm_control / mujoco are imported anywhere."""

import ssl4rl  # noqa: F401  (must stay the first import)

import pytest
import torch

from ssl4rl.data import collect

# The models under test are tiny: one intra-op thread is faster than two on a
# 2-core machine (no thread spin contention) and keeps timings steady.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Three random-policy cartpole episodes at 32 px (collected once per session)."""
    out = tmp_path_factory.mktemp("tiny_dataset")
    collect("dmc_cartpole", episodes=3, out=out, seed=0, image_size=32, progress=False)
    return out
