"""Batch sources for pretraining: in memory (frames, small image sets) or streamed (large sets).

Every source yields ``ssl4rl.methods.base.Batch`` objects: uint8 images, their sample indices,
optional labels and, for env frames with ``positive='temporal'``, the frame ``k`` steps later
in the same episode (ATC / VINCE-style temporal positives); with ``k=1`` and episodes that record
actions, also the action taken between the two frames (transitions, for C-SWM).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ssl4rl.data.datasets import resize_frames
from ssl4rl.data.episodes import Episode
from ssl4rl.errors import UserError
from ssl4rl.methods.base import Batch

POSITIVES = ("augment", "temporal")


class MemorySource:
    """uint8 images held in memory; ``sample`` draws a random batch by tensor indexing (the
    fast path on a CPU: no DataLoader collation).

    ``episodes`` (per-episode frame counts) enables ``positive='temporal'``: each anchor frame
    t is drawn among frames with t + k in the same episode, and the batch carries frame t + k.
    ``actions`` (float (N, A), row t = the action taken after frame t; k=1 only) are carried along.
    """

    mixed_actions = ""  # set by from_episodes when k=1 episodes mix action sizes: why no actions are carried

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        episode_lengths: Sequence[int] | None = None,
        positive: str = "augment",
        k: int = 3,
        actions: torch.Tensor | None = None,
    ) -> None:
        if positive not in POSITIVES:
            raise UserError(f"unknown data.positive '{positive}'; valid: {', '.join(POSITIVES)}")
        self.images, self.labels, self.positive, self.k = images, labels, positive, k
        self.actions = actions if positive == "temporal" and k == 1 else None
        self.anchors: torch.Tensor | None = None
        if positive == "temporal":
            if episode_lengths is None:
                raise UserError(
                    "data.positive=temporal needs env frame episodes (pairs of frames k steps apart); "
                    "an image set has no time axis: use data.positive=augment"
                )
            if k < 1:
                raise UserError(f"data.k={k}: temporal positives need k >= 1")
            offsets = np.concatenate([[0], np.cumsum(episode_lengths)])
            anchors = [np.arange(o, o + n - k) for o, n in zip(offsets[:-1], episode_lengths, strict=True) if n > k]
            if not anchors:
                raise UserError(f"data.k={k} is longer than every episode; use a smaller data.k")
            self.anchors = torch.from_numpy(np.concatenate(anchors))

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A random batch (with replacement), drawn with ``generator``."""
        if self.anchors is not None:
            idx = self.anchors[torch.randint(len(self.anchors), (batch_size,), generator=generator)]
            positive = self.images[idx + self.k]
        else:
            idx = torch.randint(len(self.images), (batch_size,), generator=generator)
            positive = None
        labels = self.labels[idx] if self.labels is not None else None
        actions = self.actions[idx] if self.actions is not None else None
        return Batch(self.images[idx], idx, positive, labels, actions)

    def action_space(self) -> tuple[int, bool]:
        """(action size carried by batches, 0 when none; whether every action between two frames is one-hot).
        Episodes of several action sizes raise a one-line UserError naming the sizes and folders."""
        if self.mixed_actions:
            raise UserError(self.mixed_actions)
        if self.actions is None or self.anchors is None:
            return 0, False
        a = self.actions[self.anchors]
        return a.shape[1], bool(((a == 0) | (a == 1)).all() and (a.sum(1) == 1).all())

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        """Every sample once, in order, in batches (no positives)."""
        for start in range(0, len(self.images), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self.images)))
            yield Batch(self.images[idx], idx, None, self.labels[idx] if self.labels is not None else None)

    @classmethod
    def from_episodes(
        cls, episodes: Sequence[Episode], image_size: int, positive: str = "augment", k: int = 3
    ) -> MemorySource:
        """Frames of env episodes, resized once to ``image_size`` (episodes of several sizes may mix)."""
        if not episodes:
            raise UserError("no episodes: a dataset needs at least one (collect some with envs/collect.py)")
        frames = torch.cat([resize_frames(torch.from_numpy(e.frames), image_size) for e in episodes])
        actions = None
        sizes = {e.actions.shape[1:] for e in episodes}
        if positive == "temporal" and k == 1 and len(sizes) == 1 and sizes.pop() not in ((), (0,)):
            # one row per frame: the action after it (the last frame of an episode has none: zeros)
            actions = torch.from_numpy(np.concatenate(
                [np.concatenate([e.actions, np.zeros((1, e.actions.shape[1]))]) for e in episodes]).astype(np.float32))
        source = cls(frames, None, [len(e.frames) for e in episodes], positive, k, actions)
        if positive == "temporal" and k == 1 and len({e.actions.shape[1:] for e in episodes}) > 1:
            source.mixed_actions = _mixed_actions(episodes)
        return source


def _mixed_actions(episodes: Sequence[Episode]) -> str:
    """One line: the action sizes of ``episodes`` and the folders holding each, and the fix."""
    folders: dict[int, set[str]] = {}
    for e in episodes:
        size = e.actions.shape[1] if e.actions.ndim == 2 else 0
        folders.setdefault(size, set()).add(str(Path(e.source).parent) if e.source else "(in memory)")
    found = "; ".join(f"{size} in {', '.join(sorted(dirs))}" for size, dirs in sorted(folders.items()))
    return (
        f"the episodes mix action sizes ({found}), so they form no transitions (frame, action, next frame); "
        "a transition method needs one env's episodes: give one task's folder as data.path, without "
        "data.extra_paths of other tasks"
    )


class StreamSource:
    """A dataset too large for memory, read by a DataLoader with workers. Items are
    (uint8 (3,S,S), label, index). Batches are drawn with replacement from ``generator``."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, generator: torch.Generator, workers: int = 2) -> None:
        self.dataset = dataset
        sampler = torch.utils.data.RandomSampler(
            dataset, replacement=True, num_samples=1 << 62, generator=generator  # type: ignore[arg-type]
        )
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, persistent_workers=workers > 0
        )
        self._it: Iterator | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """The next batch from the loader (its sampler holds the generator)."""
        if self._it is None:
            self._it = iter(self.loader)
        images, labels, index = next(self._it)
        return Batch(images, index.long(), None, labels.long())

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        """Every sample once, in order, in batches."""
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=False)
        for images, labels, index in loader:
            yield Batch(images, index.long(), None, labels.long())
