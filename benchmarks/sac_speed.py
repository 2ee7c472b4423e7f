"""SAC speed on this machine: frozen-feature SAC alone and two side by side, state SAC, and env workers.

    python benchmarks/sac_speed.py --encoder <saved encoder folder>                  # every part
    python benchmarks/sac_speed.py --encoder <folder> --parts alone pair             # some of them
    python benchmarks/sac_speed.py --encoder <folder> --before                       # SB3's SAC, the code before

Parts (each run is ``agents/train.py``, the command a user types, in its own process):
- ``alone``: ``agents/train.py env=dmc_cartpole agent=sac encoder=<folder> steps=100000`` with the default torch
  threads (one per core), its default evaluations (every 20k env steps) and checkpoints (every 10k);
- ``pair``: two such runs side by side (seeds 0 and 1), one thread each (``OMP_NUM_THREADS=1``);
- ``state``: the same command with ``encoder=state``, alone;
- ``envs``: raw pixel env stepping (cartpole swingup, 64 px, 3 stacked frames: 9x64x64 uint8, rendering included,
  random actions) with one env in this process (``n_envs=1``) and two envs as ``vec_env=subproc`` builds them
  (``SplitVecEnv``: one here, one in a worker), and SB3's ``SubprocVecEnv`` for reference; env steps/s (agent steps
  x action repeat 8), median of ``--reps`` rounds, and the ratio to one env.

``--before`` runs the agents with the code before ``ssl4rl.agents.fast``: SB3's ``SAC``, the LayerNorm applied to raw
features inside the policy, and SB3's ``SubprocVecEnv`` for ``vec_env=subproc``. Minutes are wall-clock per run,
start to exit, and the RL part the run reports (``rl_seconds``: learning, periodic evaluations excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header

PARTS = ("alone", "pair", "state", "envs")


def _patch_before() -> None:
    """Make ssl4rl.agents.sac build what it built before ssl4rl.agents.fast existed."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import SubprocVecEnv

    import ssl4rl.agents.sac as sac

    sac.FastSAC = lambda policy, env, stacked_frames=0, **kwargs: SAC(policy, env, **kwargs)
    sac.SplitVecEnv = SubprocVecEnv
    init = sac.Pipeline.__init__

    def old_init(self, cfg, device):
        init(self, cfg, device)
        self.prenorm = False  # FrozenFeatures hands over raw features; the policy's LayerNorm normalises them

    sac.Pipeline.__init__ = old_init


def _train_cmd(args: list[str], before: bool) -> list[str]:
    if before:  # agents/train.py, run by this script after the patch
        return [sys.executable, str(Path(__file__).resolve()), "--run-before", *args]
    return [sys.executable, "agents/train.py", *args]


