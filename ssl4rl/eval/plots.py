"""Evaluation figures: a grouped bar chart of the main metrics, and 2-D PCA projections of features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ssl4rl.viz import _save_fig, plt


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """(N, D) features -> (N, 2) coordinates on the first two principal components."""
    x = x.float()
    if x.shape[1] < 2 or len(x) < 2:
        return torch.nn.functional.pad(x[:, :2] - x[:, :2].mean(0), (0, max(0, 2 - x.shape[1])))
    q = min(4, *x.shape)
    u, s, _ = torch.pca_lowrank(x, q=q, center=True, niter=4)
    return u[:, :2] * s[:2]


def bar_chart(path: str | Path, values: Mapping[str, Mapping[str, float | None]], title: str = "") -> None:
    """Grouped bars: one group per metric, one bar per representation (``values[name][metric]``).

    Missing or None values leave a gap.
    """
    names = list(values)
    metrics = list(dict.fromkeys(m for v in values.values() for m in v))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(metrics) + 2), 3.6))
    for i, name in enumerate(names):
        ys = [values[name].get(m) for m in metrics]
        xs = np.arange(len(metrics)) + (i - (len(names) - 1) / 2) * width
        ax.bar(xs, [np.nan if y is None else y for y in ys], width, label=name)
    ax.set_xticks(np.arange(len(metrics)))
    ax.set_xticklabels(metrics, fontsize=8, rotation=15)
    lowest = min([0.0, *(y for v in values.values() for y in v.values() if y is not None)])
    ax.set_ylim(max(-1.0, lowest), 1.0)  # R² can be very negative: show down to -1
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title, fontsize=9)
    _save_fig(fig, Path(path))


def projection_plot(
    path: str | Path,
    panels: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    class_names: Sequence[str],
    title: str = "",
) -> None:
    """One scatter panel per representation: PCA of its features (N, D), coloured by label (N,)."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for ax, (name, (feats, labels)) in zip(axes[0], panels.items(), strict=True):
        xy = pca_2d(feats).numpy()
        labels = labels.numpy()
        for c, cname in enumerate(class_names):
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.6, color=cmap(c % cmap.N), label=cname)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, markerscale=3, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        fig.suptitle(title, fontsize=9)
    _save_fig(fig, Path(path))
