"""Run folders: every run writes into its own folder and never clobbers an earlier run."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ssl4rl.errors import UserError, os_error_message
from ssl4rl.utils import MAX_JSON_BYTES, read_json, write_text

log = logging.getLogger("ssl4rl")
LOCK = ".lock"  # holds the pid of the process that owns the folder, flock-ed for the run's lifetime
_BOOKKEEPING = {"config.yaml", "log.txt", "tb", LOCK}  # a folder with only these holds no results yet
_HELD: dict[Path, tuple[int, bool]] = {}  # folders this process has claimed -> (lock file descriptor, resuming)


def claim_run_dir(
    out: str | Path, config_yaml: str = "", resume_file: str | None = None, safe_keys: tuple[str, ...] = (),
    log_file: bool = True,
) -> tuple[Path, bool]:
    """The one way a run takes its folder ``out``: create it for a new run, or reopen it to resume if it holds
    ``resume_file``, and hold an exclusive lock on it until the process ends (``release_run_dir`` ends it sooner).

    Refuses (one-line UserError) a folder another live process holds (naming its pid), and a folder holding
    another run's outputs unless it is resumable, so a run never overwrites earlier results; a folder left with
    only config.yaml/log.txt/tb by a run that failed early is reused. A resumed run must have the settings it
    started with (``config.yaml``); only ``safe_keys`` may differ. Temporary files left by a killed write are
    removed; a read-only, full or forbidden disk is one line naming the fix. With ``log_file`` ssl4rl's log
    goes to ``out/log.txt`` too. Claiming a folder this process already holds returns the first claim's
    answer. Returns (folder, resuming).
    """
    out = Path(out)
    key = out.resolve()
    if key in _HELD:
        return out, _HELD[key][1]
    try:
        claim = _claim(out, key, config_yaml, resume_file, safe_keys)
    except OSError as e:  # any OS fault at out= is the user's to fix: one line naming it
        message = os_error_message(e) or (f"out={out} cannot be created or written ({e.strerror or type(e).__name__}: "
                                          f"{e.filename or out}); choose an out= in a folder you can write to")
        raise UserError(message) from None
    if log_file:
        setup_logging(out / "log.txt")
    return claim


@contextlib.contextmanager
def claimed_run_dir(
    out: str | Path, config_yaml: str = "", resume_file: str | None = None, safe_keys: tuple[str, ...] = (),
    log_file: bool = True,
) -> Iterator[tuple[Path, bool]]:
    """``claim_run_dir`` for the span of a ``with`` block (the Python API): the lock is released at its end,
    unless the folder was already claimed by this process before (the command line's claim)."""
    held_before = Path(out).resolve() in _HELD
    claim = claim_run_dir(out, config_yaml, resume_file, safe_keys, log_file)
    try:
        yield claim
    finally:
        if not held_before:
            release_run_dir(out)


def release_run_dir(out: str | Path) -> None:
    """Give up this process's claim on ``out`` (no-op if it holds none)."""
    held = _HELD.pop(Path(out).resolve(), None)
    if held is not None:
        os.close(held[0])


def _claim(out: Path, key: Path, config_yaml: str, resume_file: str | None,
           safe_keys: tuple[str, ...]) -> tuple[Path, bool]:
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out} is a file; choose a folder that does not exist yet")
    if out.is_dir():
        _check_free(out)  # before anything is written into an existing folder
        _check_claimable(out, config_yaml, resume_file, safe_keys)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(_in_use(out)) from None
    try:
        resuming = _check_claimable(out, config_yaml, resume_file, safe_keys)  # again, now that nobody else can
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        for orphan in _orphans(out):
            orphan.unlink(missing_ok=True)
        if config_yaml and not resuming:
            write_text(out / "config.yaml", config_yaml)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = (fd, resuming)
    return out, resuming


def _in_use(out: Path) -> str:
    try:
        pid = (out / LOCK).read_text().strip() or "?"
    except OSError:
        pid = "?"
    return f"out={out} is in use by another run (pid {pid}); wait for it to end or choose a new out="


def _check_free(out: Path) -> None:
    """Refuse a folder whose lock another live process holds, without creating anything."""
    try:
        fd = os.open(out / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(_in_use(out)) from None
    finally:
        os.close(fd)


def _check_claimable(out: Path, config_yaml: str, resume_file: str | None, safe_keys: tuple[str, ...]) -> bool:
    """Whether ``out`` resumes; refuses a folder holding another run's outputs that is not resumable."""
    if not {p.name for p in out.iterdir()} - _BOOKKEEPING - {p.name for p in _orphans(out)}:
        return False
    if resume_file and (out / resume_file).exists():
        if config_yaml:
            check_same_config(out, config_yaml, safe_keys)
        return True
    raise UserError(f"out={out} already holds an earlier run; choose a new out= (nothing there was changed)")


def _orphans(out: Path) -> list[Path]:
    """Temporary files of ``ssl4rl.utils.atomic_path`` that a kill left behind in ``out``."""
    return [p for p in out.rglob(".*.tmp") if p.is_file()]


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): node}


def check_same_config(out: Path, config_yaml: str, safe_keys: tuple[str, ...] = ()) -> None:
    """Refuse (one line naming the keys) to resume ``out`` with settings other than its ``config.yaml``.

    ``out`` itself and ``safe_keys`` may differ: the code declares those safe because the result stays
    bit-identical whatever their value (e.g. ``progress``)."""
    import yaml

    try:
        if (out / "config.yaml").stat().st_size > MAX_JSON_BYTES:
            raise OSError("larger than any config ssl4rl writes")
        saved = _flat(yaml.safe_load((out / "config.yaml").read_text()) or {})
    except (OSError, ValueError, yaml.YAMLError, RecursionError, AttributeError) as e:
        raise UserError(f"{out}/config.yaml: unreadable ({type(e).__name__}); cannot check the settings to resume, "
                        "choose a new out=") from None
    new = _flat(yaml.safe_load(config_yaml) or {})
    ignore = {"out", *safe_keys}
    diff = sorted(k for k in set(saved) | set(new) if k not in ignore and saved.get(k, "<unset>") != new.get(k, "<unset>"))
    if diff:
        shown = ", ".join(f"{k} ({saved.get(k, '<unset>')} -> {new.get(k, '<unset>')})" for k in diff[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        safe = ", ".join(safe_keys) or "none"
        raise UserError(f"out={out} was started with other settings: {shown}{more}; resume with the settings in its "
                        f"config.yaml (keys that may change: {safe}) or choose a new out=")


def setup_logging(logfile: Path | None = None, level: int = logging.INFO) -> None:
    """Log ssl4rl messages to stderr and (appending) to ``logfile``."""
    log.setLevel(level)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    log.addHandler(console)
    if logfile is not None:
        fh = logging.FileHandler(logfile)
        fh.setFormatter(fmt)
        log.addHandler(fh)


def find_latest(root: str | Path, filename: str, where: Any = None) -> Path | None:
    """Most recently modified ``root/**/filename`` whose parsed JSON passes ``where`` (if given)."""
    root = Path(root)
    if not root.is_dir():
        return None
    best: tuple[float, Path] | None = None
    for p in root.rglob(filename):
        try:
            if where is not None and not where(read_json(p)):
                continue
        except (OSError, ValueError):
            continue
        t = p.stat().st_mtime
        if best is None or t > best[0]:
            best = (t, p)
    return best[1] if best else None
