"""Typed configs: one source of defaults and of the range of every value, registered as Hydra structured configs.

``<entry>_schema`` types every key of ``configs/<entry>.yaml`` (so ``steps=abc`` fails with one line
before anything runs) and each method's ``Config`` dataclass is the option ``method=<name>``. Each
field declares its range or choices beside its default (``ssl4rl.fields.setting``); ``validate_config``
refuses a value outside them with one line, on every path: any override, ``-m`` sweeps, the Python API.
Library code takes these objects; ``dataclasses.asdict`` gives what is saved with a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ssl4rl.errors import UserError
from ssl4rl.data.collect import CollectConfig
from ssl4rl.fields import MAX_RUN_STEPS, device_field, seed_field, setting, validate
from ssl4rl.methods import METHODS, MethodConfig

DATA_KINDS = ("frames", "imagefolder", "cifar10", "stl10")
POSITIVES = ("augment", "temporal")
VEC_ENVS = ("dummy", "subproc")


def _env_names() -> tuple[str, ...]:
    from ssl4rl.envs import env_names

    return env_names()


def _planners() -> tuple[str, ...]:
    from ssl4rl.planning import PLANNERS

    return tuple(PLANNERS)


def _objectives() -> tuple[str, ...]:
    from ssl4rl.worldmodels import rssm

    return tuple(rssm.OBJECTIVES)


def _ent_coef(value: str) -> str | None:
    """SB3's entropy coefficient: auto, auto_<initial value> or a fixed number, every number finite and > 0."""
    number = value[5:] if value.startswith("auto_") else None if value == "auto" else value
    try:
        ok = number is None or 0 < float(number) < float("inf")
    except ValueError:
        ok = False
    return None if ok else "must be auto, auto_<initial value > 0> or a number > 0 (e.g. 0.1)"


@dataclass
class DataConfig:
    """Where pretraining images come from."""

    path: str = "???"  # env frames folder (envs/collect.py), an ImageFolder, or a CIFAR-10 / STL-10 folder
    kind: str = setting("frames", choices=DATA_KINDS)
    extra_paths: list[str] = field(default_factory=list)  # frames only: more episode folders mixed into training
    holdout: float = setting(0.2, ge=0, le=0.9)  # frames: episodes held out (same split as the probe); images: fraction
    positive: str = setting("augment", choices=POSITIVES)  # augment (two views of one image) | temporal (frame k later)
    k: int = setting(3, ge=1, le=10_000)  # temporal offset in agent steps
    workers: int = setting(2, ge=0, le=64)  # DataLoader workers when a large image set is streamed


@dataclass
class PretrainConfig:
    """Settings of one pretraining run (the method's own recipe is in ``method``)."""

    method: Any = field(default_factory=MethodConfig)
    backbone: dict[str, Any] = field(default_factory=lambda: {"arch": "vit"})
    data: DataConfig = field(default_factory=DataConfig)
    out: str = "runs/pretrain/run"
    steps: int = setting(2000, ge=1, le=MAX_RUN_STEPS)  # optimizer steps
    seed: int = seed_field()
    device: str = device_field()
    progress: bool = True
    log_every: int = setting(50, ge=1)
    ckpt_every: int = setting(500, ge=1)  # checkpoint + held-out metrics + figures; a rerun with the same out= resumes
    amp: bool = False  # bfloat16 autocast (GPU fast path)
    channels_last: bool = False
    compile: bool = False  # torch.compile the training step

    def check(self) -> None:
        """The backbone's options against its architecture's declared ranges."""
        from ssl4rl.encoders import check_backbone

        backbone = dict(self.backbone)
        arch = backbone.pop("arch", None)
        if not isinstance(arch, str):
            raise UserError(f"backbone.arch={arch}: must name an architecture, e.g. backbone=vit_tiny")
        check_backbone(arch, backbone, "backbone.")


@dataclass
class AgentConfig:
    """Stable-Baselines3 SAC hyper-parameters (DrQ/CURL-like defaults): ``agent=sac``."""

    name: str = "sac"
    learning_rate: float = setting(3e-4, gt=0, le=1)
    buffer_size: int = setting(100_000, ge=1, le=10**9)  # transitions (memory is checked before it is allocated)
    learning_starts: int = setting(1000, ge=0)  # agent steps of random actions before updates
    batch_size: int = setting(256, ge=1, le=65_536)
    tau: float = setting(0.01, ge=0, le=1)
    gamma: float = setting(0.99, ge=0, le=1)
    train_freq: int = setting(1, ge=1)
    gradient_steps: int = setting(1, ge=1, le=10_000)
    ent_coef: str = setting("auto", check=_ent_coef)  # auto, auto_<init> or a number
    net_arch: list[int] = setting(factory=lambda: [256, 256], ge=1, le=65_536)  # hidden widths (every item >= 1)
    proj_dim: int = setting(64, ge=0, le=65_536)  # per-frame LayerNorm + linear projection of frozen features (0 = off)


