"""Small shared mechanics: seeding, devices, atomic file writes, JSON."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl4rl.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_device(device: str) -> None:
    """One-line UserError for a device name that is not auto, cpu, cuda or cuda:N."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"unknown device '{device}'; valid: auto, cpu, cuda, cuda:N")


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu'/'cuda'/'cuda:N' are taken as given."""
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={device} but no CUDA GPU is visible; use device=auto or device=cpu")
    return torch.device(device)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; use the usual mode
        os.replace(tmp_path, path)
    except RuntimeError as e:  # torch.save reports a full disk as a RuntimeError ("unexpected pos")
        if _disk_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def _disk_full(folder: Path) -> bool:
    """Whether the file system holding ``folder`` has (almost) no room left."""
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


MAX_JSON_BYTES = 64 << 20  # larger than any JSON file ssl4rl writes


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON object from a file (every JSON file ssl4rl writes holds one). A missing, oversized
    (``MAX_JSON_BYTES``), malformed, too deeply nested or non-object file is a one-line UserError."""
    path = Path(path)
    fix = "delete or regenerate it"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)  # bounded: a FIFO or /dev/zero reports no size
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as e:
        raise UserError(f"{path}: not readable ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise UserError(f"{path}: more than {human_bytes(MAX_JSON_BYTES)}, larger than any JSON file ssl4rl writes; {fix}")
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); {fix}") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be a file ssl4rl wrote; {fix}") from None
    if not isinstance(obj, dict):
        kind = {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(obj), "number")
        raise UserError(f"{path}: holds a JSON {kind}, not an object; {fix}")
    return obj


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(f)
    return shape, dtype


def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an ``.npz`` file (or of the one array of an ``.npy`` file, key ''), read
    from the headers alone, so a file that claims a huge array is refused before anything is allocated.
    Unreadable files raise ValueError."""
    import zipfile

    shapes = {}
    try:
        with open(path, "rb") as f:
            if f.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
                f.seek(0)
                return {"": _npy_header(f)}
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as f:
                    shapes[info.filename.removesuffix(".npy")] = _npy_header(f)
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None
    return shapes


def checked_npz_headers(path: str | os.PathLike, what: str, fix: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``npz_headers`` of a file that must exist and hold numbers only; anything else is a one-line UserError
    naming the file, ``what`` it should be and the ``fix``. Nothing is unpickled or allocated."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; {fix}")
    try:
        headers = npz_headers(path)
    except ValueError as e:
        raise UserError(f"{path}: not a readable {what} ({_first_line(e)}); {fix}") from None
    for name, (_, dtype) in headers.items():
        if dtype.hasobject:
            raise UserError(f"{path}: array {name} holds Python objects, not numbers; {fix}")
    return headers


def checked_np_load(path: str | os.PathLike, what: str, fix: str, expect: Mapping[str, Any] | None = None) -> Any:
    """``np.load(path, allow_pickle=False)`` of an ``.npy`` or ``.npz`` file after its headers are checked
    (``checked_npz_headers``; with ``expect``, each named array must be there, with that dtype unless None; all
    arrays together must fit in memory), so bad files give one UserError line naming the file and the ``fix``.
    Returns what ``np.load`` does: an array, or an ``NpzFile`` to use as a context manager."""
    import zipfile

    path = Path(path)
    headers = checked_npz_headers(path, what, fix)
    missing = [k for k in expect or {} if k not in headers]
    if missing:
        raise UserError(f"{path}: not a complete {what} (missing {', '.join(missing)}); {fix}")
    for name, dtype in (expect or {}).items():
        if dtype is not None and headers[name][1] != np.dtype(dtype):
            raise UserError(f"{path}: array {name} is {headers[name][1]}, expected {np.dtype(dtype)}; {fix}")
    check_memory(sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values()),
                 f"{path}: loading this {what}", fix)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not a readable {what} ({type(e).__name__}: {_first_line(e)}); {fix}") from None


def _first_line(e: Exception) -> str:
    """An exception's message cut to one short line (numpy's header errors span several)."""
    return (str(e).splitlines() or [""])[0][:200]


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar; refreshes rarely when stderr is not a terminal (logs stay short)."""
    import sys

    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    return tqdm(**kwargs)


def push_frame(frames: Any, frame: np.ndarray, reset: bool) -> np.ndarray:
    """Add ``frame`` (C,H,W) to a frame stack (a ``deque`` with ``maxlen``), filling it on ``reset``; returns the
    stack concatenated along channels."""
    if reset:
        frames.extend([frame] * frames.maxlen)
    else:
        frames.append(frame)
    return np.concatenate(frames, axis=0)


def load_tensors(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU (tensors and plain values only: a pickle payload raises
    ``pickle.UnpicklingError`` and never runs), without torch's multi-line warning about foreign pickle protocols."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pickle protocol.*")
        return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(module: torch.nn.Module, path: str | os.PathLike, what: str) -> None:
    """Load the safetensors file ``path`` into ``module`` (strict); a missing, unreadable or mismatching file is one
    UserError line naming ``what`` the weights should fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: weights file not found") from None
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: unreadable safetensors file ({e})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(line.strip() for line in str(e).split("\n")[0:2])[:300]
        raise UserError(f"{path}: weights do not fit {what} ({first})") from None


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable of /proc/meminfo, or the physical free pages)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def human_bytes(n: float) -> str:
    """``n`` bytes as e.g. '5.0 TiB'."""
    if abs(n) < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} PiB"


def check_memory(nbytes: float, what: str, fix: str, fraction: float = 0.8) -> None:
    """Refuse, with one UserError line naming ``what`` and the ``fix``, an allocation of ``nbytes`` that would not
    fit in ``fraction`` of the memory available now (checked before anything is allocated)."""
    budget = available_memory() * fraction
    if nbytes > budget:
        raise UserError(f"{what} needs {human_bytes(nbytes)}, more than the {human_bytes(budget)} of memory available; "
                        f"{fix}")
