"""(a) Render frames/s: ssl4rl's fast renderer vs dm_control's default physics.render, in one run.

    python benchmarks/render_fps.py --size 84 --frames 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssl4rl  # noqa: F401
from _common import header

from ssl4rl.envs import TASKS, FastRenderer, make_env


def fps(render, n: int) -> float:
    render()  # warm up (context creation)
    t = time.perf_counter()
    for _ in range(n):
        render()
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=84)
    p.add_argument("--frames", type=int, default=1000, help="frames per fast measurement")
    p.add_argument("--default-frames", type=int, default=60, help="frames per dm_control default measurement")
    p.add_argument("--envs", nargs="+", default=["dmc_cartpole", "dmc_walker"], choices=list(TASKS))
    a = p.parse_args()
    rows = []
    for name in a.envs:
        env = make_env(name, image_size=a.size, seed=0)
        env.reset(seed=0)
        physics = env.physics
        fast = FastRenderer(physics, a.size, 0, fast=True)
        standard = FastRenderer(physics, a.size, 0, fast=False)
        f_fast = fps(fast.render, a.frames)
        f_std = fps(standard.render, a.default_frames)
        f_dm = fps(lambda p=physics: p.render(a.size, a.size, camera_id=0), a.default_frames)
        fast.close()
        standard.close()
        physics.free()  # release dm_control's own GL context before exit
        env.close()
        rows.append((name, f_fast, f_std, f_dm))
    print(header(f"Render frames/s at {a.size}x{a.size}, one process"))
    print("| task | ssl4rl fast | ssl4rl standard look | dm_control physics.render | fast / dm_control |")
    print("|---|---|---|---|---|")
    for name, f_fast, f_std, f_dm in rows:
        print(f"| {name} | {f_fast:.0f} | {f_std:.0f} | {f_dm:.0f} | {f_fast / f_dm:.1f}x |")


if __name__ == "__main__":
    main()
