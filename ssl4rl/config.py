"""Typed configs: one source of defaults, registered as Hydra structured configs.

``<entry>_schema`` types every key of ``configs/<entry>.yaml`` (so ``steps=abc`` fails with one
line before anything runs) and each method's ``Config`` dataclass is the option ``method=<name>``.
``check_ranges`` then refuses values of the right type but out of range (``steps=0``), with one line.
Library code takes these objects; ``dataclasses.asdict`` gives what is saved with a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ssl4rl.errors import UserError
from ssl4rl.methods import METHODS, MethodConfig


@dataclass
class DataConfig:
    """Where pretraining images come from."""

    path: str = "???"  # env frames folder (envs/collect.py), an ImageFolder, or a CIFAR-10 / STL-10 folder
    kind: str = "frames"  # frames | imagefolder | cifar10 | stl10
    extra_paths: list[str] = field(default_factory=list)  # frames only: more episode folders mixed into training
    holdout: float = 0.2  # frames: episodes held out (same split as the probe); images: fraction held out
    positive: str = "augment"  # augment (two views of one image) | temporal (frame k steps later, env frames only)
    k: int = 3  # temporal offset in agent steps
    workers: int = 2  # DataLoader workers when a large image set is streamed


@dataclass
class PretrainConfig:
    """Settings of one pretraining run (the method's own recipe is in ``method``)."""

    method: Any = field(default_factory=MethodConfig)
    backbone: dict[str, Any] = field(default_factory=lambda: {"arch": "vit"})
    data: DataConfig = field(default_factory=DataConfig)
    out: str = "runs/pretrain/run"
    steps: int = 2000  # optimizer steps
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    log_every: int = 50
    ckpt_every: int = 500  # checkpoint + held-out metrics + figures; a rerun with the same out= resumes
    amp: bool = False  # bfloat16 autocast (GPU fast path)
    channels_last: bool = False
    compile: bool = False  # torch.compile the training step


@dataclass
class CollectConfig:
    """Settings of ``envs/collect.py``."""

    env: str = "dmc_cartpole"
    episodes: int = 20
    steps: Optional[int] = None  # environment steps to collect; overrides episodes (episode_steps x action repeat each)
    episode_steps: Optional[int] = None  # agent steps per episode; None: the env's (dm_control 1000 env steps, blocks 100)
    image_size: Optional[int] = None  # None: the env's default (84 for dm_control, 50 for shapes2d/cubes3d)
    camera: int = 0
    fast_render: bool = True  # false: shadows, reflections, multisampling (dm_control's look)
    out: str = "data/${env}"
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class AgentConfig:
    """Stable-Baselines3 SAC hyper-parameters (DrQ/CURL-like defaults): ``agent=sac``."""

    name: str = "sac"
    learning_rate: float = 3e-4
    buffer_size: int = 100_000
    learning_starts: int = 1000  # agent steps of random actions before updates
    batch_size: int = 256
    tau: float = 0.01
    gamma: float = 0.99
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: str = "auto"  # auto, auto_<init> or a number
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    proj_dim: int = 64  # per-frame LayerNorm + linear projection of frozen features (0 = off)


@dataclass
class PlanetConfig:
    """PlaNet's settings (``agent=planet``); defaults sized for a laptop CPU, PlaNet's values in comments."""

    name: str = "planet"
    seed_episodes: int = 5  # S: episodes of uniformly random actions before the first update (PlaNet 5)
    updates_per_episode: int = 100  # C: model updates before each planned episode (PlaNet 100)
    batch_size: int = 32  # sequences per update (PlaNet 50)
    seq_len: int = 32  # frames per sequence (PlaNet 50)
    lr: float = 1e-3  # Adam learning rate (eps 1e-4), PlaNet's
    grad_clip: float = 1000.0  # global gradient-norm clip (PlaNet 1000)
    deter: int = 200  # deterministic GRU state (PlaNet 200)
    stoch: int = 30  # stochastic Gaussian state (PlaNet 30)
    hidden: int = 200  # MLP width (PlaNet 200)
    depth: int = 16  # channels of the first conv layer of the scratch encoder and the decoder's last
    free_nats: float = 3.0  # KL below this many nats is not penalised (PlaNet 3)
    decoder_size: int = 32  # px of the recon decoder (16-128), and of scratch frames when image_size is unset
    planner: str = "cem"  # cem | mppi
    horizon: int = 12  # planning horizon in agent steps (PlaNet 12)
    candidates: int = 300  # action sequences per iteration (PlaNet 1000, a GPU setting)
    iterations: int = 5  # refits per decision (PlaNet 10)
    top_k: int = 30  # elite sequences (PlaNet 100); mppi: 0 weighs all candidates
    temperature: float = 1.0  # mppi only: softmax temperature over the predicted returns
    exploration_noise: float = 0.3  # std of the Gaussian noise added to planned actions while collecting (PlaNet 0.3)
    video_context: int = 5  # frames filtered before the open-loop part of prediction.gif


TRAIN_IN = ("dream", "real")  # agent=worldmodels: where CMA-ES scores controllers
PROJECT = ("pca", "none")  # agent=worldmodels, frozen encoder: how features become z


@dataclass
class WorldModelsConfig:
    """Sizes of the V-M-C pipeline (defaults: the paper's V and M, a CMA-ES budget for ~15 minutes on 2 CPU cores)."""

    name: str = "worldmodels"
    z_dim: int = 32  # V: latent size (the VAE's z; PCA components of a frozen encoder's features)
    project: str = "pca"  # frozen encoder only: pca (z_dim components, unit variance) | none (every feature, standardised)
    holdout: float = 0.1  # fraction of the random episodes held out (validation losses, reconstruction figure)
    vae_steps: int = 1500  # VAE optimizer steps (the paper: 10 epochs of its data)
    vae_batch: int = 64  # frames per VAE batch
    vae_lr: float = 1e-3  # Adam
    kl_tolerance: float = 0.5  # free bits: the KL is not pushed below kl_tolerance * z_dim nats (paper)
    hidden: int = 256  # M: LSTM units (paper)
    mixtures: int = 5  # M: Gaussians per latent dimension (paper)
    m_steps: int = 1500  # M optimizer steps
    m_batch: int = 32  # M: sequences per batch
    seq_len: Optional[int] = None  #  M: training sequence length (None: whole episodes, as dreams run)
    m_lr: float = 1e-3  # Adam, gradients clipped at norm 1 (paper)
    reward_weight: float = 1.0  # M: weight of the reward MSE beside the mixture NLL (nats per dimension)
    train_in: str = "dream"  # where CMA-ES scores controllers: dream (inside M) | real (the env)
    temperature: float = 1.15  # tau of dream rollouts (training and the dream evaluation; 0: the mixture mode)
    dream_horizon: Optional[int] = None  #  dream length in agent steps (None: the env's episode length)
    sigma0: float = 0.1  # CMA-ES initial step size; the controller starts at zero
    popsize: int = 64  # dream: CMA-ES population (paper)
    rollouts: int = 16  # dream: rollouts per candidate, the same starts and noise for every candidate (paper: 16)
    generations: int = 200  # dream: CMA-ES generations
    real_popsize: int = 16  # real: CMA-ES population
    real_rollouts: int = 1  # real: episodes per candidate, the same env seeds for every candidate
    real_generations: int = 40  # real: CMA-ES generations
    real_check_every: int = 20  # generations between real-env episodes of the ES mean (curve points; 0: none)
    dream_eval: int = 64  # dream rollouts that evaluate the final controller
    random_m: bool = False  # also train and evaluate a C on an untrained M (the control), reported beside
    ckpt_updates: int = 250  # V and M optimizer steps between checkpoints (CMA-ES checkpoints every generation)


@dataclass
class TrainConfig:
    """Settings of ``agents/train.py``."""

    agent: Any = None  # agent=sac | planet | worldmodels (each its own typed config; the defaults list picks sac)
    out: str = "runs/train/${env}/${now:%Y%m%d-%H%M%S}"
    env: str = "dmc_cartpole"
    # None: the agent's default (sac: mvp, planet: scratch, worldmodels: vae). sac: mvp | state | random | cnn | a
    # saved encoder folder; planet: scratch | mvp | a folder; worldmodels: vae | mvp | a folder
    encoder: Optional[str] = None
    objective: Optional[str] = None  # world-model agents: recon | contrastive | barlow (None: the agent's default)
    runs_root: str = "runs"
    steps: int = 100_000  # ENVIRONMENT steps (agent steps x action repeat)
    frame_stack: int = 3
    image_size: Optional[int] = None  # default: the encoder's own image size (84 for cnn)
    n_envs: int = 1
    vec_env: str = "dummy"
    eval_every: int = 20_000  # environment steps between evaluations (5 episodes); 0: none
    ckpt_every: int = 10_000  # environment steps between checkpoints
    eval_episodes: int = 10
    video: bool = True
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class EvalDataConfig:
    path: Any = "???"  # frames: a folder from envs/collect.py, or several [a,b] (labels = which dataset)
    kind: str = "frames"  # frames | imagefolder | cifar10 | stl10
    holdout: float = 0.2  # frames: fraction of episodes held out
    image_size: Optional[int] = None  # image sets are loaded at this size (None: the largest encoder image size)


@dataclass
class EvalConfig:
    """Settings of ``pretrain/eval.py``."""

    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    out: str = "runs/eval/${now:%Y%m%d-%H%M%S}"
    encoder: str = "mvp"  # a saved encoder folder, or mvp (latest MAE encoder under runs/)
    encoders: Optional[list[str]] = None  # several: encoders=[dirA,dirB] or encoders=dirA,dirB (replaces encoder=)
    runs_root: str = "runs"
    steps: Optional[int] = None  # unused by evaluation (a uniform CLI)
    knn_k: list[int] = field(default_factory=lambda: [20, 200])  # kNN neighbours (clipped to the train size)
    knn_temperature: float = 0.07  # kNN votes weighted exp(cosine / T)
    label_fractions: list[float] = field(default_factory=lambda: [0.01, 0.1])  # linear probe and kNN on these fractions
    label_state: Optional[str] = None  # frames, one dataset: state variable binned into classes (None: first pose dim)
    n_bins: int = 4  # ... into this many quantile bins
    finetune: bool = False  # also fine-tune each encoder end to end (slow on a CPU)
    finetune_epochs: int = 3
    pixels_size: int = 16  # raw-pixel baseline: images downsampled to this size
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class RandomInitConfig:
    """Settings of ``pretrain/random_init.py``."""

    like: str = "???"
    runs_root: str = "runs"
    out: str = "runs/random/${now:%Y%m%d-%H%M%S}"
    steps: Optional[int] = None  # unused (a uniform CLI)
    seed: int = 0
    device: str = "auto"
    progress: bool = True


GOAL_PLANNERS = ("auto", "exhaustive", "cem")  # auto: exhaustive for discrete actions at horizon <= 2, else CEM


@dataclass
class GoalConfig:
    """Settings of ``agents/plan_goal.py`` (goal-image planning in a world model's latent space)."""

    env: str = "shapes2d"  # shapes2d | cubes3d | dmc_reacher
    worldmodel: str = "???"  # a world-model folder (model.json), or a run folder holding worldmodel/
    out: str = "runs/goal/${env}/${now:%Y%m%d-%H%M%S}"
    goals: int = 50
    goal_image: Optional[str] = None  # plan from goal 0's start towards this image (.png or .npy) instead
    goal_steps_min: int = 5  # block envs: the goal is where this many to goal_steps_max random moves lead
    goal_steps_max: int = 10
    planner: str = "auto"  # auto (exhaustive for discrete actions at horizon <= 2, else CEM) | exhaustive | cem
    horizon: Optional[int] = None  # None: 2 for discrete actions, 10 for continuous
    candidates: int = 300
    iterations: int = 5
    top_k: int = 30
    random_control: bool = True  # also run a uniformly random policy on the same goals
    videos: int = 3  # goals recorded as videos
    steps: Optional[int] = None  # unused (a uniform CLI)
    seed: int = 0
    device: str = "auto"
    progress: bool = True


# smallest allowed value of each numeric setting, per entry point (None values are skipped)
MINIMUMS: dict[str, dict[str, float]] = {
    "collect": {"episodes": 1, "steps": 1, "episode_steps": 1, "image_size": 16, "camera": 0, "seed": 0},
    "train": {"steps": 1, "frame_stack": 1, "image_size": 16, "n_envs": 1, "eval_every": 0, "ckpt_every": 1,
              "eval_episodes": 1, "seed": 0, "agent.learning_rate": 1e-12, "agent.buffer_size": 1,
              "agent.learning_starts": 0, "agent.batch_size": 1, "agent.tau": 0, "agent.gamma": 0,
              "agent.train_freq": 1, "agent.gradient_steps": 1, "agent.proj_dim": 0},
    "eval": {"n_bins": 2, "finetune_epochs": 1, "pixels_size": 1, "batch_size": 1, "knn_temperature": 1e-6,
             "data.image_size": 16, "seed": 0, "knn_k": 1, "label_fractions": 1e-6, "data.holdout": 0},
    "pretrain": {"steps": 1, "ckpt_every": 1, "log_every": 1, "seed": 0, "method.batch_size": 1, "method.lr": 0,
                 "method.weight_decay": 0, "method.warmup": 0, "data.holdout": 0, "data.k": 1, "data.workers": 0},
    "random_init": {"seed": 0},
    "plan_goal": {"goals": 1, "goal_steps_min": 1, "goal_steps_max": 1, "horizon": 1, "candidates": 1,
                  "iterations": 1, "top_k": 1, "videos": 0, "seed": 0},
}
MAXIMUMS: dict[str, dict[str, float]] = {
    "train": {"agent.tau": 1, "agent.gamma": 1},
    "eval": {"label_fractions": 1, "data.holdout": 0.9},
    "pretrain": {"data.holdout": 0.9},
}


def check_ranges(cfg: Any, entry: str) -> None:
    """Refuse, with one line naming the value and the fix, a numeric setting of ``entry`` out of range."""
    from omegaconf import OmegaConf

    for key, low in MINIMUMS.get(entry, {}).items():
        value = OmegaConf.select(cfg, key) if not isinstance(cfg, dict) else cfg.get(key)
        high = MAXIMUMS.get(entry, {}).get(key)
        for v in value if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else [value]:
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if v != v or v < low or v in (float("inf"), float("-inf")):  # NaN, inf or too small
                raise UserError(f"{key}={v}: must be a finite number, at least {low:g}")
            if high is not None and v > high:
                raise UserError(f"{key}={v}: must be at most {high:g}")


def check_choices(cfg: Any) -> None:
    """Refuse, with one line listing the valid names, a named choice that does not exist (env, vec_env,
    data.kind, device), before anything runs."""
    from omegaconf import OmegaConf

    from ssl4rl.envs import check_env_name
    from ssl4rl.utils import check_device

    from ssl4rl.methods import cswm
    from ssl4rl.planning import PLANNERS
    from ssl4rl.worldmodels import rssm

    choices = {"vec_env": ("dummy", "subproc"), "data.kind": ("frames", "imagefolder", "cifar10", "stl10"),
               "data.positive": ("augment", "temporal"), "objective": tuple(rssm.OBJECTIVES), "agent.planner": tuple(PLANNERS),
               "agent.train_in": TRAIN_IN, "agent.project": PROJECT, "planner": GOAL_PLANNERS,
               "method.objective": cswm.OBJECTIVES}
    if OmegaConf.select(cfg, "env") is not None:
        check_env_name(cfg.env)
    if OmegaConf.select(cfg, "device") is not None:
        check_device(cfg.device)
    for key, valid in choices.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in valid:
            raise UserError(f"unknown {key} '{value}'; valid: {', '.join(valid)}")


def agent_configs() -> dict[str, type]:
    """``agent=<name>`` -> its typed config."""
    return {"sac": AgentConfig, "planet": PlanetConfig, "worldmodels": WorldModelsConfig}


def register_configs() -> None:
    """Register every entry point's schema and every method's config with Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="pretrain_schema", node=PretrainConfig)
    cs.store(name="collect_schema", node=CollectConfig)
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="random_init_schema", node=RandomInitConfig)
    cs.store(name="plan_goal_schema", node=GoalConfig)
    for name, node in agent_configs().items():
        cs.store(group="agent", name=name, node=node)
    for name, cls in METHODS.items():
        cs.store(group="method", name=name, node=cls.Config)
