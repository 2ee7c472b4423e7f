"""Planners over a batched score ``score(actions: (N, H, A)) -> (N,)`` (higher is better): CEM and MPPI
for continuous actions, categorical CEM and exhaustive search for discrete (one-hot) actions."""

from ssl4rl.planning.cem import CEM, CPU_SETTING, PLANET_SETTING, Score, check_rollout_memory
from ssl4rl.planning.discrete import CategoricalCEM, all_sequences, exhaustive_search, one_hot
from ssl4rl.planning.mppi import MPPI

PLANNERS = {"cem": CEM, "mppi": MPPI}

__all__ = [
    "CEM", "CPU_SETTING", "MPPI", "PLANET_SETTING", "PLANNERS", "CategoricalCEM", "Score", "all_sequences",
    "check_rollout_memory", "exhaustive_search", "one_hot",
]
