"""(b) Env-steps/s: SAC on cached frozen features vs SB3 CnnPolicy SAC, same pixel env, one run.

    python benchmarks/agent_throughput.py --agent-steps 400 --learning-starts 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssl4rl  # noqa: F401
from _common import header

from ssl4rl.agents import train_agent
from ssl4rl.config import AgentConfig, TrainConfig
from ssl4rl.envs import check_env_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="dmc_cartpole")
    p.add_argument("--encoder", default="random", help="a saved encoder folder, mvp, or random (same cost)")
    p.add_argument("--size", type=int, default=84, help="rendered frame size for both agents")
    p.add_argument("--agent-steps", type=int, default=400)
    p.add_argument("--learning-starts", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    a = p.parse_args()
    repeat = check_env_name(a.env)[2]
    agent = AgentConfig(learning_starts=a.learning_starts, batch_size=a.batch_size)
    common = dict(steps=a.agent_steps * repeat, agent=agent, image_size=a.size, eval_every=0, eval_episodes=1,
                  video=False, device="cpu", progress=False)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, enc in (("frozen features (ssl4rl)", a.encoder), ("CnnPolicy (SB3, end to end)", "cnn")):
            out = str(Path(tmp) / enc.replace("/", "_"))
            res[label] = train_agent(TrainConfig(env=a.env, encoder=enc, out=out, **common))
    print(header(f"SAC env-steps/s on {a.env} from {a.size}px pixels, {a.agent_steps} agent steps "
                 f"({a.learning_starts} random), batch {a.batch_size}"))
    print("| agent | env steps | RL seconds | env steps/s |")
    print("|---|---|---|---|")
    for label, r in res.items():
        print(f"| {label} | {r['env_steps']} | {r['rl_seconds']} | {r['env_steps_per_second']} |")
    frozen, cnn = (r["env_steps_per_second"] for r in res.values())
    print(f"\nspeed-up of frozen features over CnnPolicy: {frozen / cnn:.1f}x")


if __name__ == "__main__":
    main()
