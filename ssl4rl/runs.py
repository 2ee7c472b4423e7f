"""Run folders: every run writes into its own folder and never clobbers an earlier run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ssl4rl.errors import UserError
from ssl4rl.utils import write_text

log = logging.getLogger("ssl4rl")
_BOOKKEEPING = {"config.yaml", "log.txt", "tb"}  # a folder with only these holds no results yet


def prepare_run_dir(out: str | Path, config_yaml: str = "", resume_file: str | None = None) -> tuple[Path, bool]:
    """Create ``out`` for a new run, or reopen it to resume if it holds ``resume_file``.

    Refuses (one-line UserError) a folder holding another run's outputs unless it
    is resumable, so a run never overwrites earlier results; a folder left with
    only config.yaml/log.txt/tb by a run that failed early is reused.
    Returns (folder, resuming).
    """
    out = Path(out)
    resuming = False
    if out.exists():
        if not out.is_dir():
            raise UserError(f"out={out} is a file; choose a folder that does not exist yet")
        if {p.name for p in out.iterdir()} - _BOOKKEEPING:  # outputs of an earlier run
            if resume_file and (out / resume_file).exists():
                resuming = True
            else:
                raise UserError(
                    f"out={out} already holds an earlier run; choose a new out= (nothing there was changed)"
                )
    out.mkdir(parents=True, exist_ok=True)
    if config_yaml and not resuming:
        write_text(out / "config.yaml", config_yaml)
    setup_logging(out / "log.txt")
    return out, resuming


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
    import json

    root = Path(root)
    if not root.is_dir():
        return None
    best: tuple[float, Path] | None = None
    for p in root.rglob(filename):
        try:
            if where is not None and not where(json.loads(p.read_text())):
                continue
        except (OSError, ValueError):
            continue
        t = p.stat().st_mtime
        if best is None or t > best[0]:
            best = (t, p)
    return best[1] if best else None
