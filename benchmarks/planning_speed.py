"""Seconds per PlaNet decision on cartpole: the agent's CPU planner setting and PlaNet's GPU setting, on the
default-size RSSM (``PlanetConfig``: deter 200, stoch 30, hidden 200) reading cached frozen-encoder features.

One decision = the filter step on the newest (cached) frame + one plan (horizon 12). The gate: the CPU setting
takes at most 0.3 s per decision on a 2-core laptop, one torch thread.

    python benchmarks/planning_speed.py --decisions 30 --planet-decisions 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssl4rl  # noqa: F401
from _common import header

import numpy as np
import torch

from ssl4rl.config import PlanetConfig
from ssl4rl.encoders import build_encoder
from ssl4rl.envs import make_env
from ssl4rl.planning import CEM, PLANET_SETTING
from ssl4rl.utils import resolve_device
from ssl4rl.worldmodels import encoder_spec
from ssl4rl.worldmodels.rssm import RSSM

GATE_SECONDS = 0.3


def seconds_per_decision(model: RSSM, planner: CEM, features: torch.Tensor, decisions: int, device: torch.device) -> list[float]:
    """Per-decision wall time (after one warm-up decision) over ``decisions`` steps of cached features."""
    gen = torch.Generator(device=device).manual_seed(0)
    belief = model.filter_step(None, None, {"features": features[:1]})
    action = planner.act(model.reward_score(belief), gen, device)  # warm-up
    times = []
    for t in range(decisions):
        start = time.perf_counter()
        belief = model.filter_step(belief, action[None], {"features": features[t + 1: t + 2]})
        action = planner.act(model.reward_score(belief), gen, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decisions", type=int, default=30, help="decisions timed with the CPU setting")
    p.add_argument("--planet-decisions", type=int, default=3, help="decisions timed with PlaNet's setting")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the agent's runs use one per process)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    env = make_env("dmc_cartpole", image_size=64, frame_stack=1, seed=0)
    obs, _ = env.reset(seed=0)
    frames = [obs]
    for _ in range(max(a.decisions, a.planet_decisions) + 1):
        frames.append(env.step(env.action_space.sample())[0])
    env.close()
    torch.manual_seed(0)
    encoder = build_encoder("vit", image_size=64)  # any frozen encoder: only its feature size matters here
    features = encoder.encode(torch.from_numpy(np.stack(frames))).to(dev)  # cached once
    cfg = PlanetConfig()
    model = RSSM(1, "contrastive", encoder=encoder_spec(encoder), deter=cfg.deter, stoch=cfg.stoch, hidden=cfg.hidden)
    model.to(dev).eval()
    settings = {
        f"CPU default ({cfg.candidates} x {cfg.iterations}, top {cfg.top_k})":
            (CEM(1, cfg.horizon, cfg.candidates, cfg.iterations, cfg.top_k), a.decisions),
        "PlaNet GPU setting (1000 x 10, top 100)": (CEM.planet(1), a.planet_decisions),
    }
    rows = []
    for name, (planner, n) in settings.items():
        times = seconds_per_decision(model, planner, features, n, dev)
        rows.append((name, n, statistics.median(times), statistics.mean(times)))
    print(header(f"Seconds per cartpole decision, RSSM {cfg.deter}/{cfg.stoch}/{cfg.hidden} on cached features, "
                 f"horizon {PLANET_SETTING['horizon']}, {a.threads} thread(s), {dev}"))
    print("| setting | decisions | median s | mean s |\n|---|---|---|---|")
    for name, n, med, mean in rows:
        print(f"| {name} | {n} | {med:.3f} | {mean:.3f} |")
    verdict = "meets" if rows[0][2] <= GATE_SECONDS else "MISSES"
    print(f"\nCPU setting {verdict} the gate of {GATE_SECONDS} s per decision (median {rows[0][2]:.3f} s).")


if __name__ == "__main__":
    main()
