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


def prepare_run_dir(
    out: str | Path, config_yaml: str = "", resume_file: str | None = None, safe_keys: tuple[str, ...] = ()
) -> tuple[Path, bool]:
    """Create ``out`` for a new run, or reopen it to resume if it holds ``resume_file``.

    Refuses (one-line UserError) a folder holding another run's outputs unless it
    is resumable, so a run never overwrites earlier results; a folder left with
    only config.yaml/log.txt/tb by a run that failed early is reused. A resumed run
    must have the settings it started with (``config.yaml``); only ``safe_keys`` may
    differ. Temporary files left by a killed write are removed. Returns (folder, resuming).
    """
    out = Path(out)
    resuming = False
    if out.exists():
        if not out.is_dir():
            raise UserError(f"out={out} is a file; choose a folder that does not exist yet")
        if {p.name for p in out.iterdir()} - _BOOKKEEPING - {p.name for p in _orphans(out)}:  # an earlier run's outputs
            if resume_file and (out / resume_file).exists():
                resuming = True
                if config_yaml:
                    check_same_config(out, config_yaml, safe_keys)
            else:
                raise UserError(
                    f"out={out} already holds an earlier run; choose a new out= (nothing there was changed)"
                )
    out.mkdir(parents=True, exist_ok=True)
    for orphan in _orphans(out):
        orphan.unlink(missing_ok=True)
    if config_yaml and not resuming:
        write_text(out / "config.yaml", config_yaml)
    setup_logging(out / "log.txt")
    return out, resuming


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
        saved = _flat(yaml.safe_load((out / "config.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError) as e:
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