def _start(args: list[str], before: bool, log: Path, threads: int | None) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    print("$ " + ("OMP_NUM_THREADS=1 " if threads else "") + "python agents/train.py " + " ".join(args), flush=True)
    with log.open("w") as f:
        proc = subprocess.Popen(_train_cmd([*args, "progress=false"], before), cwd=ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    return proc, time.time()


def _finish(proc: subprocess.Popen, t0: float, out: Path) -> tuple[float, float]:
    if proc.wait():
        sys.exit(f"error: a run failed; see {out.parent / (out.name + '.log')}")
    wall = time.time() - t0
    rl = json.loads((out / "results.json").read_text())["rl_seconds"]
    return wall / 60, rl / 60


def agent_runs(part: str, encoder: str, steps: int, before: bool, tmp: Path) -> list[str]:
    common = ["env=dmc_cartpole", "agent=sac", f"steps={steps}"]
    scale = 100_000 / steps
    if part in ("alone", "state"):
        enc = "state" if part == "state" else encoder
        out = tmp / part
        wall, rl = _finish(*_start([*common, f"encoder={enc}", f"out={out}"], before, tmp / f"{part}.log", None), out)
        what = "state SAC" if part == "state" else "frozen SAC"
        return [f"| {what}, alone (default threads) | {wall * scale:.2f} | {rl * scale:.2f} |"]
    runs = [(tmp / f"pair_s{s}", _start([*common, f"encoder={encoder}", f"seed={s}", f"out={tmp / f'pair_s{s}'}"],
                                        before, tmp / f"pair_s{s}.log", 1)) for s in (0, 1)]
    rows = []
    for s, (out, (proc, t0)) in enumerate(runs):
        wall, rl = _finish(proc, t0, out)
        rows.append(f"| frozen SAC, two side by side (1 thread each), seed {s} | {wall * scale:.2f} | {rl * scale:.2f} |")
    return rows


def _env_rate(n_envs: int, cls: type, steps: int) -> float:
    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env

    from ssl4rl.envs import make_env

    venv = make_vec_env(lambda: make_env("dmc_cartpole", image_size=64, frame_stack=3), n_envs=n_envs, seed=0,
                        vec_env_cls=cls)
    try:
        venv.reset()
        actions = np.random.default_rng(0).uniform(-1, 1, (steps + 50, n_envs, 1)).astype(np.float32)
        for a in actions[:50]:  # warm up (renderers, worker start)
            venv.step(a)
        t = time.perf_counter()
        for a in actions[50:]:
            venv.step(a)
        return steps * n_envs * 8 / (time.perf_counter() - t)
    finally:
        venv.close()


def env_rows(steps: int, reps: int, before: bool) -> list[str]:
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from ssl4rl.agents.fast import SplitVecEnv

    configs = [("n_envs=1 (vec_env=dummy)", 1, DummyVecEnv),
               ("n_envs=2 vec_env=subproc (SB3 SubprocVecEnv: before)", 2, SubprocVecEnv)]
    if not before:
        configs.append(("n_envs=2 vec_env=subproc (SplitVecEnv: now)", 2, SplitVecEnv))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for _ in range(reps):  # rounds interleave the configurations, so a slow spell hits them all
        for name, n, cls in configs:
            rates[name].append(_env_rate(n, cls, steps))
    one = statistics.median(rates[configs[0][0]])
    rows = []
    for name, _, _ in configs:
        med = statistics.median(rates[name])
        spread = f"{min(rates[name]):.0f}-{max(rates[name]):.0f}"
        rows.append(f"| {name} | {med:.0f} | {spread} | {med / one:.2f}x |")
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-before":  # worker: agents/train.py with the old code path
        _patch_before()
        sys.argv = ["agents/train.py", *sys.argv[2:]]
        os.chdir(ROOT)
        runpy.run_path(str(ROOT / "agents" / "train.py"), run_name="__main__")
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", help="a saved encoder folder (frozen SAC); needed by alone and pair")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--steps", type=int, default=100_000, help="env steps per run (minutes are scaled to 100k)")
    p.add_argument("--env-steps", type=int, default=1500, help="vector steps per env-stepping round")
    p.add_argument("--reps", type=int, default=5, help="env-stepping rounds")
    p.add_argument("--before", action="store_true", help="SB3's SAC and SubprocVecEnv (the code before)")
    a = p.parse_args()
    if {"alone", "pair"} & set(a.parts) and not a.encoder:
        p.error("--encoder is needed for the parts alone and pair")
    code = "before (SB3 SAC, SubprocVecEnv)" if a.before else "ssl4rl.agents.fast (FastSAC, SplitVecEnv)"
    lines = []
    with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as tmp:
        agent_parts = [part for part in a.parts if part != "envs"]
        if agent_parts:
            lines += [f"SAC on cartpole_swingup, {a.steps} env steps per run (minutes per 100k env steps)", "",
                      "| run | wall minutes | RL minutes |", "|---|---|---|"]
            for part in agent_parts:
                lines += agent_runs(part, a.encoder, a.steps, a.before, Path(tmp))
            lines.append("")
        if "envs" in a.parts:
            lp = os.environ.get("LP_NUM_THREADS", "unset")
            lines += [f"Pixel env stepping, random actions ({a.env_steps} vector steps x {a.reps} rounds, "
                      f"LP_NUM_THREADS={lp})", "", "| envs | env steps/s (median) | range | vs one env |",
                      "|---|---|---|---|", *env_rows(a.env_steps, a.reps, a.before), ""]
    print(header(f"SAC speed, {code}"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
