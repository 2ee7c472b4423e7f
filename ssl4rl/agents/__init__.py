"""Agents: SB3 SAC on frozen features, the feature-caching wrapper, SB3 extractors."""

from ssl4rl.agents.features import EncoderExtractor, FrozenFeatures, StackedProjection
from ssl4rl.agents.sac import evaluate, train_agent

__all__ = ["EncoderExtractor", "FrozenFeatures", "StackedProjection", "evaluate", "train_agent"]
