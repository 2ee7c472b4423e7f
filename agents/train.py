"""Train SB3 SAC on frozen encoder features (or state / end-to-end pixels as baselines).

    python agents/train.py env=dmc_walker encoder=mvp
    python agents/train.py env=dmc_cartpole encoder=state steps=100000
    python agents/train.py env=dmc_cartpole encoder=mvp out=runs/sac1   # rerun after a kill: resumes

A run checkpoints every ``ckpt_every`` env steps; a rerun with the same out= and the same settings
continues from the last checkpoint and ends bit-identical to an uninterrupted run. Only the keys in
SAFE_ON_RESUME may differ on resume; anything else is refused with one line naming the keys.
"""

import ssl4rl  # noqa: F401
from ssl4rl.agents import train_agent
from ssl4rl.agents.checkpoint import CHECKPOINT
from ssl4rl.cli import run_app, to_dict, to_yaml
from ssl4rl.envs import check_env_name
from ssl4rl.resolve import NAMED, resolve_encoder_path
from ssl4rl.runs import prepare_run_dir

# display only: the result is bit-identical whatever their value
SAFE_ON_RESUME = ("progress", "video")


def main(cfg) -> None:
    check_env_name(cfg.env)
    if cfg.encoder not in ("state", "cnn", "random"):  # fail before making out=; record which encoder (mvp moves)
        cfg.encoder = str(resolve_encoder_path(cfg.encoder, cfg.runs_root, allowed=tuple(NAMED)))
    out, _ = prepare_run_dir(cfg.out, to_yaml(cfg), resume_file=CHECKPOINT, safe_keys=SAFE_ON_RESUME)
    train_agent(
        cfg.env, cfg.encoder, out, steps=cfg.steps, agent=to_dict(cfg.agent), frame_stack=cfg.frame_stack,
        image_size=cfg.image_size, n_envs=cfg.n_envs, vec_env=cfg.vec_env, eval_every=cfg.eval_every,
        eval_episodes=cfg.eval_episodes, video=cfg.video, runs_root=cfg.runs_root, seed=cfg.seed,
        device=cfg.device, progress=cfg.progress, ckpt_every=cfg.ckpt_every,
    )


if __name__ == "__main__":
    run_app(__file__, "train", main)
