"""Collect a frame dataset under a random policy.

    python envs/collect.py env=dmc_walker episodes=20 out=data/walker
"""

import math

import ssl4rl  # noqa: F401  (GL backend before dm_control)
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.data import collect
from ssl4rl.envs import check_env_name
from ssl4rl.runs import log, prepare_run_dir


def main(cfg) -> None:
    check_env_name(cfg.env)
    episodes = math.ceil(cfg.steps / 1000) if cfg.steps else cfg.episodes
    out, _ = prepare_run_dir(cfg.out, to_yaml(cfg))
    meta = collect(
        cfg.env, episodes, out, seed=cfg.seed, image_size=cfg.image_size, camera=cfg.camera,
        fast_render=cfg.fast_render, progress=cfg.progress,
    )
    log.info(
        f"wrote {meta['episodes']} episodes, {meta['frames']} frames ({meta['image_size']} px) to {out} "
        f"in {meta['seconds']:.0f} s; random-policy return {meta['mean_return']:.1f}"
    )


if __name__ == "__main__":
    run_app(__file__, "collect", main)
