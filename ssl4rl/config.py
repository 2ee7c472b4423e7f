"""Typed configs: one source of defaults, registered as Hydra structured configs.

``pretrain_schema`` types every key of ``configs/pretrain.yaml`` (so ``steps=abc`` fails with one
line before anything runs) and each method's ``Config`` dataclass is the option ``method=<name>``.
Library code takes these objects; ``dataclasses.asdict`` gives what is saved with a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def register_configs() -> None:
    """Register the schema and every method's config with Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="pretrain_schema", node=PretrainConfig)
    for name, cls in METHODS.items():
        cs.store(group="method", name=name, node=cls.Config)
