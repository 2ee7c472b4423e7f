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
        from ssl4rl.encoders import check_backbone_config

        check_backbone_config(self.backbone, "backbone.")


AUGMENTS = ("none", "shift", "crop")  # pixel SAC: none | DrQ's random shift | CURL's random crop (centre crop to act)
ENCODER_MODES = ("frozen", "finetune", "decoupled")
AUX_POSITIVES = ("augment", "temporal")


def _cpu_conv() -> dict[str, Any]:
    """The CPU-sized pixel encoder (configs/backbone/conv_cpu.yaml): 3 stride-2 3x3 convs, 16 channels, 64 px."""
    return {"arch": "conv", "image_size": 64, "channels": 16, "feature_dim": 50, "layers": 3, "stride2": 3}


def _paper_conv() -> dict[str, Any]:
    """CURL's and DrQ's encoder: 4 3x3 convs (the first of stride 2), 32 channels, 84 px."""
    return {"arch": "conv", "image_size": 84, "channels": 32, "feature_dim": 50, "layers": 4, "stride2": 1}


@dataclass
class AgentConfig:
    """SAC (Stable-Baselines3) and its pixel variants: ``agent=sac | drq | curl`` (+ ``_paper``: the papers' GPU sizes).

    ``agent=sac`` reads frozen cached features (or true state); with ``encoder=scratch`` or ``encoder_mode=finetune``
    it trains a pixel encoder through the critic without augmentation. ``drq`` adds the random shift and Q averaged
    over augmentations (K target, M critic views); ``curl`` adds CURL's contrastive loss with the EMA key encoder.
    """

    name: str = setting("sac", choices=lambda: tuple(AGENT_PRESETS))
    learning_rate: float = setting(3e-4, gt=0, le=1)
    buffer_size: int = setting(100_000, ge=1, le=10**9)  # transitions (memory is checked before it is allocated)
    learning_starts: int = setting(1000, ge=0)  # agent steps of random actions before updates
    batch_size: int = setting(256, ge=1, le=65_536)
    tau: float = setting(0.01, ge=0, le=1)  # EMA rate of the critic target's Q networks
    gamma: float = setting(0.99, ge=0, le=1)
    train_freq: int = setting(1, ge=1)
    gradient_steps: int = setting(1, ge=1, le=10_000)
    ent_coef: str = setting("auto", check=_ent_coef)  # auto, auto_<init> or a number
    net_arch: list[int] = setting(factory=lambda: [256, 256], ge=1, le=65_536)  # hidden widths (every item >= 1)
    proj_dim: int = setting(64, ge=0, le=65_536)  # per-frame LayerNorm + linear projection of frozen features (0 = off)
    # --- pixel agents (encoder trained: encoder=scratch, or encoder_mode=finetune|decoupled) ---
    backbone: dict[str, Any] = field(default_factory=_cpu_conv)  # encoder=scratch: the per-frame encoder built
    augment: str = setting("none", choices=AUGMENTS)
    pad: int = setting(4, ge=0, le=64)  # shift: replicate-pad then crop back; crop: frames rendered 2*pad larger
    target_k: int = setting(1, ge=1, le=16)  # K: augmentations of the next observation the Q target averages
    critic_m: int = setting(1, ge=1, le=16)  # M: augmentations of the observation the critic loss averages
    encoder_tau: float = setting(0.05, ge=0, le=1)  # EMA rate of the critic target's (CURL: key) encoder
    actor_every: int = setting(1, ge=1, le=10_000)  # updates between actor and temperature updates (DrQ, CURL: 2)
    target_every: int = setting(1, ge=1, le=10_000)  # updates between target EMA updates (DrQ, CURL: 2)
    curl_weight: float = setting(0.0, ge=0)  # CURL's contrastive loss beside the critic's (0: off)

    def check(self) -> None:
        """The backbone's options against its architecture; K and M only mean something with an augmentation."""
        from ssl4rl.encoders import check_backbone_config

        check_backbone_config(self.backbone, "agent.backbone.")
        if self.augment == "none" and (self.target_k > 1 or self.critic_m > 1):
            raise UserError(f"agent.target_k={self.target_k}, agent.critic_m={self.critic_m}: averaging over augmentations "
                            "needs agent.augment=shift or crop")


# agent=<name>: SAC's presets. CPU defaults: 64 px, the CPU-sized conv, batch 64, 256-wide MLPs (DrQ: 113 ms per update
# on 2 cores, ~25 min of updates for cartpole's 12.5k; batch 128 takes 297 ms, as its activations leave the cache), and
# the papers' settings for a GPU: 84 px, the 32-channel 4-layer conv, batch 512, 1024-wide MLPs.
_PIXEL = {"learning_rate": 1e-3, "batch_size": 64, "tau": 0.01, "encoder_tau": 0.05, "actor_every": 2,
          "target_every": 2, "ent_coef": "auto_0.1", "learning_starts": 1000}
