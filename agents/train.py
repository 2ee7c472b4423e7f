"""Train an agent: SB3 SAC on frozen encoder features (or true state), SAC whose pixel encoder learns (DrQ, CURL,
fine-tuning, an SSL method as auxiliary loss, decoupled training), PPO, the PlaNet-style latent world model that
plans (``agent=planet``), or Ha & Schmidhuber's V-M-C pipeline (``agent=worldmodels``).

    python agents/train.py env=dmc_walker encoder=mvp                      # SAC on frozen MAE features
    python agents/train.py env=dmc_cartpole agent=drq                      # DrQ from scratch (64 px, CPU-sized conv)
    python agents/train.py env=dmc_cartpole agent=curl                     # CURL
    python agents/train.py env=dmc_cartpole agent=drq encoder=<encoder folder> encoder_mode=finetune
    python agents/train.py env=dmc_cartpole agent=drq aux=byol             # an SSL method as auxiliary loss
    python agents/train.py env=dmc_cartpole agent=drq aux=simclr aux_positive=temporal   # ATC-style positives
    python agents/train.py env=dmc_cartpole agent=drq encoder_mode=decoupled aux=simclr  # only the SSL loss trains it
    python agents/train.py env=dmc_cartpole agent=ppo encoder=<encoder folder>           # PPO on frozen features
    python agents/train.py -m env=dmc_cartpole agent=drq,curl seed=0,1,2                 # multirun (joblib)
    python agents/train.py env=dmc_cartpole agent=planet encoder=<encoder folder> objective=contrastive
    python agents/train.py env=dmc_cartpole agent=worldmodels

A run checkpoints every ``ckpt_every`` env steps; a rerun with the same out= and the same settings
continues from the last checkpoint and ends bit-identical to an uninterrupted run. Only the keys in
SAFE_ON_RESUME may differ on resume; anything else is refused with one line naming the keys.
"""

import importlib

from omegaconf import OmegaConf

import ssl4rl  # noqa: F401
from ssl4rl.agents.checkpoint import CHECKPOINT
from ssl4rl.agents.sac import SAFE_ON_RESUME, train_agent
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.envs import check_env_name
from ssl4rl.errors import UserError
from ssl4rl.resolve import encoder_names, resolve_encoder_path
from ssl4rl.runs import claim_run_dir

# world-model agents -> their module, with check_config(cfg) and train_<agent>(cfg, out); the rest are SB3 agents
WORLD_MODELS = {"planet": "ssl4rl.agents.planet", "worldmodels": "ssl4rl.agents.worldmodels"}
DEFAULT_ENCODER = {"planet": "scratch", "worldmodels": "vae", "drq": "scratch", "curl": "scratch",
                   "drq_paper": "scratch", "curl_paper": "scratch"}  # others: mvp


def main(cfg) -> None:
    check_env_name(cfg.env)
    agent = cfg.agent.name
    if cfg.objective is not None and agent not in WORLD_MODELS:
        raise UserError(f"objective={cfg.objective}: only world-model agents have one; add agent=planet")
    if cfg.encoder is None:
        cfg.encoder = DEFAULT_ENCODER.get(agent, "mvp")
    names = encoder_names(agent)
    if cfg.encoder not in names:  # fail before making out=; record which encoder (mvp moves)
        cfg.encoder = str(resolve_encoder_path(cfg.encoder, cfg.runs_root, allowed=names))
    if agent not in WORLD_MODELS:
        train_agent(OmegaConf.to_object(cfg))  # validates, checks and claims out= itself
        return
    if cfg.encoder_mode is not None or cfg.aux is not None:
        raise UserError(f"agent={agent}: encoder_mode= and aux= are for SB3 agents (sac, drq, curl, ppo); {agent} "
                        "trains or freezes its encoder as its own settings say")
    runner = importlib.import_module(WORLD_MODELS[agent])
    runner.check_config(cfg)  # every refusal before out= is made
    out, _ = claim_run_dir(cfg.out, to_yaml(cfg), resume_file=CHECKPOINT, safe_keys=SAFE_ON_RESUME)
    getattr(runner, f"train_{agent}")(cfg, out)


if __name__ == "__main__":
    run_app(__file__, "train", main)
