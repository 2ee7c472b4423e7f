"""Agents: SB3 SAC on frozen features and the feature-caching wrapper."""

from ssl4rl.agents.features import FrozenFeatures, StackedProjection
from ssl4rl.agents.sac import evaluate, train_agent

__all__ = ["FrozenFeatures", "StackedProjection", "evaluate", "train_agent"]
