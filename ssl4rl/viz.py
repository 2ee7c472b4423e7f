"""Figures and videos: image grids, learning curves, episode GIFs (all written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from ssl4rl.utils import atomic_path


def _save_fig(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def save_image_rows(path: str | Path, rows: dict[str, torch.Tensor], title: str = "", max_cols: int = 8) -> None:
    """One row per entry of ``rows`` (float images in [0,1], (N,3,H,W)), one column per sample."""
    path = Path(path)
    n = min(max_cols, min(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(imgs[c].detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _save_fig(fig, path)


def save_learning_curve(
    path: str | Path,
    train: Sequence[tuple[int, float]],
    evals: Sequence[tuple[int, float, float]],
    title: str = "",
    marks: Sequence[int] = (),
) -> None:
    """Training episode returns (env_step, return) and evaluations (env_step, mean, std); ``marks``: env
    steps where the run resumed from a checkpoint (dotted lines)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        x, y = zip(*train, strict=False)
        ax.plot(x, y, ".", alpha=0.35, label="train episodes")
    if evals:
        x, m, s = (np.asarray(v) for v in zip(*evals, strict=False))
        ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label="eval (mean ± std)")
    for i, x in enumerate(marks):
        ax.axvline(x, color="grey", linestyle=":", label="resumed" if i == 0 else None)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    _save_fig(fig, Path(path))


def save_gif(path: str | Path, frames: Sequence[np.ndarray], fps: int = 15) -> None:
    """Frames (H,W,3) uint8 -> animated GIF."""
    import imageio.v3 as iio

    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=1000 / fps, loop=0)
