r"""Which world-model objective is better, online: arms of ``agent=planet`` plan on cartpole_swingup for 100k env steps.

    python benchmarks/planet_online.py --arms recon/scratch contrastive/rotation --seeds 0 1 2
    python benchmarks/planet_online.py --arms recon/scratch --seeds 0 --steps 20000      # a short check

The run recorded in benchmarks/RESULTS.md fits 6 runs into about 2.5 hours on the 2 cores (50-70 min per scratch
run, about 80 per frozen-encoder run with 3 runs sharing the cores) by planning with CEM 200 x 4 (top 20,
0.12-0.25 s per decision) and 50 model updates per episode:

    python benchmarks/planet_online.py --arms contrastive/scratch contrastive/rotation --seeds 0 1 2 \
        --root runs/bench-planet-cpu --extra agent.candidates=200 agent.iterations=4 agent.top_k=20 \
        agent.updates_per_episode=50 eval_every=0 eval_episodes=5 video=false

``agent=planet``'s defaults (CEM 300 x 5, 100 updates per episode) take about 65-100 min per run; PlaNet's own
(1000 x 10, a GPU setting) about 7 hours of planning alone.

Each arm is ``objective/encoder``: ``encoder`` is ``scratch`` or a frozen encoder of the representation-vs-control
benchmark (``mae``, ``rotation``; ``python benchmarks/repr_vs_control.py --stages data pretrain`` makes them). Every
run is ``agents/train.py env=dmc_cartpole agent=planet`` with its own ``out=`` under ``--root``: a rerun resumes
unfinished runs and skips finished ones. Runs go ``--parallel`` at a time, one thread each. The table sets the final
evaluation return (mean ± std over seeds) beside PlaNet-100k (297) and Dreamer-100k (326) from the CURL paper's table,
with wall-clock and seconds per planning decision.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPR = ROOT / "runs/bench-repr-control/pretrain"
ENCODERS = {"scratch": "scratch", "mae": str(REPR / "mae_s0/encoder"), "rotation": str(REPR / "rotation_s0/encoder")}
PUBLISHED = {"PlaNet": 297, "Dreamer": 326}


def command(arm: str, seed: int, steps: int, out: Path, extra: list[str]) -> list[str]:
    objective, encoder = arm.split("/")
    return [sys.executable, "agents/train.py", "env=dmc_cartpole", "agent=planet", f"encoder={ENCODERS[encoder]}",
            f"objective={objective}", f"steps={steps}", f"seed={seed}", f"out={out}", "progress=false", *extra]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", nargs="+", default=["recon/scratch", "contrastive/rotation"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000, help="environment steps per run")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--root", default="runs/bench-planet")
    p.add_argument("--extra", nargs="*", default=[], help="more agents/train.py overrides for every run")
    args = p.parse_args()
    for arm in args.arms:
        objective, _, encoder = arm.partition("/")
        if encoder not in ENCODERS or objective not in ("recon", "contrastive", "barlow"):
            sys.exit(f"error: arm '{arm}': give objective/encoder with objective recon|contrastive|barlow and encoder "
                     f"{'|'.join(ENCODERS)}")
    root = ROOT / args.root
    root.mkdir(parents=True, exist_ok=True)
    todo = [(arm, s) for arm in args.arms for s in args.seeds
            if not (root / f"{arm.replace('/', '_')}_s{s}" / "results.json").exists()]
    running: list[tuple[subprocess.Popen, str, float]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while todo or running:
        while todo and len(running) < args.parallel:
            arm, seed = todo.pop(0)
            out = root / f"{arm.replace('/', '_')}_s{seed}"
            log = open(root / f"{out.name}.log", "a")
            running.append((subprocess.Popen(command(arm, seed, args.steps, out, args.extra), cwd=ROOT, env=env,
                                             stdout=log, stderr=subprocess.STDOUT), out.name, time.time()))
            print(f"started {out.name}", flush=True)
        time.sleep(5)
        for proc, name, t0 in list(running):
            if proc.poll() is not None:
                running.remove((proc, name, t0))
                print(f"{name}: exit {proc.returncode} after {(time.time() - t0) / 60:.1f} min", flush=True)
                if proc.returncode:
                    sys.exit(f"error: {name} failed; see {root / (name + '.log')}")
    lines = []
    for arm in args.arms:
        runs = [json.loads((root / f"{arm.replace('/', '_')}_s{s}" / "results.json").read_text()) for s in args.seeds]
        finals = [r["eval_return_mean"] for r in runs]
        minutes = np.mean([sum(r["seconds"].values()) for r in runs]) / 60
        decision = np.mean([r["seconds_per_decision"] for r in runs])
        lines.append(f"| {arm} | {np.mean(finals):.1f} ± {np.std(finals):.1f} | {', '.join(f'{x:.1f}' for x in finals)} | "
                     f"{minutes:.0f} | {decision:.3f} |")
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    text = (f"# PlaNet-style planning on cartpole_swingup, {args.steps} env steps ({datetime.date.today()})\n\n`{cmd}`\n\n"
            "| objective/encoder | return (mean ± std over seeds) | per seed | min per run | s / decision |\n"
            "|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
            + "".join(f"| {k}-100k (published) | {v} | | | |\n" for k, v in PUBLISHED.items()))
    (root / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