@dataclass
class PlanetConfig:
    """PlaNet's settings (``agent=planet``); defaults sized for a laptop CPU, PlaNet's values in comments."""

    name: str = "planet"
    seed_episodes: int = setting(5, ge=1, le=10_000)  # S: random-action episodes before the first update (PlaNet 5)
    updates_per_episode: int = setting(100, ge=1, le=100_000)  # C: model updates before each planned episode (100)
    batch_size: int = setting(32, ge=1, le=4096)  # sequences per update (PlaNet 50)
    seq_len: int = setting(32, ge=2, le=10_000)  # frames per sequence (PlaNet 50)
    lr: float = setting(1e-3, gt=0, le=1)  # Adam learning rate (eps 1e-4), PlaNet's
    grad_clip: float = setting(1000.0, gt=0)  # global gradient-norm clip (PlaNet 1000)
    deter: int = setting(200, ge=1, le=8192)  # deterministic GRU state (PlaNet 200)
    stoch: int = setting(30, ge=1, le=4096)  # stochastic Gaussian state (PlaNet 30)
    hidden: int = setting(200, ge=1, le=8192)  # MLP width (PlaNet 200)
    depth: int = setting(16, ge=1, le=512)  # channels of the scratch encoder's first conv layer and the decoder's last
    free_nats: float = setting(3.0, ge=0)  # KL below this many nats is not penalised (PlaNet 3)
    decoder_size: int = setting(32, ge=16, le=128)  # px of the recon decoder, and of scratch frames if image_size unset
    planner: str = setting("cem", choices=_planners)  # cem | mppi
    horizon: int = setting(12, ge=1, le=1000)  # planning horizon in agent steps (PlaNet 12)
    candidates: int = setting(300, ge=1)  # action sequences per iteration (PlaNet 1000, a GPU setting); memory checked
    iterations: int = setting(5, ge=1, le=1000)  # refits per decision (PlaNet 10)
    top_k: int = setting(30, ge=0)  # elite sequences (PlaNet 100); mppi: 0 weighs all candidates
    temperature: float = setting(1.0, gt=0)  # mppi only: softmax temperature over the predicted returns
    exploration_noise: float = setting(0.3, ge=0, le=10)  # std of the noise on planned actions while collecting (0.3)
    video_context: int = setting(5, ge=1, le=1000)  # frames filtered before the open-loop part of prediction.gif

    def check(self) -> None:
        """CEM refits to between 1 and ``candidates`` elites; MPPI takes 0 (all) up to ``candidates``."""
        low = 1 if self.planner == "cem" else 0
        if not low <= self.top_k <= self.candidates:
            raise UserError(f"agent.top_k={self.top_k}: {self.planner} takes {low} up to agent.candidates="
                            f"{self.candidates} elite sequences")


TRAIN_IN = ("dream", "real")  # agent=worldmodels: where CMA-ES scores controllers
PROJECT = ("pca", "none")  # agent=worldmodels, frozen encoder: how features become z


