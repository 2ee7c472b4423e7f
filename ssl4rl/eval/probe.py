"""State-regression probes: linear ridge and RBF kernel ridge from frozen features to physical state.

Fit on train episodes, report R² on held-out episodes (mean and per state dimension), each
with a bootstrap interval over held-out episodes. Ridge strengths (and the kernel bandwidth)
are picked on a validation split of the train episodes, then the probe is refit on all of them.

Pose and velocity are probed separately. Velocity dimensions are the state dimensions
whose name contains ``velocity`` (dm_control observation keys, e.g. cartpole's
``velocity[0]``, walker's ``velocity[3]``); one frame cannot show a velocity, so they
are regressed from the concatenated features of frames t-2, t-1, t of one episode.
Pose dimensions (all others) are regressed from the single frame t. Both are scored
on the same held-out frames (every frame with two predecessors in its episode).

Why a nonlinear probe: a velocity is a nonlinear function of three poses whenever the pose is
not a plain coordinate (cartpole's pole angle is seen as cos/sin, so its angular velocity is
~ sin(t) cos(t-1) - cos(t) sin(t-1)), so a linear probe underrates velocity information even in a
perfect pose encoder. :func:`kernel_probe` is RBF kernel ridge rather than a small MLP: a
closed-form fit (deterministic, no learning rate, epochs or initialisation to tune), every ridge
strength solved from one eigendecomposition, and cheap on a CPU with Nyström landmarks; its width
and strength are picked per state dim. With 1000 landmarks it scores a little below exact kernel ridge
(cartpole velocity of random-init ViT features: 0.34 vs 0.38).
:func:`pose_ceiling` is the velocity R² of an ideal pose encoder: both probes fed the true pose
of frames t-2..t. :func:`bootstrap_r2` resamples held-out episodes, reusing the predictions.

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
KERNEL_ALPHAS = tuple(10.0**k for k in range(-7, 0))  # ridge per fitted frame: the penalty is alpha x frames
BANDWIDTHS = (0.25, 0.5, 1.0, 2.0)  # RBF widths, in units of the median distance between landmarks
LANDMARKS = 1000  # Nyström landmarks (train frames); exact kernel ridge on fewer frames
RESAMPLES = 1000  # bootstrap resamples of the held-out episodes
LEVEL = 0.95  # bootstrap interval coverage
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


def _validation_mask(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Rows of every fifth group (episode) for validation; every fifth row when that leaves no split."""
    if groups is None:
        groups = np.arange(n) // max(1, n // 5)
    uniq = np.unique(groups)
    is_val = np.isin(groups, uniq[::5]) if len(uniq) >= 2 else np.zeros(n, bool)
    if is_val.all() or not is_val.any():
        is_val = np.arange(n) % 5 == 0
    return is_val


def _scores(y: np.ndarray, y_hat: np.ndarray) -> dict[str, Any]:
    """``{'r2': mean over dims, 'r2_per_dim': [...]}`` with None for undefined dims (JSON has no NaN)."""
    per_dim = r2_per_dim(y, y_hat)
    return {"r2": float(np.nanmean(per_dim)), "r2_per_dim": [None if np.isnan(v) else float(v) for v in per_dim]}


def _linear_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, groups: np.ndarray | None, alphas: Sequence[float]
) -> tuple[np.ndarray, dict[str, Any]]:
    is_val = _validation_mask(groups, len(x_train))
    inner = Ridge(x_train[~is_val], y_train[~is_val])
    scores = [np.nanmean(r2_per_dim(y_train[is_val], inner.fit(a).predict(x_train[is_val]))) for a in alphas]
    alpha = float(alphas[int(np.nanargmax(scores))])
    return Ridge(x_train, y_train).fit(alpha).predict(x_test), {"alpha": alpha}


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
    pred, info = _linear_fit_predict(x_train, y_train, x_test, groups, alphas)
    return {**_scores(y_test, pred), **info}


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp_min_(0)


