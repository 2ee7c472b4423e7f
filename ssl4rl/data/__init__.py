"""Frame datasets: collection, the episode file format, and dataset classes."""

from ssl4rl.data.collect import collect
from ssl4rl.data.datasets import (
    FrameDataset,
    PairDataset,
    SequenceDataset,
    load_split,
    resize_frames,
    split_episodes,
)
from ssl4rl.data.episodes import Episode, dataset_meta, episode_paths, load_episode, save_episode

__all__ = [
    "Episode",
    "FrameDataset",
    "PairDataset",
    "SequenceDataset",
    "collect",
    "dataset_meta",
    "episode_paths",
    "load_episode",
    "load_split",
    "resize_frames",
    "save_episode",
    "split_episodes",
]
