"""Agent checkpoints that resume bit-identically, without pickle.

A checkpoint is the folder ``out/checkpoint``:

- ``state.pt``: policy (with a pixel agent's encoder, CURL's W and the auxiliary method), optimisers, entropy
  coefficient, the algorithm's ``extra_state`` (the auxiliary method's generator), SB3 counters, every RNG (torch, numpy,
  Python, the action space's), each env's state (MuJoCo integration state, episode step counter,
  task RNG, frame stack, Monitor episode tallies), the frozen-feature stack and the caller's log.
  Tensors and plain Python values only, read back with ``torch.load(weights_only=True)``.
- ``replay.npz``: the filled part of the replay buffer, read back with ``allow_pickle=False``.
  Stacked pixel observations keep one frame per step (the older frames of a stack are the previous
  step's); a full stack is kept only where the history is not in the buffer (episode starts, the
  oldest step).

It is written as ``checkpoint.new`` and swapped in with renames, so a kill at any moment leaves the
previous or the new checkpoint; ``recover`` puts things right when the next run starts.
"""

from __future__ import annotations

import random
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from ssl4rl.errors import UserError
from ssl4rl.utils import checked_np_load, checked_npz_headers, load_tensors

CHECKPOINT = "checkpoint"
_MAX_STATE_BYTES = 2 << 30
_MONITOR_FIELDS = ("rewards", "needs_reset", "episode_returns", "episode_lengths", "episode_times", "total_steps")
_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_REPLAY_KEYS = dict.fromkeys(("order", "pos", "full"))  # arrays every replay.npz holds (any dtype)


def recover(out: Path) -> None:
    """Finish or undo a checkpoint swap that a kill interrupted; remove half-written checkpoints."""
    ck, new, old = out / CHECKPOINT, out / f"{CHECKPOINT}.new", out / f"{CHECKPOINT}.old"
    shutil.rmtree(new, ignore_errors=True)
    if old.exists():
        if ck.exists():
            shutil.rmtree(old)
        else:
            old.rename(ck)


def save(out: Path, model: BaseAlgorithm, venv: VecEnv, log: dict[str, Any]) -> None:
    """Write the checkpoint of ``model`` training on ``venv``, with the caller's ``log``, atomically."""
    ck, new, old = out / CHECKPOINT, out / f"{CHECKPOINT}.new", out / f"{CHECKPOINT}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    torch.save(_state(model, venv, log), new / "state.pt")
    with open(new / "replay.npz", "wb") as f:
        np.savez(f, **_pack_buffer(getattr(model, "replay_buffer", None)))
    if ck.exists():
        ck.rename(old)
    new.rename(ck)
    shutil.rmtree(old, ignore_errors=True)


def read(out: Path) -> dict[str, Any]:
    """Read ``out/checkpoint`` and check its files (nothing unpickled, sizes from headers) before a run
    builds anything; pass the result to ``restore``."""
    ck = out / CHECKPOINT
    state = _read_state(ck / "state.pt")
    checked_np_load(ck / "replay.npz", "replay buffer", "choose a new out=", _REPLAY_KEYS).close()
    return state


