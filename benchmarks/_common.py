"""Shared bits of the benchmark scripts: the command line and machine description."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch


def header(title: str) -> str:
    """Title, date, machine and the exact command that produced the figures."""
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, " + (
        f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    )
    return f"## {title}\n\n- date: {datetime.date.today()}\n- machine: {machine}\n- command: `{cmd}`\n"


ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], log: Path) -> float:
    """Run one entry point (its own process, no progress bar), appending its output to ``log``; returns seconds."""
    print("$ python " + " ".join(args), flush=True)
    t = time.time()
    with log.open("a") as f:
        subprocess.run([sys.executable, *args, "progress=false"], cwd=ROOT, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.time() - t
