"""Episode files: one ``.npz`` per episode, written atomically, read without pickle.

Format (T = agent steps in the episode; frames, states and physics have T+1 rows,
the first row being the observation after reset):

==========  ===================  =========  ===============================================
key         shape                dtype      meaning
==========  ===================  =========  ===============================================
frames      (T+1, 3, H, W)       uint8      rendered RGB frames, channels first
actions     (T, A)               float32    action taken after frame t; a discrete action
                                            (block envs: A = 20) is stored one-hot
rewards     (T,)                 float32    reward summed over the action repeat (block
                                            envs: always 0)
discounts   (T,)                 float32    dm_control discount after step t (block envs: 1)
states      (T+1, S)             float32    flattened dm_control observation; block envs:
                                            (row, col) of each object (S = 10)
physics     (T+1, P)             float64    MuJoCo state (qpos, qvel, act); optional: absent
                                            from the file for envs without one (block envs),
                                            then loaded as shape (T+1, 0)
==========  ===================  =========  ===============================================

A dataset folder holds ``episode_000000.npz``, ... and ``meta.json`` (env name,
image size, camera, action repeat, action space, whether there are rewards, counts).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl4rl.errors import UserError
from ssl4rl.utils import atomic_path, checked_np_load, checked_npz_headers, read_json

KEYS = ("frames", "actions", "rewards", "discounts", "states", "physics")
OPTIONAL_KEYS = ("physics",)  # may be absent from a file (an env without a MuJoCo state)
REQUIRED_KEYS = tuple(k for k in KEYS if k not in OPTIONAL_KEYS)


@dataclass
class Episode:
    """One episode's arrays (see module docstring for shapes)."""

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    states: np.ndarray
    physics: np.ndarray | None = None  # None: no MuJoCo state, stored as shape (T+1, 0)
    source: str = ""  # the file it was read from (for error messages)

    def __post_init__(self) -> None:
        if self.physics is None:
            self.physics = np.zeros((len(self.actions) + 1, 0), np.float64)

    def __len__(self) -> int:
        """Number of agent steps (transitions)."""
        return len(self.actions)

    def validate(self, where: str = "episode") -> None:
        """Raise a one-line UserError if shapes or dtypes are inconsistent."""
        t = len(self.actions)
        problems = []
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[1] != 3:
            problems.append(f"frames must be uint8 (T+1,3,H,W), got {self.frames.dtype} {self.frames.shape}")
        for name in ("frames", "states", "physics"):
            if len(getattr(self, name)) != t + 1:
                problems.append(f"{name} has {len(getattr(self, name))} rows, expected {t + 1}")
        for name in ("rewards", "discounts"):
            if len(getattr(self, name)) != t:
                problems.append(f"{name} has {len(getattr(self, name))} rows, expected {t}")
        if problems:
            raise UserError(f"{where}: inconsistent episode ({'; '.join(problems)})")
        for name in ("actions", "rewards", "discounts", "states", "physics"):
            bad = ~np.isfinite(getattr(self, name))
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise UserError(f"{where}: {name} holds NaN or inf (row {row}); delete the file or re-collect")


def save_episode(path: str | Path, episode: Episode) -> None:
    """Write an episode atomically (temp file, then rename)."""
    episode.validate(str(path))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: getattr(episode, k) for k in KEYS if k not in OPTIONAL_KEYS or getattr(episode, k).size})


def load_episode(path: str | Path) -> Episode:
    """Read an episode file; a truncated or foreign file gives a one-line UserError."""
    path = Path(path)
    _check_sizes(path)
    fix = "delete it or re-collect"
    try:
        with checked_np_load(path, "ssl4rl episode file", fix, expect=dict.fromkeys(REQUIRED_KEYS)) as z:
            arrays = {k: z[k] for k in KEYS if k in z.files}
    except UserError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise UserError(f"{path}: truncated or corrupt episode file ({type(e).__name__}: {e}); {fix}") from None
    ep = Episode(**arrays, source=str(path))
    ep.validate(str(path))
    return ep


MAX_STEPS = 100_000  # agent steps per episode (dm_control episodes have at most 1000)
MAX_ARRAY_BYTES = 4 << 30


def _check_sizes(path: Path) -> None:
    """Refuse, from the array headers alone, a file whose arrays are not plain numbers or are implausibly large."""
    headers = checked_npz_headers(path, "episode file", "delete it or re-collect")
    for name, (shape, dtype) in headers.items():
        size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if (shape and shape[0] > MAX_STEPS + 1) or size > MAX_ARRAY_BYTES:
            raise UserError(f"{path}: array {name} of shape {shape} is larger than any episode ssl4rl writes "
                            f"(at most {MAX_STEPS} steps, {MAX_ARRAY_BYTES >> 30} GiB); delete it or re-collect")


def episode_paths(folder: str | Path) -> list[Path]:
    """Sorted episode files of a dataset folder, or a one-line UserError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"{folder}: dataset folder not found; make one with "
            f"`python envs/collect.py env=dmc_cartpole out={folder}`"
        )
    paths = sorted(folder.glob("episode_*.npz"))
    if not paths:
        raise UserError(
            f"{folder}: no episode_*.npz files in the dataset folder; collect some with "
            f"`python envs/collect.py out={folder}`"
        )
    return paths


def dataset_meta(folder: str | Path) -> dict[str, Any]:
    """The dataset's ``meta.json`` (empty dict if absent); one that is not a JSON object, or whose ``env`` is not
    a string or ``state_names`` not a list of strings, is a one-line UserError naming the file."""
    path = Path(folder) / "meta.json"
    if not path.exists():
        return {}
    meta = read_json(path)
    names = meta.get("state_names") or []
    names_ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
    if not isinstance(meta.get("env") or "", str) or not names_ok:
        raise UserError(f"{path}: 'env' must be a string and 'state_names' a list of strings; delete it or "
                        "re-collect the dataset")
    return meta
