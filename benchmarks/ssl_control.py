"""Does self-supervision help control, and by which route? One table on cartpole_swingup at 100k env steps.

    python benchmarks/ssl_control.py                                  # every stage, seeds 0 1 2, two runs at a time
    python benchmarks/ssl_control.py --stages report                  # the table from what has finished
    python benchmarks/ssl_control.py --tasks dmc_walker dmc_cheetah dmc_reacher dmc_finger dmc_cup --arms drq --seeds 0

Arms (every pixel arm: the CPU-sized conv per frame, 64 px, frame stack 3, batch 64, one update per agent step):
pixel SAC without augmentation, DrQ (K = M = 2), CURL, DrQ fine-tuning an encoder pretrained by ssl4rl (MoCo on
the representation-vs-control frame set), DrQ + an auxiliary loss (BYOL; SimCLR with temporal positives, ATC-style),
decoupled (only the temporal SimCLR loss trains the encoder), frozen features (the pretrained encoder and a random
init of the same architecture), and SAC on true state. Returns: 10 evaluation episodes at the end, 5 every 12.5k
env steps (the 25k and 50k marks); mean ± sample std over seeds (n). Every run is its own ``agents/train.py``
process with one torch thread; ``--jobs`` run side by side. A killed benchmark continues when rerun: finished
runs are skipped, unfinished ones resume from their last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header, run
from repr_vs_control import collect, data_config

PRETRAINED = "{pretrained}"  # replaced by the pretrained encoder's folder
PIXEL = ["frame_stack=3"]
FROZEN = ["agent=sac", "agent.batch_size=64", "encoder_mode=frozen"]
ARMS: dict[str, list[str]] = {
    "state SAC": ["agent=sac", "encoder=state"],
    "frozen, random init": [*FROZEN, "encoder=scratch"],
    "frozen, SSL (MoCo)": [*FROZEN, f"encoder={PRETRAINED}"],
    "DrQ": ["agent=drq"],
    "CURL": ["agent=curl"],
    "pixel SAC (no aug)": ["agent=drq", "agent.augment=none", "agent.target_k=1", "agent.critic_m=1"],
    "DrQ + SSL init (MoCo), fine-tuned": ["agent=drq", f"encoder={PRETRAINED}"],
    "DrQ + aux BYOL": ["agent=drq", "aux=byol"],
    "DrQ + aux ATC (SimCLR, temporal)": ["agent=drq", "aux=simclr", "aux_positive=temporal"],
    "decoupled ATC (SimCLR, temporal)": ["agent=drq", "encoder_mode=decoupled", "aux=simclr", "aux_positive=temporal"],
}
SHORT = {name: name.split(" (")[0].replace(", ", "_").replace(" + ", "_").replace(" ", "_").lower() for name in ARMS}
# Published 100k env-step returns on cartpole_swingup (CURL paper's table; 10 seeds CURL, DrQ paper 10 seeds)
PUBLISHED = {"DrQ": "759 ± 88", "CURL": "582 ± 146", "pixel SAC (no aug)": "419 ± 40", "state SAC": "835 ± 22"}
MARKS = (25_000, 50_000, 100_000)
PRETRAIN = ["method=moco", "backbone=conv_cpu", "steps=3000", "method.batch_size=128"]


def pretrained_encoder(out: Path, log: Path) -> Path:
    """MoCo on the representation-vs-control frame set, the agents' CPU-sized conv (64 px), seed 0; kept in the
    repository beside the results, so runs of later sittings (from a fresh checkout) use the same encoder."""
    if (KEPT_ENCODER / "encoder.json").exists():
        return KEPT_ENCODER
    enc = out / "pretrain" / "moco_conv_cpu" / "encoder"
    if not (enc / "encoder.json").exists():
        run(["pretrain/run.py", *PRETRAIN, *data_config(out), "seed=0", f"out={enc.parent}"], log)
    KEPT_ENCODER.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(enc, KEPT_ENCODER)  # every later sitting's runs use this very encoder (0.2 MB)
    return KEPT_ENCODER


KEPT = ROOT / "benchmarks" / "results" / "ssl_control"  # finished runs' results.json, committed: a new checkout keeps them
KEPT_ENCODER = KEPT / "moco_conv_cpu_encoder"


def run_dir(out: Path, task: str, arm: str, seed: int) -> Path:
    return out / "runs" / task / SHORT[arm] / f"s{seed}"


def kept(task: str, arm: str, seed: int) -> Path:
    """Where a finished run's results.json is kept (in the repository, so the table survives a fresh checkout)."""
    return KEPT / task / SHORT[arm] / f"s{seed}.json"


