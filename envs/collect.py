"""Collect a frame dataset under a random policy.

    python envs/collect.py env=dmc_walker episodes=20 out=data/walker
    python envs/collect.py env=shapes2d episodes=1000 out=data/shapes2d                   # C-SWM training set
    python envs/collect.py env=shapes2d episodes=10000 episode_steps=10 out=data/shapes2d_eval seed=1
"""

import math

import ssl4rl  # noqa: F401  (GL backend before dm_control)
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.data import collect
from ssl4rl.envs import check_env_name, episode_steps
from ssl4rl.runs import log, claim_run_dir


def main(cfg) -> None:
    action_repeat = check_env_name(cfg.env)[2]
    per_episode = (cfg.episode_steps or episode_steps(cfg.env)) * action_repeat  # env steps per episode
    episodes = math.ceil(cfg.steps / per_episode) if cfg.steps else cfg.episodes
    out, _ = claim_run_dir(cfg.out, to_yaml(cfg))
    meta = collect(
        cfg.env, episodes, out, seed=cfg.seed, image_size=cfg.image_size, camera=cfg.camera,
        fast_render=cfg.fast_render, progress=cfg.progress, episode_steps=cfg.episode_steps,
    )
    reward = f"random-policy return {meta['mean_return']:.1f}" if meta["rewards"] else "no rewards"
    log.info(
        f"wrote {meta['episodes']} episodes of {meta['episode_steps']} steps, {meta['frames']} frames "
        f"({meta['image_size']} px) to {out} in {meta['seconds']:.0f} s; {reward}"
    )


if __name__ == "__main__":
    run_app(__file__, "collect", main)
