"""Milliseconds per update of the pixel agents (the model ``agents/train.py agent=<name>`` builds), on cartpole.

    python benchmarks/pixel_update.py                       # drq and curl, batch 64 and 128, 1 and 2 threads
    python benchmarks/pixel_update.py --agents drq --batches 64 --threads 2

Each setting runs in its own process: 300 agent steps of warm-up (replay filled, first updates done), then the
mean of ``--updates`` updates. The last column is the update time of cartpole's 100k env steps (12.5k updates).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header

WORKER = """
import dataclasses, sys, tempfile, time
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[1]))
from ssl4rl.agents import sac
from ssl4rl.config import TrainConfig, agent_configs
agent = dataclasses.replace(agent_configs()[sys.argv[2]], batch_size=int(sys.argv[3]), learning_starts=50)
cfg = TrainConfig(agent=agent, env="dmc_cartpole", encoder="scratch", out=tempfile.mkdtemp())
pipe = sac.Pipeline(cfg, torch.device("cpu"))
model = sac._model(cfg, pipe, pipe.make_venv(1, 0), Path(cfg.out), torch.device("cpu"), 12_500)
model.learn(300)
t = time.perf_counter()
model.train(int(sys.argv[4]), model.batch_size)
print((time.perf_counter() - t) / int(sys.argv[4]))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", nargs="+", default=["drq", "curl"])
    p.add_argument("--batches", nargs="+", type=int, default=[64, 128])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--updates", type=int, default=30)
    a = p.parse_args()
    lines = [header("Pixel agents: time per update (cartpole, 64 px, CPU-sized conv)"), "",
             "| agent | batch | threads | ms / update | 12.5k updates (min) |", "|---|---|---|---|---|"]
    for agent in a.agents:
        for batch in a.batches:
            for threads in a.threads:
                env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
                out = subprocess.run([sys.executable, "-c", WORKER, str(threads), agent, str(batch), str(a.updates)],
                                     cwd=ROOT, env=env, capture_output=True, text=True, check=True)
                seconds = float(out.stdout.strip().splitlines()[-1])
                lines.append(f"| {agent} | {batch} | {threads} | {seconds * 1000:.0f} | {seconds * 12_500 / 60:.0f} |")
                print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
