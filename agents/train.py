"""Train an agent: SB3 SAC on frozen encoder features (or state / end-to-end pixels as baselines), the PlaNet-style
latent world model that plans (``agent=planet``), or Ha & Schmidhuber's V-M-C pipeline (``agent=worldmodels``).

    python agents/train.py env=dmc_walker encoder=mvp
    python agents/train.py env=dmc_cartpole encoder=state steps=100000
    python agents/train.py env=dmc_cartpole encoder=mvp out=runs/sac1   # rerun after a kill: resumes
    python agents/train.py env=dmc_cartpole agent=planet encoder=<encoder folder> objective=contrastive
    python agents/train.py env=dmc_cartpole agent=worldmodels

A run checkpoints every ``ckpt_every`` env steps; a rerun with the same out= and the same settings
continues from the last checkpoint and ends bit-identical to an uninterrupted run. Only the keys in
SAFE_ON_RESUME may differ on resume; anything else is refused with one line naming the keys.
"""

import importlib

import ssl4rl  # noqa: F401
from ssl4rl.agents import train_agent
from ssl4rl.agents.sac import SAFE_ON_RESUME
from ssl4rl.agents.checkpoint import CHECKPOINT
from ssl4rl.cli import run_app, to_dict, to_yaml
from ssl4rl.envs import check_env_name
from ssl4rl.errors import UserError
from ssl4rl.resolve import resolve_encoder_path
from ssl4rl.runs import claim_run_dir

# agent -> (its module, with check_config(cfg) and train_<agent>(cfg, out); its default encoder; the encoder names it
# takes besides a folder and mvp)
AGENTS = {
    "sac": ("", "mvp", ("state", "random", "cnn")),
    "planet": ("ssl4rl.agents.planet", "scratch", ("scratch",)),
    "worldmodels": ("ssl4rl.agents.worldmodels", "vae", ("vae",)),
}


def main(cfg) -> None:
    check_env_name(cfg.env)
    module, default_encoder, names = AGENTS[cfg.agent.name]
    if cfg.objective is not None and cfg.agent.name == "sac":
        raise UserError(f"objective={cfg.objective}: only world-model agents have one; add agent=planet")
    if cfg.encoder is None:
        cfg.encoder = default_encoder
    if cfg.encoder not in names:  # fail before making out=; record which encoder (mvp moves)
        cfg.encoder = str(resolve_encoder_path(cfg.encoder, cfg.runs_root, allowed=("mvp", *names)))
    runner = importlib.import_module(module) if module else None
    if runner is not None:
        runner.check_config(cfg)  # every refusal before out= is made
    out, _ = claim_run_dir(cfg.out, to_yaml(cfg), resume_file=CHECKPOINT, safe_keys=SAFE_ON_RESUME)
    if runner is not None:
        getattr(runner, f"train_{cfg.agent.name}")(cfg, out)
        return
    agent = {k: v for k, v in to_dict(cfg.agent).items() if k != "name"}
    train_agent(
        cfg.env, cfg.encoder, out, steps=cfg.steps, agent=agent, frame_stack=cfg.frame_stack,
        image_size=cfg.image_size, n_envs=cfg.n_envs, vec_env=cfg.vec_env, eval_every=cfg.eval_every,
        eval_episodes=cfg.eval_episodes, video=cfg.video, runs_root=cfg.runs_root, seed=cfg.seed,
        device=cfg.device, progress=cfg.progress, ckpt_every=cfg.ckpt_every,
    )


if __name__ == "__main__":
    run_app(__file__, "train", main)
