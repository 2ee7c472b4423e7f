"""The pretraining loop shared by every SSL method: data, optimiser, hooks, checkpoints, resume, DDP.

The loop draws a raw uint8 ``Batch``, lets the method build its own inputs and loss, steps the
optimiser, then calls the method's ``after_step`` hook (EMA teachers, queues, banks). Held-out
metrics are computed at each checkpoint in eval mode on a fixed batch and never change the
method's state. Under ``torchrun`` each rank draws its own batches, gradients are averaged, and
only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pickle
import time
from pathlib import Path
from typing import Any

import torch

from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.data import dataset_meta, load_split
from ssl4rl.data.sources import MemorySource, StreamSource
from ssl4rl.encoders import Encoder, build_encoder, save_encoder
from ssl4rl.errors import UserError
from ssl4rl.methods import Batch, Method, MethodContext, build_method, method_class
from ssl4rl.optim import build_optimizer, build_scheduler
from ssl4rl.parts import dist
from ssl4rl.runs import claimed_run_dir, log
from ssl4rl.utils import atomic_path, check_memory, load_tensors, progress_bar, resolve_device, seed_everything, write_json
from ssl4rl.worldmodels import save_world_model

CHECKPOINT = "checkpoint.pt"
Source = MemorySource | StreamSource


def open_sources(data: DataConfig, image_size: int, seed: int, batch_size: int) -> tuple[Source, Source, str | None]:
    """(train source, held-out source, env name or None) for ``data``; images resized to ``image_size``."""
    if data.kind == "frames":
        train_eps, val_eps = load_split(data.path, holdout=data.holdout, seed=seed)
        for extra in data.extra_paths:  # other tasks' frames (each split the same way) join the training set
            train_eps += load_split(extra, holdout=data.holdout, seed=seed)[0]
        train = MemorySource.from_episodes(train_eps, image_size, data.positive, data.k)
        val = MemorySource.from_episodes(val_eps, image_size, data.positive, data.k) if val_eps else train
        return train, val, dataset_meta(data.path).get("env")
    if data.positive != "augment":
        raise UserError(
            f"data.positive={data.positive} needs env frame episodes (data.kind=frames), not data.kind={data.kind}; "
            "use data.positive=augment"
        )
    from ssl4rl.data.images import LabelledImages, open_images

    images = open_images(data.kind, data.path, image_size, train=True)
    if isinstance(images, LabelledImages):
        tr, te = images.split(data.holdout, seed) if data.holdout > 0 else (images, images)
        return MemorySource(tr.images, tr.labels), MemorySource(te.images, te.labels), None
    gen = torch.Generator().manual_seed(seed + 7919 * dist.rank())
    train_stream = StreamSource(images, batch_size, gen, data.workers)
    return train_stream, train_stream, None


def check_data_path(data: DataConfig) -> None:
    """One-line UserError when ``data.path`` cannot hold data of ``data.kind`` (checked before a run folder is made)."""
    if data.kind == "frames":
        from ssl4rl.data import episode_paths

        for path in (data.path, *data.extra_paths):
            episode_paths(path)
    elif not Path(data.path).is_dir():
        raise UserError(f"data.path={data.path}: folder not found (data.kind={data.kind}); put the images there first")


def _image_stats(train: Source, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of up to 4096 training images in [0, 1]."""
    batch = train.sample(min(4096, max(1, len(train))), torch.Generator().manual_seed(seed + 3)).images
    x = batch.float() / 255
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-3).tolist()


SAFE_ON_RESUME = ("progress",)  # display only: the result is bit-identical whatever their value


def pretrain(cfg: PretrainConfig, out: str | Path) -> dict[str, Any]:
    """Pretrain ``cfg.method`` on ``cfg.data``; write checkpoints, metrics, figures and the encoder to ``out``.

    ``cfg`` is validated as the command line's settings are, and ``out`` is claimed as the command line claims
    it (a finished run, or a folder another process holds, is refused in one line). Resumes from
    ``out/checkpoint.pt`` when present. Returns the results dict (also ``out/results.json``); the exported
    encoder is saved in ``out/encoder``.
    """
    from omegaconf import OmegaConf

    from ssl4rl.config import validate_config

    validate_config(cfg)
    check_data_path(cfg.data)  # before the folder is made
    if dist.rank() > 0:  # rank 0 holds the folder for every process
        return _pretrain(cfg, Path(out))
    config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    with claimed_run_dir(out, config_yaml, resume_file=CHECKPOINT, safe_keys=SAFE_ON_RESUME) as (folder, _):
        return _pretrain(cfg, folder)


