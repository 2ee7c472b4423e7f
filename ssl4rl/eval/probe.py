"""State-regression probe: ridge regression from frozen features to physical state.

Fit on train episodes, report R² on held-out episodes (mean and per state
dimension). The ridge strength is picked on a validation split of the train
episodes, then the probe is refit on all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ssl4rl.data import Episode
from ssl4rl.data.datasets import resize_frames
from ssl4rl.encoders import Encoder

ALPHAS = tuple(10.0**k for k in range(-3, 6))


def r2_per_dim(y: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    """Coefficient of determination per output column (NaN where the target is constant)."""
    ss_res = ((y - y_hat) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 1e-12, 1.0 - ss_res / ss_tot, np.nan)


class Ridge:
    """Ridge regression on standardised features, solved for many alphas with one SVD."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        self.x_mean, self.x_std = x.mean(0), x.std(0) + 1e-8
        self.y_mean = y.mean(0)
        xs = (x - self.x_mean) / self.x_std
        self.u, self.s, self.vt = np.linalg.svd(xs, full_matrices=False)
        self.uty = self.u.T @ (y - self.y_mean)
        self.coef: np.ndarray | None = None

    def fit(self, alpha: float) -> Ridge:
        """Set coefficients for ridge strength ``alpha``."""
        self.coef = self.vt.T @ ((self.s / (self.s**2 + alpha))[:, None] * self.uty)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.coef is not None, "call fit(alpha) first"
        return ((np.asarray(x, np.float64) - self.x_mean) / self.x_std) @ self.coef + self.y_mean


def ridge_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    groups: np.ndarray | None = None,
    alphas: Sequence[float] = ALPHAS,
) -> dict[str, Any]:
    """Pick alpha on a held-out 20% of train ``groups`` (episodes), refit, score on test.

    Returns ``{'r2': mean over dims, 'r2_per_dim': [...], 'alpha': chosen}``.
    """
    y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    if groups is None:
        groups = np.arange(len(x_train)) // max(1, len(x_train) // 5)
    uniq = np.unique(groups)
    is_val = np.isin(groups, uniq[::5]) if len(uniq) >= 2 else np.zeros(len(groups), bool)
    if is_val.all() or not is_val.any():
        is_val = np.arange(len(x_train)) % 5 == 0
    inner = Ridge(x_train[~is_val], y_train[~is_val])
    scores = [np.nanmean(r2_per_dim(y_train[is_val], inner.fit(a).predict(x_train[is_val]))) for a in alphas]
    alpha = float(alphas[int(np.nanargmax(scores))])
    model = Ridge(x_train, y_train).fit(alpha)
    per_dim = r2_per_dim(y_test, model.predict(x_test))
    per_dim_list = [None if np.isnan(v) else float(v) for v in per_dim]  # JSON has no NaN
    return {"r2": float(np.nanmean(per_dim)), "r2_per_dim": per_dim_list, "alpha": alpha}


def _stack(episodes: Sequence[Episode]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    frames = torch.from_numpy(np.concatenate([e.frames for e in episodes]))
    states = np.concatenate([e.states for e in episodes])
    groups = np.concatenate([np.full(len(e.frames), i) for i, e in enumerate(episodes)])
    return frames, states, groups


def probe_features(
    featurize: Any, train: Sequence[Episode], test: Sequence[Episode]
) -> dict[str, Any]:
    """Probe any ``featurize(uint8 frames (N,3,H,W)) -> (N, D)`` on train/held-out episodes."""
    f_tr, s_tr, g_tr = _stack(train)
    f_te, s_te, _ = _stack(test)
    x_tr = np.asarray(featurize(f_tr), np.float64)
    x_te = np.asarray(featurize(f_te), np.float64)
    out = ridge_probe(x_tr, s_tr, x_te, s_te, groups=g_tr)
    out["feature_dim"] = int(x_tr.shape[1])
    return out


def encoder_featurizer(encoder: Encoder, batch_size: int = 256) -> Any:
    """Frozen encoder as a featurizer (eval mode, no grad)."""
    return lambda frames: encoder.encode(frames, batch_size).numpy()


def pixel_featurizer(size: int = 16) -> Any:
    """Raw pixels downsampled to ``size`` x ``size``, flattened, as features."""
    return lambda frames: resize_frames(frames, size).flatten(1).float().numpy() / 255.0
