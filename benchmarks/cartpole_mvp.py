"""(c) cartpole_swingup, 100k env steps, SAC on a frozen MAE encoder pretrained on collected frames.

    python benchmarks/cartpole_mvp.py --episodes 50 --pretrain-steps 2000 --env-steps 100000

Runs the same four stages as the README, each in its own process (the CLI),
into one folder, then prints the summary table and the RL wall-clock.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str]) -> float:
    print("$ python " + " ".join(args), flush=True)
    t = time.time()
    subprocess.run([sys.executable, *args, "progress=false"], cwd=ROOT, check=True)
    return time.time() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="dmc_cartpole")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=f"runs/bench-cartpole-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    p.add_argument("--state-baseline", action="store_true", help="also train on true state")
    a = p.parse_args()
    out = Path(a.out)
    t = {}
    t["collect"] = run(["envs/collect.py", f"env={a.env}", f"episodes={a.episodes}", f"out={out}/data", f"seed={a.seed}"])
    t["pretrain"] = run(["pretrain/run.py", "method=mae", f"data.path={out}/data", f"steps={a.pretrain_steps}",
                         f"out={out}/pretrain", f"seed={a.seed}"])
    t["probe"] = run(["pretrain/eval.py", f"encoder={out}/pretrain/encoder", f"data.path={out}/data", f"out={out}/probe"])
    t["sac"] = run(["agents/train.py", f"env={a.env}", f"encoder={out}/pretrain/encoder", f"steps={a.env_steps}",
                    f"out={out}/sac_mae", f"seed={a.seed}"])
    if a.state_baseline:
        t["sac_state"] = run(["agents/train.py", f"env={a.env}", "encoder=state", f"steps={a.env_steps}",
                              f"out={out}/sac_state", f"seed={a.seed}", "video=false"])
    from ssl4rl.report import summary_table

    res = json.loads((out / "sac_mae" / "results.json").read_text())
    print(header(f"{a.env}: frozen MAE encoder + SAC, {res['env_steps']} env steps"))
    print(summary_table(out))
    print(f"- RL part (SAC learn, frozen MAE): {res['rl_seconds'] / 60:.1f} min "
          f"({res['env_steps_per_second']} env steps/s); whole train.py process {t['sac'] / 60:.1f} min")
    print("- stage wall-clock (s): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()))


if __name__ == "__main__":
    main()