def restore(state: dict[str, Any], out: Path, model: BaseAlgorithm, venv: VecEnv) -> dict[str, Any]:
    """Put ``model`` and ``venv`` in the state ``read`` returned; return the caller's log."""
    ck = out / CHECKPOINT
    try:
        model.policy.load_state_dict(state["policy"])
        for key, optimizer in _optimizers(model).items():
            optimizer.load_state_dict(state[key])
        if getattr(model, "ent_coef_optimizer", None) is not None:
            with torch.no_grad():
                model.log_ent_coef.copy_(state["log_ent_coef"])
        if hasattr(model, "load_extra_state"):
            model.load_extra_state(state["extra"])
        counters = state["model"]
        model.num_timesteps, model._n_updates, model._episode_num = (int(counters[k]) for k in ("t", "updates", "episodes"))
        model._last_obs = state["last_obs"].numpy()
        model._last_episode_starts = state["last_episode_starts"].numpy()
        model.ep_info_buffer = _deque(model, state["ep_info"])
        model.ep_success_buffer = _deque(model, [])
        _set_envs(venv, state["envs"])
        _set_rngs(model, state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UserError(f"{ck}: checkpoint does not fit this run ({type(e).__name__}); "
                        "resume with the run's own settings or choose a new out=") from None
    if hasattr(model, "replay_buffer"):
        _unpack_buffer(ck / "replay.npz", model.replay_buffer)
    return state["log"]


def _optimizers(model: BaseAlgorithm) -> dict[str, torch.optim.Optimizer]:
    """The optimizers of an SB3 algorithm by checkpoint key: SAC's actor, critic and entropy ones, or PPO's one."""
    if not hasattr(model, "actor"):
        return {"policy_opt": model.policy.optimizer}
    found = {"actor_opt": model.actor.optimizer, "critic_opt": model.critic.optimizer}
    if model.ent_coef_optimizer is not None:
        found["ent_opt"] = model.ent_coef_optimizer
    return found


def _state(model: BaseAlgorithm, venv: VecEnv, log: dict[str, Any]) -> dict[str, Any]:
    ent = getattr(model, "ent_coef_optimizer", None) is not None
    return {
        "policy": model.policy.state_dict(),
        **{key: optimizer.state_dict() for key, optimizer in _optimizers(model).items()},
        "log_ent_coef": model.log_ent_coef.detach().clone() if ent else None,
        "extra": model.extra_state() if hasattr(model, "extra_state") else {},
        "model": {"t": model.num_timesteps, "updates": model._n_updates, "episodes": model._episode_num},
        "last_obs": torch.from_numpy(np.array(model._last_obs)),
        "last_episode_starts": torch.from_numpy(np.array(model._last_episode_starts)),
        "ep_info": [{k: float(v) for k, v in info.items()} for info in model.ep_info_buffer],
        "envs": _get_envs(venv),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": _mt_state(np.random.get_state()),
            "python": _py_state(random.getstate()),
            "action_space": model.action_space.np_random.bit_generator.state,
        },
        "log": log,
    }


def _read_state(path: Path) -> dict[str, Any]:
    import pickle

    if not path.is_file():
        raise UserError(f"{path}: missing; the checkpoint is incomplete, choose a new out=")
    if path.stat().st_size > _MAX_STATE_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes, larger than any ssl4rl agent checkpoint; choose a new out=")
    try:
        with warnings.catch_warnings():  # a foreign pickle makes torch warn before it refuses; the error says it all
            warnings.simplefilter("ignore")
            state = load_tensors(path)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{path}: not a readable ssl4rl agent checkpoint ({type(e).__name__}); choose a new out=") from None
    if not isinstance(state, dict) or "log" not in state:
        raise UserError(f"{path}: not an ssl4rl agent checkpoint; choose a new out=")
    return state


def _deque(model: BaseAlgorithm, items: list[Any]) -> Any:
    from collections import deque

    return deque(items, maxlen=model._stats_window_size)


# --- random number generators ------------------------------------------------------------------


def _mt_state(s: tuple) -> dict[str, Any]:
    """A numpy MT19937 state tuple as tensors and numbers."""
    return {"keys": torch.from_numpy(np.asarray(s[1], dtype=np.int64)), "pos": int(s[2]), "gauss": (int(s[3]), float(s[4]))}


def _mt_tuple(d: dict[str, Any]) -> tuple:
    return ("MT19937", d["keys"].numpy().astype(np.uint32), d["pos"], d["gauss"][0], d["gauss"][1])


def _py_state(s: tuple) -> list[Any]:
    return [s[0], list(s[1]), s[2]]


