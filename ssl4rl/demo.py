"""The whole pipeline on a built-in default, sized for a 2-core CPU (``make demo``, about 10.5 minutes):

    python -m ssl4rl.demo --out runs/demo-<time> [--method rotation --pretrain-steps 300]

1. collect random-policy frames of cartpole swingup and balance (64 px; balance episodes show the
   pole up, which random swingup episodes never do);
2. pretrain ``--method`` (the method that did best on control in benchmarks/repr_vs_control.py) on them;
3. save the random-init baseline of the same architecture (pretrain/random_init.py);
4. SAC on cartpole swingup for 100k env steps on each frozen encoder, the two side by side (one thread
   each), plus SAC on the true state (the oracle), and the state probe of both encoders;
5. one table (``ssl4rl.report``): probe R² next to return, and whether the SSL encoder beats random init
   by more than the two standard deviations added.
Every stage is an entry point run as its own process; their logs are in each stage's folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ssl4rl.methods import METHODS
from ssl4rl.report import summary_table
from ssl4rl.utils import write_text

ROOT = Path(__file__).resolve().parent.parent


_RUNNING: list[subprocess.Popen] = []


def _start(args: list[str], threads: int | None = None) -> subprocess.Popen:
    """Start one entry point (``threads``: its torch threads, for stages that run side by side)."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    print("$ python " + " ".join(args), flush=True)
    proc = subprocess.Popen([sys.executable, *args, "progress=false"], cwd=ROOT, env=env)
    _RUNNING.append(proc)
    return proc


def _wait(*procs: subprocess.Popen) -> None:
    """Wait for ``procs``; if one failed, stop every stage still running and exit with one line."""
    codes = [p.wait() for p in procs]
    if any(codes):
        for other in _RUNNING:
            if other.poll() is None:
                other.terminate()
        sys.exit(f"error: a demo stage failed (exit codes {codes}); its log.txt says why")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--out", required=True, help="a new folder for every stage's outputs")
    p.add_argument("--method", default="rotation", help="the pretraining method (default: the best on control)")
    p.add_argument("--episodes", type=int, default=20, help="random-policy episodes of each task")
    p.add_argument("--pretrain-steps", type=int, default=300)
    p.add_argument("--env-steps", type=int, default=100_000)
    a = p.parse_args(argv)
    out = Path(a.out)
    problem = (f"unknown method '{a.method}'; valid names: {', '.join(sorted(METHODS))}" if a.method not in METHODS
               else f"--out {out} already exists; choose a new folder (nothing there was changed)" if out.exists() else "")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    t0 = time.time()
    data = {"swingup": out / "data" / "swingup", "balance": out / "data" / "balance"}
    _wait(*(_start(["envs/collect.py", f"env={env}", f"episodes={a.episodes}", "image_size=64", f"out={data[task]}"], 1)
            for task, env in (("swingup", "dmc_cartpole"), ("balance", "dmc_cartpole_balance"))))
    _wait(_start(["pretrain/run.py", f"method={a.method}", f"data.path={data['swingup']}",
                  f"data.extra_paths=[{data['balance']}]", f"steps={a.pretrain_steps}", "method.batch_size=64",
                  f"out={out / 'pretrain'}"]))
    ssl, rand = out / "pretrain" / "encoder", out / "random" / "encoder"
    _wait(_start(["pretrain/random_init.py", f"like={ssl}", f"out={rand.parent}"]))
    sac = ["agents/train.py", "env=dmc_cartpole", f"steps={a.env_steps}", "eval_every=0", "video=false"]
    agents = [_start([*sac, f"encoder={ssl}", f"out={out / ('sac_' + a.method)}"], 1),
              _start([*sac, f"encoder={rand}", f"out={out / 'sac_random'}"], 1)]
    _wait(_start(["agents/train.py", "env=dmc_cartpole", "encoder=state", f"steps={min(30_000, a.env_steps)}",
                  "eval_every=0", "video=false", f"out={out / 'sac_state'}"], 1))
    _wait(_start(["pretrain/eval.py", f"encoders=[{ssl},{rand}]", f"data.path={data['swingup']}", f"out={out / 'probe'}"], 1))
    _wait(*agents)
    table = summary_table(out)
    write_text(out / "summary.md", table)
    print(f"\n{table}\n(also written to {out / 'summary.md'}; demo took {(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