def keep(out: Path, task: str, arm: str, seed: int) -> None:
    """Copy a finished run's results.json to where it is kept (atomically), unless it is kept already."""
    done, dest = run_dir(out, task, arm, seed) / "results.json", kept(task, arm, seed)
    if done.exists() and not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_text(done.read_text())
        os.replace(tmp, dest)


def finished(out: Path, task: str, arm: str, seed: int) -> Path | None:
    """The finished run's results.json (the kept copy first), or None."""
    for path in (kept(task, arm, seed), run_dir(out, task, arm, seed) / "results.json"):
        if path.exists():
            return path
    return None


def command(out: Path, task: str, arm: str, seed: int, encoder: Path, steps: int) -> list[str]:
    overrides = [o.replace(PRETRAINED, str(encoder)) for o in ARMS[arm]]
    return ["agents/train.py", f"env={task}", *overrides, f"seed={seed}", f"steps={steps}", "eval_every=12500",
            "eval_episodes=10", "video=false", "progress=false", f"out={run_dir(out, task, arm, seed)}"]


def control(out: Path, tasks: list[str], arms: list[str], seeds: list[int], jobs: int, steps: int, encoder: Path) -> None:
    """Every (task, arm, seed) without results.json, ``jobs`` at a time, seeds first so each arm gets seed 0 early."""
    pending = [(t, a, s) for s in seeds for t in tasks for a in arms if finished(out, t, a, s) is None]
    running: list[tuple[subprocess.Popen, tuple[str, str, int]]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while pending or running:
        while pending and len(running) < jobs:
            task, arm, seed = pending.pop(0)
            folder = run_dir(out, task, arm, seed)
            folder.parent.mkdir(parents=True, exist_ok=True)
            args = command(out, task, arm, seed, encoder, steps)
            print(f"$ python {' '.join(args)}", flush=True)
            with (folder.parent / f"s{seed}.log").open("a") as f:
                running.append((subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=f,
                                                 stderr=subprocess.STDOUT), (task, arm, seed)))
        time.sleep(5)
        for proc, job in list(running):
            if proc.poll() is not None:
                running.remove((proc, job))
                keep(out, *job)
                print(f"{'done' if proc.returncode == 0 else f'FAILED ({proc.returncode})'}: {job[0]} {job[1]} "
                      f"s{job[2]}", flush=True)


def _eval_at(results: dict, mark: int) -> float | None:
    """The evaluation return at ``mark`` env steps (the last evaluation at or before it; None if the run is shorter)."""
    rows = [r for r in results["evals"] if r[0] <= mark]
    return rows[-1][1] if rows and results["env_steps"] >= mark else None


def _first_reach(results: dict, level: float = 500.0) -> int | None:
    return next((int(r[0]) for r in results["evals"] if r[1] >= level), None)


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.0f} (n=1)"
    return f"{statistics.mean(values):.0f} ± {statistics.stdev(values):.0f} (n={len(values)})"