def _set_rngs(model: BaseAlgorithm, rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(_mt_tuple(rng["numpy"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    model.action_space.np_random.bit_generator.state = rng["action_space"]


# --- environments ------------------------------------------------------------------------------


def _get_envs(venv: VecEnv) -> dict[str, Any]:
    inner = _unwrap(venv)
    monitors = {f: inner.get_attr(f) for f in _MONITOR_FIELDS}
    out: dict[str, Any] = {
        "dmc": inner.env_method("get_state"),
        "monitor": [{f: monitors[f][i] for f in _MONITOR_FIELDS} for i in range(inner.num_envs)],
    }
    if hasattr(venv, "get_stack"):  # FrozenFeatures
        out["features"] = venv.get_stack()
    return out


def _set_envs(venv: VecEnv, state: dict[str, Any]) -> None:
    inner = _unwrap(venv)
    if len(state["dmc"]) != inner.num_envs:
        raise ValueError(f"saved with {len(state['dmc'])} envs")
    for i, (dmc, monitor) in enumerate(zip(state["dmc"], state["monitor"], strict=True)):
        inner.env_method("set_state", dmc, indices=[i])
        for field, value in monitor.items():
            inner.set_attr(field, value, indices=[i])
    if hasattr(venv, "set_stack"):
        venv.set_stack(state["features"])


def _unwrap(venv: VecEnv) -> VecEnv:
    while hasattr(venv, "venv"):
        venv = venv.venv
    return venv


# --- replay buffer -----------------------------------------------------------------------------


def _chronological(buffer: Any) -> np.ndarray:
    """Physical indices of the filled rows, oldest first."""
    if buffer.full:
        return np.concatenate([np.arange(buffer.pos, buffer.buffer_size), np.arange(buffer.pos)])
    return np.arange(buffer.pos)


def _is_frame_stack(a: np.ndarray | None) -> bool:
    return a is not None and a.dtype == np.uint8 and a.ndim == 5 and a.shape[2] > 3 and a.shape[2] % 3 == 0


def _pack_buffer(buffer: Any) -> dict[str, np.ndarray]:
    """The filled rows, in place order (views: nothing is copied), except frame-stacked pixels (``_pack_frames``);
    a ``FrameReplayBuffer``'s own arrays (prefixed ``frames.``); nothing for an on-policy algorithm (PPO)."""
    empty = {"order": np.zeros(0, np.int64), "pos": np.array(0), "full": np.array(False)}
    if buffer is None:
        return empty
    if hasattr(buffer, "state_arrays"):
        return {**empty, **{f"frames.{k}": v for k, v in buffer.state_arrays().items()}}
    order = _chronological(buffer)
    arrays = {"pos": np.array(buffer.pos), "full": np.array(buffer.full), "order": order}
    stacked = _is_frame_stack(buffer.observations) and _is_frame_stack(buffer.next_observations)
    for name in _BUFFER_FIELDS:
        if getattr(buffer, name) is not None and not (stacked and name.endswith("observations")):
            arrays[name] = getattr(buffer, name)[: len(order)]
    if stacked:
        arrays.update(_pack_frames(buffer.observations, buffer.next_observations, order))
    return arrays


def _pack_frames(obs: np.ndarray, nxt: np.ndarray, order: np.ndarray) -> dict[str, np.ndarray]:
    """Frame-stacked pixel observations, each frame once: a row of ``obs`` whose older frames are the
    previous row's newer ones keeps its newest frame only; a ``next_observations`` row equal to the
    following ``obs`` row keeps nothing, one that extends its own ``obs`` row (an episode's last step)
    keeps its newest frame. Rows are compared one at a time, so no large temporary is made."""
    n, envs = len(order), obs.shape[1]
    shifted, is_next, from_obs = (np.zeros((n, envs), dtype=bool) for _ in range(3))
    for t in range(n):
        i = order[t]
        for e in range(envs):
            shifted[t, e] = t > 0 and np.array_equal(obs[i, e, :-3], obs[order[t - 1], e, 3:])
            is_next[t, e] = t + 1 < n and np.array_equal(nxt[i, e], obs[order[t + 1], e])
            from_obs[t, e] = not is_next[t, e] and np.array_equal(nxt[i, e, :-3], obs[i, e, 3:])

    def rows(a: np.ndarray, mask: np.ndarray, channels: slice = slice(None)) -> np.ndarray:
        picked = [a[order[t], e, channels] for t, e in zip(*np.nonzero(mask), strict=True)]
        return np.stack(picked) if picked else np.zeros((0, *a[0, 0, channels].shape), a.dtype)

    newest = np.stack([obs[order[t], :, -3:] for t in range(n)]) if n else obs[:0, :, -3:]
    return {"obs.newest": newest, "obs.heads": rows(obs, ~shifted), "obs.shifted": shifted,
            "next.is_next": is_next, "next.from_obs": from_obs, "next.newest": rows(nxt, from_obs, slice(-3, None)),
            "next.heads": rows(nxt, ~is_next & ~from_obs)}


def _unpack_frames(z: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``_pack_frames``: observations of ``shape`` (rows, n_envs, channels, H, W), and next ones."""
    newest, shifted = z["obs.newest"], z["obs.shifted"]
    if newest.shape != (*shape[:2], 3, *shape[3:]) or shifted.shape != shape[:2]:
        raise ValueError("frame arrays")
    obs = np.empty(shape, dtype=np.uint8)
    obs[~shifted] = z["obs.heads"]
    for t in range(1, len(obs)):
        cols = shifted[t]
        obs[t, cols, :-3] = obs[t - 1, cols, 3:]
        obs[t, cols, -3:] = newest[t, cols]
    is_next, from_obs = z["next.is_next"], z["next.from_obs"]
    nxt = np.empty_like(obs)
    following = np.concatenate([obs[1:], obs[-1:]])
    nxt[is_next] = following[is_next]
    nxt[from_obs] = np.concatenate([obs[from_obs][:, 3:], z["next.newest"]], axis=1)
    nxt[~is_next & ~from_obs] = z["next.heads"]
    return obs, nxt


def _unpack_buffer(path: Path, buffer: Any) -> None:
    if hasattr(buffer, "load_state_arrays"):
        try:
            with checked_np_load(path, "replay buffer", "choose a new out=", _REPLAY_KEYS) as z:
                buffer.load_state_arrays({k[len("frames."):]: z[k] for k in z.files if k.startswith("frames.")})
        except (KeyError, ValueError, TypeError, IndexError, OSError, zipfile.BadZipFile) as e:
            raise UserError(f"{path}: replay buffer does not fit this run ({e}); resume with the run's own settings "
                            "or choose a new out=") from None
        return
    shapes = checked_npz_headers(path, "replay buffer", "choose a new out=")
    n_max = buffer.buffer_size
    for name, (shape, dtype) in shapes.items():
        if shape and shape[0] > n_max * max(1, buffer.n_envs):
            raise UserError(f"{path}: array {name} {shape} {dtype} does not fit a replay buffer of {n_max}; choose a new out=")
    try:
        with checked_np_load(path, "replay buffer", "choose a new out=", _REPLAY_KEYS) as z:
            order = z["order"]
            pos, full = int(z["pos"]), bool(z["full"])
            if len(order) > n_max or (len(order) and order.max() >= n_max) or pos >= n_max:
                raise ValueError("sizes")
            shape = (len(order), *buffer.observations.shape[1:])
            rows = dict(zip(("observations", "next_observations"), _unpack_frames(z, shape),
                            strict=True)) if "obs.newest" in z.files else {}
            for name in _BUFFER_FIELDS:
                target = getattr(buffer, name)
                if target is None:
                    continue
                array = rows[name] if name in rows else z[name]
                if array.shape[1:] != target.shape[1:] or array.dtype != target.dtype or len(array) != len(order):
                    raise ValueError(name)
                if name in rows:  # chronological
                    target[order] = array
                else:
                    target[: len(order)] = array
    except UserError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, OSError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: replay buffer does not fit this run ({e}); resume with the run's own settings "
                        "or choose a new out=") from None
    buffer.pos, buffer.full = pos, full