_PAPER = {"backbone": _paper_conv(), "net_arch": [1024, 1024], "batch_size": 512}
AGENT_PRESETS: dict[str, dict[str, Any]] = {
    "sac": {},
    "drq": {**_PIXEL, "augment": "shift", "target_k": 2, "critic_m": 2},  # Kostrikov et al. 2020, K = M = 2
    "curl": {**_PIXEL, "augment": "shift", "curl_weight": 1.0},  # Laskin et al. 2020; shift at 64 px (crop: _paper)
    "drq_paper": {**_PIXEL, **_PAPER, "augment": "shift", "target_k": 2, "critic_m": 2},
    "curl_paper": {**_PIXEL, **_PAPER, "augment": "crop", "pad": 8, "curl_weight": 1.0},  # render 100, crop 84
}
PIXEL_AGENTS = ("drq", "curl", "drq_paper", "curl_paper")  # train their encoder by default


@dataclass
class PPOConfig:
    """Stable-Baselines3 PPO (``agent=ppo``) on frozen features or with a fine-tuned encoder (SB3's defaults)."""

    name: str = "ppo"
    learning_rate: float = setting(3e-4, gt=0, le=1)
    n_steps: int = setting(1000, ge=2, le=10**7)  # agent steps per env per rollout (runs end on a whole rollout)
    batch_size: int = setting(100, ge=2, le=65_536)
    n_epochs: int = setting(10, ge=1, le=1000)
    gamma: float = setting(0.99, ge=0, le=1)
    gae_lambda: float = setting(0.95, ge=0, le=1)
    clip_range: float = setting(0.2, gt=0, le=10)
    ent_coef: float = setting(0.0, ge=0)
    vf_coef: float = setting(0.5, ge=0)
    max_grad_norm: float = setting(0.5, gt=0)
    net_arch: list[int] = setting(factory=lambda: [256, 256], ge=1, le=65_536)
    proj_dim: int = setting(64, ge=0, le=65_536)  # frozen features: per-frame LayerNorm + projection (0 = off)
    backbone: dict[str, Any] = field(default_factory=_cpu_conv)  # encoder=scratch: the per-frame encoder built


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

    agent: Any = None  # agent=sac | drq | curl | ppo | planet | worldmodels (each its typed config; default sac)
    out: str = "runs/train/${env}/${now:%Y%m%d-%H%M%S}"
    env: str = setting("dmc_cartpole", choices=_env_names)
    # None: the agent's default (sac, ppo: mvp; drq, curl, planet: scratch; worldmodels: vae); the names each agent
    # takes besides a saved encoder folder are in ssl4rl.resolve.ENCODERS
    encoder: Optional[str] = None
    # how the encoder learns (sac/drq/curl/ppo). None: finetune for encoder=scratch and drq/curl, else frozen.
    # frozen: features cached once per env step; finetune: the critic (and aux) losses train it; decoupled: only aux
    encoder_mode: Optional[str] = setting(None, choices=ENCODER_MODES)
    encoder_lr_mult: float = setting(1.0, ge=0, le=1000)  # finetune: the encoder's lr = agent lr x this
    encoder_warmup: int = setting(0, ge=0, le=MAX_RUN_STEPS)  # finetune: env steps before the encoder starts to train
    aux: Optional[str] = setting(None, choices=lambda: tuple(aux_methods()))  # an SSL method as an auxiliary loss
    aux_positive: str = setting("augment", choices=AUX_POSITIVES)  # augment: two views of a frame; temporal: frame k later
    aux_k: int = setting(3, ge=1, le=10_000)  # temporal positives: agent steps later in the same episode (ATC: 3)
    aux_weight: float = setting(1.0, ge=0, le=1e6)  # the aux loss's weight beside the critic loss
    aux_every: int = setting(1, ge=1, le=10_000)  # updates between aux updates
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


def aux_methods() -> dict[str, type]:
    """The ssl4rl methods an agent can use as an auxiliary loss: those that learn from a positive pair."""
    return {name: cls for name, cls in METHODS.items() if cls.pairs}


def agent_configs() -> dict[str, Any]:
    """``agent=<name>`` -> its typed config (SAC's presets: an ``AgentConfig`` with that preset's defaults)."""
    sac = {name: AgentConfig(name=name, **preset) for name, preset in AGENT_PRESETS.items()}
    return {**sac, "ppo": PPOConfig(), "planet": PlanetConfig(), "worldmodels": WorldModelsConfig()}


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
