"""Resolve the ``encoder=`` names of the entry points to saved encoders."""

from __future__ import annotations

from pathlib import Path

from ssl4rl.encoders.base import META
from ssl4rl.errors import UserError
from ssl4rl.runs import find_latest

SAC_FAMILY = ("sac", "drq", "curl", "drq_paper", "curl_paper")
# The one registry of encoder= names: what each means and the agents that take it (besides a saved encoder folder)
ENCODERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mvp": ("the most recent MAE encoder under runs_root (a frozen MAE ViT, as in MVP)", (*SAC_FAMILY, "ppo", "planet",
                                                                                         "worldmodels")),
    "state": ("the true physical state (oracle)", ("sac", "ppo")),
    "random": ("a randomly initialised tiny ViT (baseline)", ("sac", "ppo")),
    "cnn": ("SB3 CnnPolicy trained end to end on pixels (baseline)", ("sac",)),
    "scratch": ("a freshly initialised encoder trained with the agent (sac/drq/curl: agent.backbone; planet: a small "
                "conv)", (*SAC_FAMILY, "ppo", "planet")),
    "vae": ("the VAE the V-M-C pipeline trains itself (agent=worldmodels)", ("worldmodels",)),
}


def encoder_names(agent: str) -> tuple[str, ...]:
    """The encoder= names ``agent`` takes besides a saved encoder folder."""
    return tuple(name for name, (_, agents) in ENCODERS.items() if agent in agents)


def resolve_encoder_path(name: str, runs_root: str | Path = "runs", allowed: tuple[str, ...] = ("mvp",)) -> Path:
    """``mvp`` -> latest MAE encoder folder under ``runs_root``; a folder path -> itself."""
    if name == "mvp":
        found = find_latest(runs_root, META, where=lambda m: m.get("method") == "mae")
        if found is None:
            raise UserError(
                f"no MAE encoder under {runs_root}/ yet; make one with "
                "`python pretrain/run.py method=mae data.path=<frames from envs/collect.py>`"
            )
        return found.parent
    path = Path(name)
    if path.exists():
        return path
    valid = "; ".join(f"{k} = {ENCODERS[k][0]}" if k in ENCODERS else k for k in allowed)
    raise UserError(f"unknown encoder '{name}': not a folder, and not one of: {valid}")
