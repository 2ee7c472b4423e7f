"""The pretraining loop shared by every SSL method: data, optimiser, checkpoints, resume."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from ssl4rl.augment import random_shift
from ssl4rl.data import FrameDataset, dataset_meta, load_split
from ssl4rl.encoders import build_encoder, save_encoder
from ssl4rl.errors import UserError
from ssl4rl.runs import log
from ssl4rl.ssl import build_method
from ssl4rl.utils import atomic_path, progress_bar, resolve_device, seed_everything, write_json

CHECKPOINT = "checkpoint.pt"


def pretrain(
    data_path: str | Path,
    out: str | Path,
    method: str = "mae",
    method_kwargs: dict[str, Any] | None = None,
    backbone: dict[str, Any] | None = None,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup: int = 100,
    shift_pad: int = 4,
    holdout: float = 0.2,
    log_every: int = 50,
    ckpt_every: int = 500,
    seed: int = 0,
    device: str = "auto",
    amp: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain ``method`` on the frames in ``data_path``; write checkpoints and the encoder to ``out``.

    Resumes from ``out/checkpoint.pt`` when present. Returns the results dict
    (also ``out/results.json``); the encoder is saved in ``out/encoder``.
    """
    out = Path(out)
    if steps < 1:
        raise UserError(f"steps={steps}: pretrain for at least one optimizer step")
    seed_everything(seed)
    dev = resolve_device(device)
    backbone = dict(backbone or {"arch": "vit"})
    arch = backbone.pop("arch")
    train_eps, val_eps = load_split(data_path, holdout=holdout, seed=seed)
    encoder = build_encoder(arch, **backbone)
    train = FrameDataset(train_eps, image_size=encoder.image_size)
    val = FrameDataset(val_eps, image_size=encoder.image_size) if val_eps else train
    x01 = train.frames[:: max(1, len(train) // 4096)].float() / 255
    encoder.set_normalization(x01.mean((0, 2, 3)).tolist(), x01.std((0, 2, 3)).clamp_min(1e-3).tolist())
    gen = torch.Generator().manual_seed(seed)
    model = build_method(method, encoder, generator=gen, **(method_kwargs or {})).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_with_warmup(s, warmup, steps))
    step = 0
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # RNG states must stay on CPU
        if int(ck["step"]) >= steps and (out / "results.json").exists():
            raise UserError(
                f"out={out} already holds a finished run ({ck['step']} steps); "
                f"choose a new out= or a larger steps= to continue it"
            )
        try:
            model.load_state_dict(ck["model"])
        except RuntimeError:
            raise UserError(
                f"{ckpt_path}: checkpoint does not fit method={method} with this backbone; "
                "resume with the run's original settings (its config.yaml) or choose a new out="
            ) from None
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        log.info(f"resumed from {ckpt_path} at step {step}")
    step_fn = torch.compile(model.training_step) if compile else model.training_step
    autocast = (
        torch.autocast(dev.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    )
    vis_batch = encoder.preprocess(val.frames[torch.linspace(0, len(val) - 1, 8).long()].to(dev))
    writer = SummaryWriter(str(out / "tb"))
    log.info(
        f"pretrain {method} ({arch}, {sum(p.numel() for p in params) / 1e6:.2f}M params) on "
        f"{len(train)} frames ({len(train_eps)} episodes, {len(val_eps)} held out), device {dev}"
    )
    t0, logs = time.time(), {}
    bar = progress_bar(total=steps, initial=step, desc=f"pretrain {method}", unit="step", disable=not progress)
    model.train()
    while step < steps:
        batch = train.sample(batch_size, gen).to(dev, non_blocking=True)
        images = random_shift(encoder.preprocess(batch), shift_pad, gen)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss, logs = step_fn(images)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr= (was {lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if step % log_every == 0 or step == steps:
            for k, v in logs.items():
                writer.add_scalar(f"train/{k}", v, step)
            writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
        if step % ckpt_every == 0 or step == steps:
            val_loss = _val_loss(model, val, encoder, batch_size, seed)
            writer.add_scalar("val/loss", val_loss, step)
            with _fixed_masks(model, seed):  # figures must not consume the training RNG
                model.save_figures(vis_batch, out, step)
            _save_checkpoint(ckpt_path, model, opt, sched, gen, step)
            log.info(f"step {step}: train loss {logs['loss']:.4f}, held-out loss {val_loss:.4f}")
    bar.close()
    writer.close()
    meta = dataset_meta(data_path)
    enc_dir = save_encoder(
        encoder.cpu(),
        out / "encoder",
        method=method,
        method_hparams=model.hparams(),
        steps=steps,
        data=str(data_path),
        env=meta.get("env"),
    )
    results = {
        "method": method,
        "arch": arch,
        "steps": steps,
        "final_train_loss": logs.get("loss"),
        "final_val_loss": _val_loss(model.cpu(), val, encoder, batch_size, seed),
        "seconds_this_session": round(time.time() - t0, 1),
        "encoder": str(enc_dir),
        "frames": len(train),
    }
    write_json(out / "results.json", results)
    return results


def _cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def _val_loss(model: torch.nn.Module, val: FrameDataset, encoder: torch.nn.Module, batch_size: int, seed: int) -> float:
    """Held-out loss on a fixed batch (fixed masks), comparable across steps."""
    with _fixed_masks(model, seed) as g:
        model.eval()
        idx = torch.randint(len(val), (min(batch_size, len(val)),), generator=g)
        loss, _ = model.training_step(encoder.preprocess(val.frames[idx]))
        model.train()
    return float(loss.item())


@contextlib.contextmanager
def _fixed_masks(model: Any, seed: int) -> Any:
    """Give the method a fresh generator (and torch RNG) for evaluation, then restore both."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        g = torch.Generator().manual_seed(seed + 1)
        old, model.generator = getattr(model, "generator", None), g
        try:
            yield g
        finally:
            model.generator = old


def _save_checkpoint(path: Path, model: Any, opt: Any, sched: Any, gen: torch.Generator, step: int) -> None:
    state = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