def _ridge_predictions(phi: torch.Tensor, y: torch.Tensor, phi_eval: torch.Tensor, alphas: Sequence[float]) -> list[torch.Tensor]:
    """Ridge (unpenalised intercept) on features ``phi``, penalty alpha x rows, for each alpha: predictions at ``phi_eval``."""
    mu, y_mu = phi.mean(0), y.mean(0)
    centred = phi - mu
    eig, vecs = torch.linalg.eigh(centred.T @ centred)
    proj, rhs = (phi_eval - mu) @ vecs, vecs.T @ (centred.T @ (y - y_mu))
    return [proj @ (rhs / (eig.clamp_min(0) + a * len(phi))[:, None]) + y_mu for a in alphas]


def _kernel_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    groups: np.ndarray | None,
    alphas: Sequence[float],
    bandwidths: Sequence[float],
    landmarks: int,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    x_tr, x_te, y = _float64(x_train), _float64(x_test), _float64(y_train)
    mean, std = x_tr.mean(0), x_tr.std(0, unbiased=False) + 1e-8
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    is_val = torch.from_numpy(_validation_mask(groups, len(x_tr)))
    inner = torch.nonzero(~is_val).squeeze(1)
    pick = torch.randperm(len(inner), generator=torch.Generator().manual_seed(seed))[:landmarks]
    marks = x_tr[inner[pick]]
    d_ll, d_tr, d_te = _sq_dist(marks, marks), _sq_dist(x_tr, marks), _sq_dist(x_te, marks)
    off_diag = d_ll[~torch.eye(len(marks), dtype=torch.bool)]
    median = float(off_diag.median()) if len(off_diag) else 0.0
    median = median if median > 1e-12 else 1.0

    def features(width: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """RBF width ``width``: squared distances to the landmarks -> Nyström features K(x, landmarks) K_ll^(-1/2)."""
        gamma = 1.0 / (2.0 * width**2 * median)
        eig, vecs = torch.linalg.eigh(torch.exp(-gamma * d_ll))
        keep = eig > 1e-10 * eig.max()
        to_feat = vecs[:, keep] / eig[keep].sqrt()
        return lambda d: torch.exp(-gamma * d) @ to_feat

    y_val = y[is_val].numpy()
    val_r2 = np.empty((len(bandwidths), len(alphas), y.shape[1]))
    for i, width in enumerate(bandwidths):
        phi = features(width)(d_tr)
        for j, pred in enumerate(_ridge_predictions(phi[~is_val], y[~is_val], phi[is_val], alphas)):
            val_r2[i, j] = np.nan_to_num(r2_per_dim(y_val, pred.numpy()), nan=-np.inf)
    width_of, alpha_of = np.unravel_index(val_r2.reshape(-1, y.shape[1]).argmax(0), val_r2.shape[:2])  # per dim
    out = np.empty((len(x_te), y.shape[1]))
    for i in np.unique(width_of):
        feature_map = features(bandwidths[i])
        chosen = np.unique(alpha_of[width_of == i])
        preds = _ridge_predictions(feature_map(d_tr), y, feature_map(d_te), [alphas[j] for j in chosen])
        for j, pred in zip(chosen, preds, strict=True):
            cols = (width_of == i) & (alpha_of == j)
            out[:, cols] = pred[:, cols].numpy()
    return out, {"alpha": [float(alphas[j]) for j in alpha_of], "bandwidth": [float(bandwidths[i]) for i in width_of],
                 "landmarks": len(marks)}


def kernel_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    groups: np.ndarray | None = None,
    alphas: Sequence[float] = KERNEL_ALPHAS,
    bandwidths: Sequence[float] = BANDWIDTHS,
    landmarks: int = LANDMARKS,
    seed: int = 0,
) -> dict[str, Any]:
    """RBF kernel ridge on standardised features; width and alpha picked per output dim on 20% of train
    ``groups``, then refit on all train rows.

    Width = ``bandwidths`` x the median distance between landmarks (median heuristic); the penalty is
    alpha x fitted frames. Nyström approximation on ``landmarks`` frames drawn (with ``seed``) from the
    fitting part of the train split; when it has no more frames, all are landmarks and the selection fit
    is exact kernel ridge. Cost ~ frames x landmarks² per width: seconds for 10k frames. Returns
    ``{'r2', 'r2_per_dim', 'alpha': per dim, 'bandwidth': per dim, 'landmarks'}``.
    """
    y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    pred, info = _kernel_fit_predict(x_train, y_train, x_test, groups, alphas, bandwidths, landmarks, seed)
    return {**_scores(y_test, pred), **info}


