"""State-regression probe: ridge regression from frozen features to physical state.

Fit on train episodes, report R² on held-out episodes (mean and per state
dimension). The ridge strength is picked on a validation split of the train
episodes, then the probe is refit on all of them.

Pose and velocity are probed separately. Velocity dimensions are the state dimensions
whose name contains ``velocity`` (dm_control observation keys, e.g. cartpole's
``velocity[0]``, walker's ``velocity[3]``); one frame cannot show a velocity, so they
are regressed from the concatenated features of frames t-2, t-1, t of one episode.
Pose dimensions (all others) are regressed from the single frame t. Both are scored
on the same held-out frames (every frame with two predecessors in its episode).

Labels for free: :func:`quantile_bin_labels` turns one state variable into
``n_bins`` classes by the quantiles of its train values (used by the harness for kNN
and linear probes on env frames).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ssl4rl.data import Episode
from ssl4rl.data.datasets import FrameDataset, resize_frames
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError

ALPHAS = tuple(10.0**k for k in range(-3, 6))
VELOCITY_WINDOW = 3  # frames t-2, t-1, t


def r2_per_dim(y: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    """Coefficient of determination per output column (NaN where the target is constant)."""
    ss_res = ((y - y_hat) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 1e-12, 1.0 - ss_res / ss_tot, np.nan)


class Ridge:
    """Ridge regression on standardised features, solved for many alphas with one SVD.

    Takes and returns numpy arrays; the linear algebra runs in torch (float64), which keeps to
    torch's thread count (numpy's OpenBLAS spins one thread per core and stalls on a busy CPU).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = _float64(x), _float64(y)
        self.x_mean, self.x_std = x.mean(0), x.std(0, unbiased=False) + 1e-8
        self.y_mean = y.mean(0)
        u, self.s, self.vt = torch.linalg.svd((x - self.x_mean) / self.x_std, full_matrices=False)
        self.uty = u.T @ (y - self.y_mean)
        self.coef: torch.Tensor | None = None

    def fit(self, alpha: float) -> Ridge:
        """Set coefficients (D, outputs) for ridge strength ``alpha``."""
        self.coef = self.vt.T @ ((self.s / (self.s**2 + alpha))[:, None] * self.uty)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.coef is not None, "call fit(alpha) first"
        return (((_float64(x) - self.x_mean) / self.x_std) @ self.coef + self.y_mean).numpy()


def _float64(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float64))


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


def velocity_dims(state_names: Sequence[str]) -> list[int]:
    """Indices of the state dimensions whose name contains 'velocity'."""
    return [i for i, name in enumerate(state_names) if "velocity" in name]


def frame_windows(lengths: Sequence[int], window: int = VELOCITY_WINDOW) -> np.ndarray:
    """(M, window) flat frame indices t-window+1..t, every window inside one episode.

    ``lengths`` are the frame counts of episodes stored back to back; row m ends at frame t.
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)])[:-1].astype(np.int64)
    ends = [o + np.arange(window - 1, n) for o, n in zip(offsets, lengths, strict=True) if n >= window]
    if not ends:
        return np.zeros((0, window), np.int64)
    last = np.concatenate(ends)
    return last[:, None] - np.arange(window - 1, -1, -1)[None, :]


def state_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    train_lengths: Sequence[int],
    x_test: np.ndarray,
    y_test: np.ndarray,
    test_lengths: Sequence[int],
    state_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Ridge R² of precomputed per-frame features: pose from frame t, velocity from frames t-2..t.

    Features and states are frames of consecutive episodes (``*_lengths`` frames each).
    Returns ``{'r2', 'r2_per_dim', 'feature_dim', 'pose': {...}, 'velocity': {...} or None}``
    where each part holds its mean ``r2``, chosen ``alpha``, ``dims`` and ``frames`` per sample.
    """
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    names = list(state_names) if state_names else [f"s{i}" for i in range(y_train.shape[1])]
    w_tr, w_te = frame_windows(train_lengths), frame_windows(test_lengths)
    if not len(w_tr) or not len(w_te):
        raise UserError(
            f"the state probe needs episodes of at least {VELOCITY_WINDOW} frames; collect longer episodes"
        )
    episode_of_frame = np.repeat(np.arange(len(train_lengths)), train_lengths)
    groups = episode_of_frame[w_tr[:, -1]]
    vel = velocity_dims(names)
    pose = [i for i in range(len(names)) if i not in vel]
    per_dim = np.full(len(names), np.nan)
    out: dict[str, Any] = {}
    for part, dims, frames in (("pose", pose, 1), ("velocity", vel, VELOCITY_WINDOW)):
        if not dims:
            out[part] = None
            continue
        # features of the last `frames` frames of each window, concatenated; target = state at t
        win_tr, win_te = w_tr[:, -frames:], w_te[:, -frames:]
        res = ridge_probe(
            x_train[win_tr].reshape(len(win_tr), -1), y_train[w_tr[:, -1]][:, dims],
            x_test[win_te].reshape(len(win_te), -1), y_test[w_te[:, -1]][:, dims], groups=groups,
        )
        per_dim[dims] = [np.nan if v is None else v for v in res["r2_per_dim"]]
        out[part] = {"r2": res["r2"], "alpha": res["alpha"], "dims": [names[i] for i in dims], "frames": frames}
    return {
        "r2": float(np.nanmean(per_dim)),
        "r2_per_dim": [None if np.isnan(v) else float(v) for v in per_dim],  # JSON has no NaN
        "feature_dim": int(x_train.shape[1]),
        **out,
    }


def probe_features(
    featurize: Callable[[torch.Tensor], Any],
    train: Sequence[Episode],
    test: Sequence[Episode],
    state_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Probe any ``featurize(uint8 frames (N,3,H,W)) -> (N, D)`` on train/held-out episodes."""
    tr, te = FrameDataset(train), FrameDataset(test)
    return state_probe(
        featurize(tr.frames), tr.states.numpy(), tr.store.lengths,
        featurize(te.frames), te.states.numpy(), te.store.lengths, state_names,
    )


def quantile_bin_labels(
    train_values: torch.Tensor, test_values: torch.Tensor, n_bins: int = 4
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Class labels 0..n_bins-1 from the quantiles of ``train_values``; returns (train, test, inner edges)."""
    if n_bins < 2:
        raise UserError(f"n_bins={n_bins}: need at least 2 bins to make classes")
    qs = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)[1:-1]
    edges = torch.quantile(train_values.double(), qs)
    return (
        torch.bucketize(train_values.double(), edges, right=True),
        torch.bucketize(test_values.double(), edges, right=True),
        edges.tolist(),
    )


def encoder_featurizer(encoder: Encoder, batch_size: int = 256) -> Callable[[torch.Tensor], torch.Tensor]:
    """Frozen encoder as a featurizer: uint8 (N,3,H,W) -> CPU float (N, D), eval mode, no grad."""
    return lambda frames: encoder.encode(frames, batch_size)


def pixel_featurizer(size: int = 16) -> Callable[[torch.Tensor], torch.Tensor]:
    """Raw pixels downsampled to ``size`` x ``size``, flattened and scaled to [0, 1], as features."""
    return lambda frames: resize_frames(frames, size).flatten(1).float() / 255.0