@dataclass
class WorldModelsConfig:
    """Sizes of the V-M-C pipeline (defaults: the paper's V and M, a CMA-ES budget for ~15 minutes on 2 CPU cores)."""

    name: str = "worldmodels"
    z_dim: int = setting(32, ge=1, le=4096)  # V: latent size (the VAE's z; PCA components of a frozen encoder's features)
    project: str = setting("pca", choices=PROJECT)  # frozen encoder only: pca (z_dim components) | none (every feature)
    holdout: float = setting(0.1, ge=0.01, le=0.5)  # fraction of the random episodes held out (validation, figure)
    vae_steps: int = setting(1500, ge=1)  # VAE optimizer steps (the paper: 10 epochs of its data)
    vae_batch: int = setting(64, ge=1, le=65_536)  # frames per VAE batch
    vae_lr: float = setting(1e-3, gt=0, le=1)  # Adam
    kl_tolerance: float = setting(0.5, ge=0)  # free bits: the KL is not pushed below kl_tolerance * z_dim nats (paper)
    hidden: int = setting(256, ge=1, le=8192)  # M: LSTM units (paper)
    mixtures: int = setting(5, ge=1, le=256)  # M: Gaussians per latent dimension (paper)
    m_steps: int = setting(1500, ge=1)  # M optimizer steps
    m_batch: int = setting(32, ge=1, le=65_536)  # M: sequences per batch
    seq_len: Optional[int] = setting(None, ge=2, le=100_000)  # M: training sequence length (None: whole episodes)
    m_lr: float = setting(1e-3, gt=0, le=1)  # Adam, gradients clipped at norm 1 (paper)
    reward_weight: float = 1.0  # M: weight of the reward MSE beside the mixture NLL (nats per dimension)
    train_in: str = setting("dream", choices=TRAIN_IN)  # where CMA-ES scores controllers: dream (inside M) | real
    temperature: float = setting(1.15, ge=0, le=100)  # tau of dream rollouts (0: the mixture mode)
    dream_horizon: Optional[int] = setting(None, ge=1, le=100_000)  # dream length in agent steps (None: the env's)
    sigma0: float = setting(0.1, gt=0)  # CMA-ES initial step size; the controller starts at zero
    popsize: int = setting(64, ge=3, le=100_000)  # dream: CMA-ES population (paper)
    rollouts: int = setting(16, ge=1, le=100_000)  # dream: rollouts per candidate, same starts and noise for each (16)
    generations: int = setting(200, ge=1)  # dream: CMA-ES generations
    real_popsize: int = setting(16, ge=3, le=100_000)  # real: CMA-ES population
    real_rollouts: int = setting(1, ge=1, le=10_000)  # real: episodes per candidate, the same env seeds for each
    real_generations: int = setting(40, ge=1)  # real: CMA-ES generations
    real_check_every: int = 20  # generations between real-env episodes of the ES mean (curve points; 0: none)
    dream_eval: int = setting(64, ge=1, le=100_000)  # dream rollouts that evaluate the final controller
    random_m: bool = False  # also train and evaluate a C on an untrained M (the control), reported beside
    ckpt_updates: int = setting(250, ge=1)  # V and M optimizer steps between checkpoints (CMA-ES: every generation)


@dataclass
class TrainConfig:
    """Settings of ``agents/train.py``."""

    agent: Any = None  # agent=sac | planet | worldmodels (each its own typed config; the defaults list picks sac)
    out: str = "runs/train/${env}/${now:%Y%m%d-%H%M%S}"
    env: str = setting("dmc_cartpole", choices=_env_names)
    # None: the agent's default (sac: mvp, planet: scratch, worldmodels: vae). sac: mvp | state | random | cnn | a
    # saved encoder folder; planet: scratch | mvp | a folder; worldmodels: vae | mvp | a folder
    encoder: Optional[str] = None
    objective: Optional[str] = setting(None, choices=_objectives)  # world-model agents: recon | contrastive | barlow
    runs_root: str = "runs"
    steps: int = setting(100_000, ge=1, le=MAX_RUN_STEPS)  # ENVIRONMENT steps (agent steps x action repeat)
    frame_stack: int = setting(3, ge=1, le=16)
    image_size: Optional[int] = setting(None, ge=16, le=1024)  # default: the encoder's own image size (84 for cnn)
    n_envs: int = setting(1, ge=1, le=64)
    vec_env: str = setting("dummy", choices=VEC_ENVS)
    eval_every: int = setting(20_000, ge=0)  # environment steps between evaluations (5 episodes); 0: none
    ckpt_every: int = setting(10_000, ge=1)  # environment steps between checkpoints
    eval_episodes: int = setting(10, ge=1, le=100_000)
    video: bool = True
    seed: int = seed_field()
    device: str = device_field()
    progress: bool = True


@dataclass
class EvalDataConfig:
    path: Any = "???"  # frames: a folder from envs/collect.py, or several [a,b] (labels = which dataset)
    kind: str = setting("frames", choices=DATA_KINDS)
    holdout: float = setting(0.2, ge=0, le=0.9)  # frames: fraction of episodes held out
    image_size: Optional[int] = setting(None, ge=16, le=1024)  # image sets are loaded at this size (None: the largest)


