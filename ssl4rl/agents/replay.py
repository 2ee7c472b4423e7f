"""A replay buffer for frame-stacked pixel observations that stores each frame once.

SB3's ``ReplayBuffer`` keeps ``observations`` and ``next_observations`` as full arrays, so an
observation of ``F`` stacked frames, ``(3F, H, W)`` uint8 (newest frame last), is stored ``2F`` times
per transition. ``FrameReplayBuffer`` keeps the same rows as SB3 (``buffer_size // n_envs`` rows of
``n_envs`` transitions: ``actions``, ``rewards``, ``dones``, ``timeouts``), but an observation is a row
of ``F`` frame ids (``obs_ids``, ``next_ids``) into one frame store:

- ``frames`` (``frame_capacity``, 3, H, W) uint8 is a ring. Frame ids increase forever
  (``frame_count`` is the next one); id ``i`` lives at ``frames[i % frame_capacity]``.
- ``add`` compares exactly (``np.array_equal``): an observation equal to the stack its env's previous
  ``next_obs`` had (``last_ids``) reuses those ids; a ``next_obs`` whose older frames are its obs's
  newer ones reuses them and stores its newest frame only; anything else is stored whole. A frame equal
  to the one before it in the same stack (a reset stack of copies) reuses its id. So an env that steps
  normally costs one frame per transition plus one per episode, and an unexpected env is still stored
  correctly, only less compactly.
- Liveness rule: frame id ``i`` is live while ``i >= frame_count - frame_capacity`` (not yet
  overwritten). A transition is sampled only while all its ids are live, and ``add`` reuses only ids
  that stay live through it, so each env's newest transition is always live. The capacity, ``5/4``
  frames per transition plus ``2F^2`` per env, keeps every transition in the buffer live when episodes
  last at least 4 steps and reset to a stack of copies; otherwise (or when an env's image stays
  unchanged for longer than the buffer holds) the oldest transitions stop being sampled before
  their rows are reused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

_REJECTION_ROUNDS = 8  # sample_frames: rounds of redrawing before it lists every candidate
_ROW_FIELDS = ("actions", "rewards", "dones", "timeouts", "obs_ids", "next_ids")


class FrameReplayBuffer(ReplayBuffer):
    """Drop-in ``ReplayBuffer`` (``SAC(..., replay_buffer_class=FrameReplayBuffer)``) for uint8
    ``(3F, H, W)`` observations, storing each frame once (see the module docstring)."""

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError("FrameReplayBuffer: optimize_memory_usage=True is not supported (frames are already stored once)")
        shape = getattr(observation_space, "shape", None)
        if (not isinstance(observation_space, spaces.Box) or observation_space.dtype != np.uint8 or len(shape) != 3
                or shape[0] == 0 or shape[0] % 3):
            raise ValueError(f"FrameReplayBuffer needs uint8 pixel observations (3*frames, H, W), got {observation_space}")
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)  # no obs arrays
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.frame_stack = shape[0] // 3
        self.frame_shape = (3, *shape[1:])
        rows = (self.buffer_size, n_envs)
        self.actions = np.zeros((*rows, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype))
        self.rewards = np.zeros(rows, dtype=np.float32)
        self.dones = np.zeros(rows, dtype=np.float32)
        self.timeouts = np.zeros(rows, dtype=np.float32)
        self.obs_ids = np.zeros((*rows, self.frame_stack), dtype=np.int64)
        self.next_ids = np.zeros((*rows, self.frame_stack), dtype=np.int64)
        self.last_ids = np.full((n_envs, self.frame_stack), -1, dtype=np.int64)  # each env's last next_obs; -1: none
        self.frame_capacity = self.buffer_size * n_envs * 5 // 4 + 2 * self.frame_stack**2 * n_envs
        self.frames = np.zeros((self.frame_capacity, *self.frame_shape), dtype=np.uint8)
        self.frame_count = 0

    # --- adding --------------------------------------------------------------------------------

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Store one step of every env (SB3's ``add``): ``obs``, ``next_obs`` (n_envs, 3F, H, W) uint8."""
        obs, next_obs = self._as_frames(obs), self._as_frames(next_obs)
        # ids reused from the last add must stay live through this add's allocations (at most 2F per env)
        safe = self.frame_count - self.frame_capacity + 2 * self.frame_stack * self.n_envs
        for e in range(self.n_envs):
            o, n, prev = obs[e], next_obs[e], self.last_ids[e]
            if prev.min() >= max(0, safe) and np.array_equal(self._frames_at(prev), o):
                oid = prev.copy()
            else:
                oid = self._put(o)
            if np.array_equal(n[:-1], o[1:]):
                nid = np.concatenate([oid[1:], self._put(n[-1:], int(oid[-1]), o[-1])])
            else:
                nid = self._put(n)
            self.obs_ids[self.pos, e], self.next_ids[self.pos, e], self.last_ids[e] = oid, nid, nid
        self.actions[self.pos] = np.array(action).reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = np.array(reward)
        self.dones[self.pos] = np.array(done)
        if self.handle_timeout_termination:
            self.timeouts[self.pos] = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def _as_frames(self, obs: np.ndarray) -> np.ndarray:
        """(n_envs, 3F, H, W) uint8 as (n_envs, F, 3, H, W)."""
        obs = np.asarray(obs)
        if obs.dtype != np.uint8:
            raise ValueError(f"FrameReplayBuffer stores uint8 observations, got {obs.dtype}")
        return obs.reshape(self.n_envs, self.frame_stack, *self.frame_shape)

    def _put(self, frames: np.ndarray, prev_id: int = -1, prev: np.ndarray | None = None) -> np.ndarray:
        """Store ``frames`` (k, 3, H, W) in order, each one equal to the frame before it (``prev`` for the
        first, whose id is ``prev_id``) taking that frame's id; returns the k ids."""
        ids = np.empty(len(frames), dtype=np.int64)
        for i, frame in enumerate(frames):
            if prev is None or not np.array_equal(frame, prev):
                prev_id = self.frame_count
                self.frames[prev_id % self.frame_capacity] = frame
                self.frame_count += 1
            ids[i], prev = prev_id, frame
        return ids

    # --- sampling ------------------------------------------------------------------------------

    def _live(self, ids: np.ndarray) -> np.ndarray:
        """Whether each id's frame is still in the store (not overwritten)."""
        return ids >= self.frame_count - self.frame_capacity

    def _frames_at(self, ids: np.ndarray) -> np.ndarray:
        """The frames of ``ids`` (..., F) as (..., F, 3, H, W) (a copy)."""
        return self.frames[ids % self.frame_capacity]

    def _stacks(self, ids: np.ndarray) -> np.ndarray:
        """Stacked observations (B, 3F, H, W) of frame-id rows (B, F)."""
        return self._frames_at(ids).reshape(len(ids), 3 * self.frame_stack, *self.frame_shape[1:])

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """SB3's sampling: rows ``np.random.randint(0, size, batch_size)`` then envs ``randint(0, n_envs,
        batch_size)``; transitions with an overwritten frame are drawn again (the same way), so while every
        transition is live the draws, and the batch, are SB3's. ``env`` (VecNormalize) normalises
        observations and rewards as SB3 does."""
        upper = self.buffer_size if self.full else self.pos
        rows = np.random.randint(0, upper, size=batch_size)
        envs = np.random.randint(0, high=self.n_envs, size=batch_size)
        redo = np.flatnonzero(~self._sampleable(rows, envs))
        while len(redo):
            rows[redo] = np.random.randint(0, upper, size=len(redo))
            envs[redo] = np.random.randint(0, high=self.n_envs, size=len(redo))
            redo = redo[~self._sampleable(rows[redo], envs[redo])]
        data = (
            self._normalize_obs(self._stacks(self.obs_ids[rows, envs]), env),
            self.actions[rows, envs],
            self._normalize_obs(self._stacks(self.next_ids[rows, envs]), env),
            (self.dones[rows, envs] * (1 - self.timeouts[rows, envs])).reshape(-1, 1),  # time-limit ends bootstrap
            self._normalize_reward(self.rewards[rows, envs].reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*(self.to_torch(a, copy=False) for a in data))  # fresh arrays: no second copy

    def _sampleable(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Whether each transition (row, env) has all its frames live."""
        return self._live(self.obs_ids[rows, envs]).all(-1) & self._live(self.next_ids[rows, envs]).all(-1)

    def sample_frames(self, batch_size: int, k: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Newest frames (B, 3, H, W) uint8 of the observations of random transitions t, uniform over those
        that qualify; with ``k > 0`` also the newest frame of transition t+k's observation, and t qualifies
        only when t+k is in the buffer, in the same env and episode (no ``done`` in t..t+k-1). Draws with
        ``np.random`` (rejection, then, for draws still rejected after a few rounds, from the list of all
        that qualify); ValueError when none does."""
        if k < 0:
            raise ValueError(f"sample_frames: k={k} must be >= 0")
        total = max(self.size() - k, 0) * self.n_envs  # candidates: (chronological row, env), flattened
        none = f"sample_frames: no transition in the buffer has one {k} steps later in its episode"
        if not total:
            raise ValueError(none)
        picks = np.random.randint(0, total, size=batch_size)
        redo = np.flatnonzero(~self._qualify(picks, k))
        for _ in range(_REJECTION_ROUNDS):
            if not len(redo):
                break
            picks[redo] = np.random.randint(0, total, size=len(redo))
            redo = redo[~self._qualify(picks[redo], k)]
        if len(redo):
            every = np.flatnonzero(self._qualify(np.arange(total), k))
            if not len(every):
                raise ValueError(none)
            picks[redo] = every[np.random.randint(0, len(every), size=len(redo))]
        rows, envs = self._candidate(picks)
        anchor = self.to_torch(self._frames_at(self.obs_ids[rows, envs, -1]), copy=False)
        if not k:
            return anchor, None
        return anchor, self.to_torch(self._frames_at(self.obs_ids[(rows + k) % self.buffer_size, envs, -1]), copy=False)

    def _candidate(self, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and envs of flattened candidates (chronological row * n_envs + env)."""
        start = self.pos if self.full else 0
        return (start + picks // self.n_envs) % self.buffer_size, picks % self.n_envs

    def _qualify(self, picks: np.ndarray, k: int) -> np.ndarray:
        """Whether each candidate t (below ``size() - k``) has t+k in its episode, both frames live."""
        rows, envs = self._candidate(picks)
        ok = self._live(self.obs_ids[rows, envs, -1]) & self._live(self.obs_ids[(rows + k) % self.buffer_size, envs, -1])
        for j in range(k):
            ok &= self.dones[(rows + j) % self.buffer_size, envs] == 0
        return ok

    # --- state ---------------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The filled rows and the frames they (or ``last_ids``) use, as plain arrays, mostly views (nothing
        large is copied): ``frames`` then ``frames_wrapped`` are the frames of ids ``frame_count - m ..
        frame_count - 1`` (m their total length), split where the ring wraps."""
        n = self.size()
        ids = np.concatenate([self.obs_ids[:n].reshape(-1), self.next_ids[:n].reshape(-1), self.last_ids.reshape(-1)])
        ids = ids[(ids >= 0) & self._live(ids)]
        lo = int(ids.min()) if len(ids) else self.frame_count
        start, m = lo % self.frame_capacity, self.frame_count - lo
        first = self.frames[start: start + m]
        arrays = {name: getattr(self, name)[:n] for name in _ROW_FIELDS}
        arrays.update(pos=np.array(self.pos, dtype=np.int64), full=np.array(self.full), last_ids=self.last_ids,
                      frame_count=np.array(self.frame_count, dtype=np.int64),
                      frames=first, frames_wrapped=self.frames[: m - len(first)])
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what ``state_arrays`` returned (e.g. through ``np.savez`` / ``np.load(allow_pickle=False)``),
        so later samples are bit-identical; ValueError, with the buffer unchanged, if it does not fit."""
        a = {name: np.asarray(arrays[name]) for name in arrays}
        expected = {*_ROW_FIELDS, "pos", "full", "last_ids", "frame_count", "frames", "frames_wrapped"}
        if set(a) != expected:
            raise ValueError(f"replay state: keys {sorted(a)}, expected {sorted(expected)}")

        def check(name: str, shape: tuple[int, ...], dtype: Any) -> None:
            if a[name].shape != shape or a[name].dtype != np.dtype(dtype):
                raise ValueError(f"replay state: {name} is {a[name].shape} {a[name].dtype}, expected {shape} {np.dtype(dtype)}")

        check("pos", (), np.int64)
        check("full", (), np.bool_)
        check("frame_count", (), np.int64)
        pos, full, count = int(a["pos"]), bool(a["full"]), int(a["frame_count"])
        if not 0 <= pos < self.buffer_size or count < 0:
            raise ValueError(f"replay state: pos={pos}, frame_count={count} do not fit a buffer of {self.buffer_size} rows")
        n = self.buffer_size if full else pos
        for name in _ROW_FIELDS:
            check(name, (n, *getattr(self, name).shape[1:]), getattr(self, name).dtype)
        check("last_ids", self.last_ids.shape, np.int64)
        m = len(a["frames"]) + len(a["frames_wrapped"])
        for name in ("frames", "frames_wrapped"):
            check(name, (len(a[name]), *self.frame_shape), np.uint8)
        lo = count - m
        if m > min(count, self.frame_capacity):
            raise ValueError(f"replay state: {m} frames for frame_count={count} and a store of {self.frame_capacity}")
        ids = np.concatenate([a["obs_ids"].reshape(-1), a["next_ids"].reshape(-1)])
        last = a["last_ids"].reshape(-1)
        if (ids < 0).any() or (ids >= count).any() or (last < -1).any() or (last >= count).any():
            raise ValueError("replay state: frame ids out of range")
        live = np.concatenate([ids, last])
        live = live[(live >= 0) & (live >= count - self.frame_capacity)]
        if (live < lo).any():
            raise ValueError("replay state: frames of live transitions are missing")
        for name in _ROW_FIELDS:
            getattr(self, name)[:n] = a[name]
        self.last_ids[:] = a["last_ids"]
        for part, first_id in ((a["frames"], lo), (a["frames_wrapped"], lo + len(a["frames"]))):
            self.frames[(first_id + np.arange(len(part))) % self.frame_capacity] = part
        self.pos, self.full, self.frame_count = pos, full, count

    # --- memory --------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes allocated by this buffer's arrays."""
        return sum(getattr(self, name).nbytes for name in (*_ROW_FIELDS, "last_ids", "frames"))

    @staticmethod
    def sb3_nbytes(buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space, n_envs: int = 1) -> int:
        """Bytes SB3's ``ReplayBuffer`` (``optimize_memory_usage=False``) allocates for these settings."""
        slots = max(buffer_size // n_envs, 1) * n_envs
        obs = int(np.prod(observation_space.shape)) * np.dtype(observation_space.dtype).itemsize
        act = get_action_dim(action_space) * np.dtype(ReplayBuffer._maybe_cast_dtype(action_space.dtype)).itemsize
        return slots * (2 * obs + act + 3 * np.dtype(np.float32).itemsize)