def _pretrain(cfg: PretrainConfig, out: Path) -> dict[str, Any]:
    m = cfg.method
    seed_everything(cfg.seed)
    dev = dist.local_device(resolve_device(cfg.device))
    world, rank = dist.world_size(), dist.rank()
    if m.batch_size % world:
        raise UserError(
            f"method.batch_size={m.batch_size} is not divisible by the {world} processes; choose a multiple of {world}"
        )
    local_bs = m.batch_size // world
    cls = method_class(m.name)
    data = _transition_data(cfg.data, m.name) if cls.needs_transitions else cfg.data
    backbone = dict(cfg.backbone)
    own = cls.own_encoder(m)  # a method that builds its own encoder (C-SWM) ignores backbone=
    arch_name = backbone.pop("arch")
    if own is None:
        _check_model_memory(arch_name, backbone, m.batch_size)
    encoder = own or build_encoder(arch_name, **backbone)
    arch = encoder.arch
    train, val, env = open_sources(data, encoder.image_size, cfg.seed, local_bs)
    action_dim, discrete = train.action_space() if cls.needs_transitions else (0, False)  # type: ignore[union-attr]
    if cls.needs_transitions and not action_dim:
        raise UserError(f"method={m.name} needs the actions between frames, but the episodes in {cfg.data.path} record "
                        "none (action dim 0); collect episodes with actions (envs/collect.py)")
    if len(train) < m.batch_size:
        raise UserError(
            f"{cfg.data.path}: {len(train)} training images, fewer than method.batch_size={m.batch_size}; "
            "collect more data or lower method.batch_size"
        )
    encoder.set_normalization(*_image_stats(train, cfg.seed))
    dist.broadcast_buffers(encoder)  # a streamed source samples differently on each rank: use rank 0's statistics
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * rank)  # each rank draws its own batches
    ctx = MethodContext(
        generator=gen, total_steps=cfg.steps, num_samples=len(train), batch_size=m.batch_size,
        all_batches=lambda: (b.to(dev) for b in train.in_order(256)), action_dim=action_dim, discrete_actions=discrete,
    )
    model = build_method(m, encoder, ctx).to(dev)
    if world > 1 and dev.type == "cuda":  # batch statistics over the whole batch, as the papers' SyncBN
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(model.param_groups(), m.optimizer, m.lr, m.momentum, m.lars_eta)
    sched = build_scheduler(opt, m.warmup, cfg.steps)
    step = _maybe_resume(out / CHECKPOINT, model, opt, sched, gen, cfg)
    step_fn = torch.compile(model.training_step) if cfg.compile else model.training_step
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.amp else contextlib.nullcontext()
    # methods whose state is indexed by training sample (memory bank, pseudo-labels) score a fixed training batch
    held_out = train if type(model).indexes_train_set else val
    val_batch = held_out.sample(min(m.batch_size, len(held_out)), torch.Generator().manual_seed(cfg.seed + 1)).to(dev)
    writer = _writer(out) if rank == 0 else None
    log.info(
        f"pretrain {m.name} ({arch}{', its own encoder: backbone= unused' if own else ''}, "
        f"{sum(p.numel() for p in params) / 1e6:.2f}M trainable params) on "
        f"{len(train)} images ({cfg.data.kind}), batch {m.batch_size} on {world} process(es), device {dev}"
    )
    model.on_train_start()
    t0, logs = time.time(), {}
    bar = progress_bar(
        total=cfg.steps, initial=step, desc=f"pretrain {m.name}", unit="step", disable=not cfg.progress or rank > 0
    )
    model.train()
    while step < cfg.steps:
        batch = train.sample(local_bs, gen).to(dev)
        if cfg.channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss, logs = step_fn(batch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(params)
        opt.step()
        sched.step()
        step += 1
        model.after_step(step)
        bar.update(1)
        if step % cfg.log_every == 0 or step % cfg.ckpt_every == 0 or step == cfg.steps:
            scalars = {k: float(v) for k, v in logs.items()}
            _check_finite(scalars["loss"], step, m.lr, dev)
            if writer is not None:
                for k, v in scalars.items():
                    writer.add_scalar(f"train/{k}", v, step)
                writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
            bar.set_postfix(loss=f"{scalars['loss']:.4f}", refresh=False)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            val_metrics = held_out_metrics(model, val_batch, step, cfg.seed)
            _check_finite(val_metrics["loss"], step, m.lr, dev)  # never checkpoint non-finite weights
            if rank == 0:
                for k, v in val_metrics.items():
                    writer.add_scalar(f"val/{k}", v, step)  # type: ignore[union-attr]
                with fixed_rng(model, cfg.seed):  # figures must not consume the training RNG
                    model.save_figures(val_batch, out, step)
            _save_checkpoint(out / CHECKPOINT, model, opt, sched, gen, step)
            log.info(f"step {step}: train loss {float(logs['loss']):.4f}, held-out {_fmt(val_metrics)}")
    bar.close()
    val_metrics = held_out_metrics(model, val_batch, step, cfg.seed)
    results = {
        "method": m.name,
        "arch": arch,
        "steps": cfg.steps,
        "final_train_loss": float(logs["loss"]) if logs else None,
        "final_val_loss": val_metrics["loss"],
        "val_metrics": val_metrics,
        "seconds_this_session": round(time.time() - t0, 1),
        "images": len(train),
        "processes": world,
    }
    if rank == 0:
        writer.close()  # type: ignore[union-attr]
        enc_dir = save_encoder(
            _cpu_copy(model.export_encoder()), out / "encoder", method=m.name, method_hparams=model.hparams(),
            steps=cfg.steps, data=str(cfg.data.path), data_kind=cfg.data.kind, env=env, val_metrics=val_metrics,
        )
        results["encoder"] = str(enc_dir)
        world_model = model.export_world_model()
        if world_model is not None:
            results["worldmodel"] = str(save_world_model(world_model, out / "worldmodel", method=m.name, steps=cfg.steps,
                                                         data=str(cfg.data.path), env=env, val_metrics=val_metrics))
        write_json(out / "results.json", results)
    return results


def _check_model_memory(arch: str, kwargs: dict[str, Any], batch_size: int) -> None:
    """Refuse a backbone whose weights, gradients and optimizer state (about 4 copies) would not fit in memory,
    counted on the meta device before anything is allocated."""
    with torch.device("meta"):
        probe = build_encoder(arch, **kwargs)
    n = sum(p.numel() for p in probe.parameters())
    check_memory(16 * n, f"backbone {arch} ({n:,} parameters) with its gradients and optimizer state",
                 "choose a smaller backbone (embed_dim, depth, channels)")


def _transition_data(data: DataConfig, method: str) -> DataConfig:
    """The data settings of a method that learns from transitions: env episodes, next frame as the positive."""
    if data.kind != "frames":
        raise UserError(f"method={method} learns from transitions (frame, action, next frame): it needs env episodes "
                        f"(data.kind=frames, from envs/collect.py), not data.kind={data.kind}")
    return dataclasses.replace(data, positive="temporal", k=1)


def _check_finite(loss: float, step: int, lr: float, dev: torch.device) -> None:
    """Stop every process (one line) when any process's loss is not finite."""
    bad = dist.any_true(not math.isfinite(loss), dev)
    if bad:
        raise UserError(f"loss became non-finite at step {step}; lower method.lr (was {lr}) and start a new out=")


@torch.no_grad()
def held_out_metrics(model: Method, batch: Batch, step: int, seed: int) -> dict[str, float]:
    """The method's logs on a fixed held-out batch, in eval mode with a fixed RNG (comparable
    across steps); the method's buffers and the training RNG are left untouched."""
    was_training = model.training
    model.eval()
    with fixed_rng(model, seed):
        _, logs = model.training_step(batch, step)
    model.train(was_training)
    return {k: float(v) for k, v in logs.items()}


@contextlib.contextmanager
def fixed_rng(model: Method, seed: int) -> Any:
    """Give the method a fresh generator (and torch RNG) for evaluation, then restore both."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        old, model.generator = model.generator, torch.Generator().manual_seed(seed + 1)
        try:
            yield
        finally:
            model.generator = old


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _writer(out: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tb"))


def _cpu_copy(encoder: Encoder) -> Encoder:
    import copy

    return copy.deepcopy(encoder).cpu()


def _maybe_resume(path: Path, model: Method, opt: Any, sched: Any, gen: torch.Generator, cfg: PretrainConfig) -> int:
    """Load ``path`` into the run's state if it exists; returns the step to continue from."""
    if not path.exists():
        return 0
    try:
        ck = load_tensors(path)  # RNG states must stay on CPU
        saved_step, saved_method = int(ck["step"]), dict(ck["config"])
    except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError, TypeError):
        raise UserError(f"{path}: not a readable ssl4rl checkpoint; choose a new out= (the folder was left as it is)") from None
    changed = sorted(k for k, v in dataclasses.asdict(cfg.method).items() if saved_method.get(k) != v)
    if changed:
        raise UserError(
            f"{path}: the run was started with other method settings ({', '.join('method.' + k for k in changed)}); "
            "resume with the settings in its config.yaml or choose a new out="
        )
    if saved_step >= cfg.steps and (path.parent / "results.json").exists():
        raise UserError(
            f"out={path.parent} already holds a finished run ({saved_step} steps); choose a new out="
        )
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gens = ck["generators"]
    except (RuntimeError, ValueError, KeyError):
        raise UserError(
            f"{path}: checkpoint does not fit method={cfg.method.name} with this backbone; "
            "resume with the run's original settings (its config.yaml) or choose a new out="
        ) from None
    if gens.shape[0] != dist.world_size():
        raise UserError(
            f"{path}: saved by {gens.shape[0]} process(es), resumed with {dist.world_size()}; resume with the same process count"
        )
    gen.set_state(gens[dist.rank()].clone())  # a row view (storage offset) would crash set_state
    torch.set_rng_state(ck["torch_rng"])
    log.info(f"resumed from {path} at step {saved_step}")
    return saved_step


def _save_checkpoint(path: Path, model: Method, opt: Any, sched: Any, gen: torch.Generator, step: int) -> None:
    """Rank 0 writes model, optimiser, schedule, every rank's generator, the torch RNG and the step."""
    gens = dist.gather_nograd(gen.get_state().unsqueeze(0))
    if dist.rank() != 0:
        return
    state = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "generators": gens,
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "config": dataclasses.asdict(model.cfg),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
