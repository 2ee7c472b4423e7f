"""The whole pipeline on a built-in default, sized for a 2-core CPU (``make demo``, about 12 minutes):

    python -m ssl4rl.demo --out runs/demo-<time> [--method rotation --pretrain-steps 500 --seeds 2]

1. collect random-policy frames of cartpole swingup, cartpole balance (whose episodes show the pole up,
   which random swingup episodes never do) and walker at 64 px: the frame set of
   benchmarks/repr_vs_control.py;
2. pretrain ``--method`` (the method that did best on control in that benchmark) on them;
3. save the random-init baseline: the same architecture and input normalisation, untrained
   (pretrain/random_init.py);
4. SAC on cartpole swingup on each frozen encoder, ``--seeds`` agent seeds each (default 2), two runs side by
   side (one thread each), then SAC on the true state (the oracle) beside the state probe of both encoders;
5. one table (``ssl4rl.report``): probe R² next to return, and whether the SSL encoder beats random init
   by more than the two standard deviations added. The ± is over agent seeds (the sample std of the seeds'
   mean evaluation returns); with one seed per encoder (``--seeds 1``) there is no spread over seeds, and the
   verdict says it cannot tell.

Budget (measured 2026-12-04 in a fresh clone, 2 cores): collecting takes 0.5 minutes, rotation 3.9 minutes per 1000
steps at batch 16, and a frozen-ViT SAC run 5.7-6.0 minutes per 80k env steps beside another, so 2 seeds at 80k
with 1000 pretraining steps took 18.5 minutes. The defaults are therefore 500 pretraining steps (rotation's held-out
accuracy is 1.0 by step 500) and 40k env steps per SAC run (``--env-steps``), about 11 minutes in all; each further
seed adds about 3 minutes, ``--env-steps 80000`` about 6.
Every stage is an entry point run as its own process; their logs are in each stage's folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ssl4rl._gl import gl_problem
from ssl4rl.cli import OneLineParser
from ssl4rl.envs import make_env
from ssl4rl.errors import UserError
from ssl4rl.methods import METHODS
from ssl4rl.report import summary_table
from ssl4rl.utils import write_text

ROOT = Path(__file__).resolve().parent.parent


# the benchmark's frame set (benchmarks/repr_vs_control.py): random-policy episodes of each env at 64 px
FRAME_SET = {"swingup": ("dmc_cartpole", 30), "balance": ("dmc_cartpole_balance", 30), "walker": ("dmc_walker", 10)}

_RUNNING: list[subprocess.Popen] = []


def _start(args: list[str], threads: int | None = None) -> subprocess.Popen:
    """Start one entry point (``threads``: its torch threads, for stages that run side by side; Mesa's software
    renderer then renders in the calling thread too, unless LP_NUM_THREADS is set: the same pixels, no thread
    hand-off)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env.setdefault("LP_NUM_THREADS", "0")
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


def _pool(jobs: list[list[str]], slots: int = 2) -> None:
    """Run ``jobs`` (entry-point argument lists), ``slots`` at a time with one thread each."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < slots:
            running.append(_start(pending.pop(0), 1))
        time.sleep(0.5)
        for proc in [p for p in running if p.poll() is not None]:
            running.remove(proc)
            _wait(proc)


def _check(a: argparse.Namespace) -> None:
    """Refuse, in one line, arguments the demo would fail on after minutes of work."""
    small = [f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if isinstance(v, int) and v < 1]
    if small:
        raise UserError(f"{small[0]}: must be at least 1")
    if a.method not in METHODS:
        raise UserError(f"unknown method '{a.method}'; valid names: {', '.join(sorted(METHODS))}")
    if Path(a.out).exists():
        raise UserError(f"--out {a.out} already exists; choose a new folder (nothing there was changed)")
    problem = gl_problem(render=True)
    if problem:
        raise UserError(problem)
    if METHODS[a.method].needs_transitions:
        sizes = ", ".join(f"{env} {make_env(env, obs_type='state').action_space.shape[0]}" for env, _ in FRAME_SET.values())
        raise UserError(
            f"--method {a.method} learns from transitions (frame, action, next frame) of one env, but the demo's frame "
            f"set mixes tasks of different action sizes ({sizes}); choose another method (e.g. --method rotation), or "
            f"pretrain {a.method} on one task: python pretrain/run.py method={a.method} data.path=<envs/collect.py folder>"
        )


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--out", required=True, help="a new folder for every stage's outputs")
    p.add_argument("--method", default="rotation", help="the pretraining method (default: the best on control)")
    p.add_argument("--episodes", type=int, default=30, help="random-policy episodes of cartpole swingup (and as many "
                   "of balance, a third as many of walker)")
    p.add_argument("--pretrain-steps", type=int, default=500)
    p.add_argument("--pretrain-batch", type=int, default=16)
    p.add_argument("--env-steps", type=int, default=40_000, help="env steps of each SAC run on frozen features "
                   "(default 40k: four runs, two at a time, fit the demo's 12 minutes; 80k takes about 6 more)")
    p.add_argument("--seeds", type=int, default=2, help="SAC seeds per encoder (the ± and the verdict are over them; "
                   "with 1 the verdict cannot tell; each further seed adds about 3 minutes)")
    a = p.parse_args(argv)
    out = Path(a.out)
    try:
        _check(a)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    data = {name: out / "data" / name for name in FRAME_SET}
    _pool([["envs/collect.py", f"env={env}", f"episodes={max(1, n * a.episodes // 30)}", "image_size=64", f"out={data[name]}"]
           for name, (env, n) in reversed(FRAME_SET.items())])  # the longest (walker) first
    extra = ",".join(str(data[name]) for name in FRAME_SET if name != "swingup")
    _wait(_start(["pretrain/run.py", f"method={a.method}", f"data.path={data['swingup']}", f"data.extra_paths=[{extra}]",
                  f"steps={a.pretrain_steps}", f"method.batch_size={a.pretrain_batch}", f"out={out / 'pretrain'}"]))
    ssl, rand = out / "pretrain" / "encoder", out / "random" / "encoder"
    _wait(_start(["pretrain/random_init.py", f"like={ssl}", f"out={rand.parent}"]))
    # no mid-run checkpoints: the runs are minutes long, and the demo's time is what counts
    sac = ["agents/train.py", "env=dmc_cartpole", "eval_every=0", "video=false", f"ckpt_every={a.env_steps}"]
    # one pool, two at a time: the SAC runs seed by seed (each seed's pair ends together), then the state oracle
    # beside the probe, which take about as long as each other
    _pool([*([*sac, f"steps={a.env_steps}", f"encoder={enc}", f"seed={seed}", f"out={out / f'sac_{name}_s{seed}'}"]
             for seed in range(a.seeds) for name, enc in ((a.method, ssl), ("random", rand))),
           [*sac, "encoder=state", f"steps={min(30_000, a.env_steps)}", f"out={out / 'sac_state'}"],
           ["pretrain/eval.py", f"encoders=[{ssl},{rand}]", f"data.path={data['swingup']}", "knn_k=[20]",
            "label_fractions=[]", f"out={out / 'probe'}"]])
    table = summary_table(out)
    write_text(out / "summary.md", table)
    print(f"\n{table}\n(also written to {out / 'summary.md'}; demo took {(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