@dataclass
class EvalConfig:
    """Settings of ``pretrain/eval.py``."""

    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    out: str = "runs/eval/${now:%Y%m%d-%H%M%S}"
    encoder: str = "mvp"  # a saved encoder folder, or mvp (latest MAE encoder under runs/)
    encoders: Optional[list[str]] = None  # several: encoders=[dirA,dirB] or encoders=dirA,dirB (replaces encoder=)
    runs_root: str = "runs"
    steps: Optional[int] = None  # unused by evaluation (a uniform CLI)
    knn_k: list[int] = setting(factory=lambda: [20, 200], ge=1, le=100_000)  # kNN neighbours (clipped to the train size)
    knn_temperature: float = setting(0.07, gt=0)  # kNN votes weighted exp(cosine / T)
    # linear probe and kNN on these fractions of the labels
    label_fractions: list[float] = setting(factory=lambda: [0.01, 0.1], gt=0, lt=1)
    label_state: Optional[str] = None  # frames, one dataset: state variable binned into classes (None: first pose dim)
    n_bins: int = setting(4, ge=2, le=1000)  # ... into this many quantile bins
    finetune: bool = False  # also fine-tune each encoder end to end (slow on a CPU)
    finetune_epochs: int = setting(3, ge=1, le=10_000)
    pixels_size: int = setting(16, ge=1, le=256)  # raw-pixel baseline: images downsampled to this size
    batch_size: int = setting(256, ge=1, le=65_536)
    seed: int = seed_field()
    device: str = device_field()
    progress: bool = True


@dataclass
class RandomInitConfig:
    """Settings of ``pretrain/random_init.py``."""

    like: str = "???"
    runs_root: str = "runs"
    out: str = "runs/random/${now:%Y%m%d-%H%M%S}"
    steps: Optional[int] = None  # unused (a uniform CLI)
    seed: int = seed_field()
    device: str = device_field()
    progress: bool = True


GOAL_PLANNERS = ("auto", "exhaustive", "cem")  # auto: exhaustive for discrete actions at horizon <= 2, else CEM


@dataclass
class GoalConfig:
    """Settings of ``agents/plan_goal.py`` (goal-image planning in a world model's latent space)."""

    env: str = setting("shapes2d", choices=_env_names)  # shapes2d | cubes3d | dmc_reacher
    worldmodel: str = "???"  # a world-model folder (model.json), or a run folder holding worldmodel/
    out: str = "runs/goal/${env}/${now:%Y%m%d-%H%M%S}"
    goals: int = setting(50, ge=1, le=1_000_000)
    goal_image: Optional[str] = None  # plan from goal 0's start towards this image (.png or .npy) instead
    goal_steps_min: int = setting(5, ge=1, le=10_000)  # block envs: the goal is where this many to max random moves lead
    goal_steps_max: int = setting(10, ge=1, le=10_000)
    planner: str = setting("auto", choices=GOAL_PLANNERS)  # auto (exhaustive if discrete at horizon <= 2, else CEM)
    horizon: Optional[int] = setting(None, ge=1, le=1000)  # None: 2 for discrete actions, 10 for continuous
    candidates: int = setting(300, ge=1)  # memory checked before planning
    iterations: int = setting(5, ge=1, le=1000)
    top_k: int = setting(30, ge=1)
    random_control: bool = True  # also run a uniformly random policy on the same goals
    videos: int = setting(3, ge=0, le=1000)  # goals recorded as videos
    steps: Optional[int] = None  # unused (a uniform CLI)
    seed: int = seed_field()
    device: str = device_field()
    progress: bool = True

    def check(self) -> None:
        """The goal distance range must not be empty; CEM's elites fit in its candidates."""
        if self.goal_steps_min > self.goal_steps_max:
            raise UserError(f"goal_steps_min={self.goal_steps_min} > goal_steps_max={self.goal_steps_max}; "
                            "give goal_steps_min <= goal_steps_max")
        if self.top_k > self.candidates:
            raise UserError(f"top_k={self.top_k} > candidates={self.candidates}; give top_k <= candidates")


ENTRY_CONFIGS: dict[str, type] = {"pretrain": PretrainConfig, "collect": CollectConfig, "train": TrainConfig,
                                  "eval": EvalConfig, "random_init": RandomInitConfig, "plan_goal": GoalConfig}


def validate_config(cfg: Any) -> Any:
    """Validate an entry point's config (a dataclass, or a Hydra/OmegaConf node of one) against every field's
    declared range, nested method, agent and backbone settings included; returns it as dataclass objects.
    One UserError line names the first bad value."""
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(cfg) if OmegaConf.is_config(cfg) else cfg
    validate(obj)
    return obj


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
