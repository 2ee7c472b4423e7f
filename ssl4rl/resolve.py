"""Resolve the ``encoder=`` names of the entry points to saved encoders."""

from __future__ import annotations

from pathlib import Path

from ssl4rl.encoders.base import META
from ssl4rl.errors import UserError
from ssl4rl.runs import find_latest

NAMED = {
    "mvp": "the most recent MAE encoder under runs_root (a frozen MAE ViT, as in MVP)",
    "state": "the true physical state (oracle)",
    "random": "a randomly initialised tiny ViT (baseline)",
    "cnn": "SB3 CnnPolicy trained end to end on pixels (baseline)",
    "scratch": "a small conv encoder trained end to end inside the world model (agent=planet)",
    "vae": "the VAE the V-M-C pipeline trains itself (agent=worldmodels)",
}


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
    valid = "; ".join(f"{k} = {NAMED[k]}" if k in NAMED else k for k in allowed)
    raise UserError(f"unknown encoder '{name}': not a folder, and not one of: {valid}")