def bootstrap_r2(
    y: np.ndarray,
    y_hat: np.ndarray,
    episodes: np.ndarray,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> list[float] | None:
    """Percentile interval ``[lo, hi]`` of the mean-over-dims R² when whole episodes are resampled.

    ``episodes`` (N,) names each row's episode; each of ``resamples`` resamples (seeded) draws as
    many episodes with replacement, and R² is recomputed from the fixed predictions ``y_hat``.
    None with fewer than two episodes (no spread to resample).
    """
    _, ep = np.unique(np.asarray(episodes), return_inverse=True)
    n_ep = int(ep.max()) + 1 if len(ep) else 0
    if n_ep < 2:
        return None
    y, y_hat = _float64(y).reshape(len(ep), -1), _float64(y_hat).reshape(len(ep), -1)
    offset = y.mean(0)  # centred: the sums of squares below lose no precision
    y, y_hat = y - offset, y_hat - offset
    index = torch.from_numpy(ep).long()

    def per_episode(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_ep, v.shape[1], dtype=v.dtype).index_add_(0, index, v)

    frames = per_episode(torch.ones(len(ep), 1, dtype=torch.float64))
    s1, s2, res = per_episode(y), per_episode(y * y), per_episode((y - y_hat) ** 2)
    draws = torch.randint(n_ep, (resamples, n_ep), generator=torch.Generator().manual_seed(seed))
    counts = torch.zeros(resamples, n_ep, dtype=torch.float64).scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    ss_tot = counts @ s2 - (counts @ s1) ** 2 / (counts @ frames)
    r2 = torch.where(ss_tot > 1e-12, 1.0 - (counts @ res) / ss_tot, torch.nan).nanmean(1)
    r2 = r2[~r2.isnan()]
    if not len(r2):
        return None
    tail = (1.0 - level) / 2
    lo, hi = torch.quantile(r2, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return [lo, hi]


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


class _Windows:
    """The probe's samples: windows of frames t-2..t of train and held-out episodes, with their episodes."""

    def __init__(self, train_lengths: Sequence[int], test_lengths: Sequence[int]) -> None:
        self.train, self.test = frame_windows(train_lengths), frame_windows(test_lengths)
        if not len(self.train) or not len(self.test):
            raise UserError(
                f"the state probe needs episodes of at least {VELOCITY_WINDOW} frames; collect longer episodes"
            )
        self.train_episode = np.repeat(np.arange(len(train_lengths)), train_lengths)[self.train[:, -1]]
        self.test_episode = np.repeat(np.arange(len(test_lengths)), test_lengths)[self.test[:, -1]]

    def probe(
        self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
        dims: list[int], frames: int, seed: int,
    ) -> dict[str, Any]:
        """Linear and kernel probes of state ``dims`` at t from the features of the last ``frames`` frames."""
        win_tr, win_te = self.train[:, -frames:], self.test[:, -frames:]
        x_tr, x_te = x_train[win_tr].reshape(len(win_tr), -1), x_test[win_te].reshape(len(win_te), -1)
        y_tr, y_te = y_train[self.train[:, -1]][:, dims], y_test[self.test[:, -1]][:, dims]

        def scored(pred: np.ndarray) -> dict[str, Any]:
            return {**_scores(y_te, pred), "r2_ci": bootstrap_r2(y_te, pred, self.test_episode, seed=seed)}

        lin_pred, lin = _linear_fit_predict(x_tr, y_tr, x_te, self.train_episode, ALPHAS)
        ker_pred, ker = _kernel_fit_predict(x_tr, y_tr, x_te, self.train_episode, KERNEL_ALPHAS, BANDWIDTHS,
                                            LANDMARKS, seed)
        return {**scored(lin_pred), **lin, "frames": frames, "kernel": {**scored(ker_pred), **ker}}

    def bootstrap(self) -> dict[str, Any]:
        return {"resamples": RESAMPLES, "level": LEVEL, "episodes": len(np.unique(self.test_episode))}


def _pose_velocity(state_names: Sequence[str] | None, dim: int) -> tuple[list[str], list[int], list[int]]:
    names = list(state_names) if state_names else [f"s{i}" for i in range(dim)]
    vel = velocity_dims(names)
    return names, [i for i in range(len(names)) if i not in vel], vel


def state_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    train_lengths: Sequence[int],
    x_test: np.ndarray,
    y_test: np.ndarray,
    test_lengths: Sequence[int],
    state_names: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Linear and kernel R² of precomputed per-frame features: pose from frame t, velocity from frames t-2..t.

    Features and states are frames of consecutive episodes (``*_lengths`` frames each).
    Returns ``{'r2', 'r2_per_dim', 'feature_dim', 'bootstrap', 'pose': {...}, 'velocity': {...} or None}``
    (top-level R² from the linear probe); each part holds the linear probe's ``r2``, ``r2_per_dim``,
    ``r2_ci`` (bootstrap interval over held-out episodes, ``seed``) and ``alpha``, its ``dims`` and
    ``frames`` per sample, and ``kernel``: the same scores of the kernel probe with its settings.
    """
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    names, pose, vel = _pose_velocity(state_names, y_train.shape[1])
    windows = _Windows(train_lengths, test_lengths)
    per_dim = np.full(len(names), np.nan)
    out: dict[str, Any] = {}
    for part, dims, frames in (("pose", pose, 1), ("velocity", vel, VELOCITY_WINDOW)):
        if not dims:
            out[part] = None
            continue
        res = windows.probe(x_train, y_train, x_test, y_test, dims, frames, seed)
        per_dim[dims] = [np.nan if v is None else v for v in res["r2_per_dim"]]
        out[part] = {**res, "dims": [names[i] for i in dims]}
    return {
        "r2": float(np.nanmean(per_dim)),
        "r2_per_dim": [None if np.isnan(v) else float(v) for v in per_dim],  # JSON has no NaN
        "feature_dim": int(x_train.shape[1]),
        "bootstrap": windows.bootstrap(),
        **out,
    }


def pose_ceiling(
    y_train: np.ndarray,
    train_lengths: Sequence[int],
    y_test: np.ndarray,
    test_lengths: Sequence[int],
    state_names: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The velocity R² of a perfect pose encoder: the velocity probes of :func:`state_probe` fed the
    true pose (every non-velocity state dim) of frames t-2..t instead of features.

    Returns the velocity part (linear and ``kernel`` scores with intervals) plus ``inputs`` (the pose
    dims), or None when the state has no velocity or no pose dims.
    """
    y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    names, pose, vel = _pose_velocity(state_names, y_train.shape[1])
    if not vel or not pose:
        return None
    res = _Windows(train_lengths, test_lengths).probe(y_train[:, pose], y_train, y_test[:, pose], y_test, vel,
                                                      VELOCITY_WINDOW, seed)
    return {**res, "dims": [names[i] for i in vel], "inputs": [names[i] for i in pose]}


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
