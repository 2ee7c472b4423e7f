"""Datasets over episode folders: single frames, frame pairs k steps apart, sequences.

All three keep the episodes in memory as uint8 (a 20-episode 84 px dataset is
~50 MB) and serve torch tensors; ``sample`` draws a random batch by tensor
indexing, which is much faster on a CPU than a DataLoader collating items.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ssl4rl.data.episodes import Episode, episode_paths, load_episode
from ssl4rl.errors import UserError


def split_episodes(
    paths: Sequence[Path], holdout: float = 0.2, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split episode files into (train, held-out) by episode, reproducibly.

    At least one episode is held out when there are two or more.
    """
    paths = sorted(paths)
    if len(paths) < 2 or holdout <= 0:
        return list(paths), []
    order = np.random.default_rng(seed).permutation(len(paths))
    n_test = min(len(paths) - 1, max(1, round(holdout * len(paths))))
    test = sorted(paths[i] for i in order[:n_test])
    train = sorted(paths[i] for i in order[n_test:])
    return train, test


def load_split(
    folder: str | Path, holdout: float = 0.2, seed: int = 0
) -> tuple[list[Episode], list[Episode]]:
    """Load a dataset folder and split it by episode into (train, held-out) episodes."""
    train, test = split_episodes(episode_paths(folder), holdout, seed)
    train_eps, test_eps = [load_episode(p) for p in train], [load_episode(p) for p in test]
    check_consistent(train_eps + test_eps)
    return train_eps, test_eps


def resize_frames(frames: torch.Tensor, size: int, batch: int = 1024) -> torch.Tensor:
    """Resize uint8 (N,3,H,W) frames to ``size`` (area/bilinear-antialias), staying uint8."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    out = []
    for chunk in frames.split(batch):
        x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


class _EpisodeStore:
    """Episodes concatenated into flat tensors, with per-episode offsets."""

    def __init__(self, episodes: Sequence[Episode], image_size: int | None = None) -> None:
        if not episodes:
            raise UserError("no episodes: a dataset needs at least one (collect some with envs/collect.py)")
        if image_size is not None and not 16 <= image_size <= 1024:
            raise UserError(f"image_size={image_size}: must be between 16 and 1024")
        check_consistent(episodes)
        frames = torch.from_numpy(np.concatenate([e.frames for e in episodes]))
        self.frames = resize_frames(frames, image_size) if image_size else frames
        self.states = torch.from_numpy(np.concatenate([e.states for e in episodes]))
        self.actions = [torch.from_numpy(e.actions) for e in episodes]
        self.rewards = [torch.from_numpy(e.rewards) for e in episodes]
        lengths = [len(e.frames) for e in episodes]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.lengths = np.asarray(lengths)

    def windows(self, span: int) -> np.ndarray:
        """(episode, start) pairs whose frames start..start+span exist."""
        if span < 1:
            raise UserError(f"window of {span + 1} frames: pairs need k >= 1 and sequences length >= 2")
        return np.asarray(
            [(e, t) for e, n in enumerate(self.lengths) for t in range(n - span)], dtype=np.int64
        ).reshape(-1, 2)


def check_consistent(episodes: Sequence[Episode]) -> None:
    """One-line UserError naming the first episode whose frame size, state or action size differs."""
    first = episodes[0]
    ref = (first.frames.shape[1:], first.states.shape[1:], first.actions.shape[1:])
    for ep in episodes[1:]:
        got = (ep.frames.shape[1:], ep.states.shape[1:], ep.actions.shape[1:])
        if got != ref:
            i = [a != b for a, b in zip(got, ref, strict=True)].index(True)
            what = ("frames", "states", "actions")[i]
            raise UserError(f"{ep.source or 'an episode'}: {what} of shape {got[i]}, but {first.source or 'the first'} has "
                            f"{ref[i]}; a dataset's episodes must come from one env at one image size")


class FrameDataset(Dataset):
    """Single frames: item ``i`` is a uint8 (3,H,W) frame; ``states[i]`` its physical state."""

    def __init__(self, episodes: Sequence[Episode], image_size: int | None = None) -> None:
        self.store = _EpisodeStore(episodes, image_size)
        self.frames = self.store.frames
        self.states = self.store.states

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.frames[i]

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random uint8 batch (B,3,H,W)."""
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        return self.frames[idx]


class _WindowDataset(Dataset):
    """Items are windows of ``span + 1`` consecutive frames inside one episode."""

    def __init__(self, episodes: Sequence[Episode], span: int, image_size: int | None) -> None:
        self.store = _EpisodeStore(episodes, image_size)
        self.index = self.store.windows(span)

    def __len__(self) -> int:
        return len(self.index)

    def _locate(self, i: int) -> tuple[int, int, int]:
        """(episode, step within it, flat frame index) of item ``i``'s first frame."""
        e, t = self.index[i]
        return int(e), int(t), int(self.store.offsets[e] + t)


class PairDataset(_WindowDataset):
    """Frame pairs k agent steps apart, with the k actions in between.

    Item: dict(obs=(3,H,W) uint8, next_obs=(3,H,W) uint8, actions=(k,A), reward=sum of k rewards).
    """

    def __init__(self, episodes: Sequence[Episode], k: int = 1, image_size: int | None = None) -> None:
        super().__init__(episodes, k, image_size)
        self.k = k

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, t, base = self._locate(i)
        s, k = self.store, self.k
        return {
            "obs": s.frames[base],
            "next_obs": s.frames[base + k],
            "actions": s.actions[e][t : t + k],
            "reward": s.rewards[e][t : t + k].sum(),
        }


class SequenceDataset(_WindowDataset):
    """Sequences of ``length`` frames with the ``length-1`` actions and rewards between them.

    Item: dict(frames=(L,3,H,W) uint8, actions=(L-1,A), rewards=(L-1,), states=(L,S)).
    """

    def __init__(self, episodes: Sequence[Episode], length: int = 8, image_size: int | None = None) -> None:
        super().__init__(episodes, length - 1, image_size)
        self.length = length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, t, base = self._locate(i)
        s, n = self.store, self.length
        return {
            "frames": s.frames[base : base + n],
            "actions": s.actions[e][t : t + n - 1],
            "rewards": s.rewards[e][t : t + n - 1],
            "states": s.states[base : base + n],
        }