def baselines(task: str, episodes: int = 10) -> dict[str, float]:
    """Trivial baselines on the same task: the uniform random policy and the best constant action."""
    import numpy as np

    from ssl4rl.envs import make_env

    env = make_env(task, obs_type="state", seed=12345)
    rng = np.random.default_rng(0)

    def score(policy: object) -> float:
        total = 0.0
        for i in range(episodes):
            env.reset(seed=1000 + i)
            done = False
            while not done:
                a = rng.uniform(env.action_space.low, env.action_space.high) if policy is None else policy
                _, r, term, trunc, _ = env.step(a)
                total += r
                done = term or trunc
        return total / episodes

    dim = env.action_space.shape[0]
    constants = {c: score(np.full(dim, c, dtype=np.float32)) for c in (-1.0, -0.5, 0.0, 0.5, 1.0)}
    best = max(constants, key=constants.get)
    return {"random policy": score(None), f"best constant action ({best:+.1f})": constants[best]}


def report(out: Path, tasks: list[str], arms: list[str], seeds: list[int]) -> str:
    import json

    lines = [header("Does self-supervision help control? (cartpole_swingup, 100k env steps)"), ""]
    for task in tasks:
        lines += [f"### {task}", "",
                  "| arm | return @25k | @50k | @100k | env steps to first reach 500 | RL min / run | published @100k |",
                  "|---|---|---|---|---|---|---|"]
        for arm in arms:
            for s in seeds:
                keep(out, task, arm, s)
            found = [json.loads(path.read_text()) for s in seeds if (path := finished(out, task, arm, s)) is not None]
            marks = [_cell([v for r in found if (v := _eval_at(r, m)) is not None]) for m in MARKS]
            reach = [_first_reach(r) for r in found]
            reached = sorted(x for x in reach if x is not None)
            reach_cell = "—" if not found else (f"{statistics.median(reached) / 1000:.1f}k median, {len(reached)}/"
                                                f"{len(found)} runs" if reached else f"not reached (0/{len(found)})")
            minutes = f"{statistics.mean(r['rl_seconds'] for r in found) / 60:.0f}" if found else "—"
            pub = PUBLISHED.get(arm, "") if task == "dmc_cartpole" else ""
            lines.append(f"| {arm} | {' | '.join(marks)} | {reach_cell} | {minutes} | {pub} |")
        for name, value in baselines(task).items():
            lines.append(f"| {name} (10 episodes) | | | {value:.0f} | | | |")
        lines.append("")
    lines += ["Published: CURL paper's table (100k env steps; CURL, pixel SAC and state SAC over its seeds), DrQ paper "
              "(10 seeds). Theirs: 84 px, batch 512 (DrQ) / 128-512 (CURL), 1024-wide MLPs, 32-channel 4-layer conv; "
              "ours: 64 px, batch 64, 256-wide MLPs, a 16-channel 3-layer stride-2 conv per frame (CPU-sized).", ""]
    text = "\n".join(lines)
    (out / "ssl_control.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "ssl_control")
    p.add_argument("--stages", nargs="+", default=["data", "pretrain", "control", "report"],
                   choices=["data", "pretrain", "control", "report"])
    p.add_argument("--tasks", nargs="+", default=["dmc_cartpole"])
    p.add_argument("--arms", nargs="+", default=list(SHORT.values()), choices=list(SHORT.values()))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs side by side, one torch thread each")
    p.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    a = p.parse_args()
    arms = [name for name in ARMS if SHORT[name] in a.arms]
    a.out.mkdir(parents=True, exist_ok=True)
    log = a.out / "benchmark.log"
    if "data" in a.stages:
        collect(a.out, log)
    encoder = KEPT_ENCODER if (KEPT_ENCODER / "encoder.json").exists() else a.out / "pretrain" / "moco_conv_cpu" / "encoder"
    if "pretrain" in a.stages:
        encoder = pretrained_encoder(a.out, log)
    if "control" in a.stages:
        control(a.out, a.tasks, arms, a.seeds, a.jobs, a.steps, encoder)
    if "report" in a.stages:
        print(report(a.out, a.tasks, arms, a.seeds))


if __name__ == "__main__":
    main()
