"""Collapse-proof evaluation of latent world models, an offline trainer, and prediction videos.

Open-loop k-step prediction: each evaluation window filters ``context`` true frames, then the model
imagines ``max(ks)`` steps with the prior, given the true actions. What is scored at each k:

- ``r2``: a ridge probe (``ssl4rl.eval.probe.ridge_probe``; alpha picked on train episodes) from the
  predicted latent to the TRUE physical state of that future frame, fit on train sequences and scored on
  held-out ones. A collapsed model (constant latents) scores R² <= 0: this is the number to trust.
- ``cosine``: mean cosine between the predicted embedding and the encoder's embedding of the true frame
  (``model.predict_embedding`` / ``model.target_embedding``), next to ``cosine_constant``: the same for a
  constant prediction, the train frames' mean embedding. An encoder that collapsed scores high on both.
- ``psnr``: of the decoded prediction against the true frame, for models with a decoder.

The model is duck-typed (the RSSM and test doubles implement it): ``prepare(frames) -> dict`` of per-frame
inputs, ``open_loop(obs, actions, context) -> (B, k, D)``, optionally ``predict_embedding``,
``target_embedding``, ``decode`` with ``has_decoder``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssl4rl.data import Episode, SequenceDataset
from ssl4rl.errors import UserError
from ssl4rl.eval.probe import ridge_probe
from ssl4rl.utils import progress_bar
from ssl4rl.viz import save_gif
from ssl4rl.worldmodels.rssm import STEP_KEYS, EpisodeBuffer, buffer_from_episodes

Data = EpisodeBuffer | SequenceDataset | Sequence[Episode]


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1]: ``10 log10(1 / MSE)``."""
    mse = float(F.mse_loss(pred.float(), target.float()))
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))


def as_buffer(model: Any, data: Data) -> EpisodeBuffer:
    """An ``EpisodeBuffer`` (what the model reads per frame) from a buffer, a ``SequenceDataset`` or episodes."""
    if isinstance(data, EpisodeBuffer):
        return data
    if isinstance(data, SequenceDataset):
        store, buf = data.store, EpisodeBuffer()
        for e, (start, stop) in enumerate(zip(store.offsets[:-1], store.offsets[1:], strict=True)):
            buf.add({**model.prepare(store.frames[start:stop]), "states": store.states[start:stop].float(),
                     "actions": store.actions[e].float(), "rewards": store.rewards[e].float()})
        return buf
    return buffer_from_episodes(model, data)


def train_offline(model: Any, data: Data, steps: int, batch_size: int = 16, length: int | None = None, lr: float = 1e-3,
                  seed: int = 0, progress: bool = True, grad_clip: float = 1000.0) -> list[dict[str, float]]:
    """``steps`` updates of ``model`` on sequence batches of ``data`` (frozen features computed once);
    ``length`` defaults to the ``SequenceDataset``'s, else 32. Returns each step's loss terms."""
    if steps < 1 or batch_size < 1:
        raise UserError(f"steps={steps}, batch_size={batch_size}: each must be at least 1")
    length = length or (data.length if isinstance(data, SequenceDataset) else 32)
    buf = as_buffer(model, data)
    gen = torch.Generator().manual_seed(seed)
    opt = model.make_optimizer(lr)
    logs = []
    bar = progress_bar(total=steps, desc=f"train {model.kind}", unit="step", disable=not progress)
    for _ in range(steps):
        logs.append(model.update(buf.sample(batch_size, length, gen), opt, gen, grad_clip))
        bar.update(1)
        bar.set_postfix(loss=f"{logs[-1]['loss']:.3g}", refresh=False)
    bar.close()
    model.eval()
    return logs


class Windows:
    """Open-loop predictions over evaluation windows: ``feats`` (N, k, D), the true ``states`` (N, k, S)
    and per-frame inputs ``obs`` (N, k, ...) of the predicted frames, and ``groups`` (N,) episode ids."""

    def __init__(self, model: Any, buf: EpisodeBuffer, context: int, horizon: int, stride: int, batch: int = 256) -> None:
        picks = [(e, start) for e, ep in enumerate(buf.episodes)
                 for start in range(0, len(ep["actions"]) + 1 - context - horizon + 1, stride)]
        if not picks:
            raise UserError(f"no episode has the {context + horizon} frames an open-loop window of context {context} and "
                            f"horizon {horizon} needs; use shorter ks or context")
        n = context + horizon
        keys = [k for k in buf.episodes[0] if k not in STEP_KEYS]
        feats, obs = [], {k: [] for k in keys}
        for i in range(0, len(picks), batch):
            chunk = picks[i: i + batch]
            window = {k: torch.stack([buf.episodes[e][k][s: s + n] for e, s in chunk]) for k in keys}
            actions = torch.stack([buf.episodes[e]["actions"][s: s + n - 1] for e, s in chunk])
            model_obs = {k: v for k, v in window.items() if k != "states"}
            feats.append(model.open_loop(model_obs, actions, context).float().cpu())
            for k in keys:
                obs[k].append(window[k][:, context:])
        self.feats = torch.cat(feats)
        self.obs = {k: torch.cat(v) for k, v in obs.items()}
        self.states = self.obs.pop("states").double().numpy() if "states" in self.obs else None
        self.groups = np.asarray([e for e, _ in picks])


def _split(buf: EpisodeBuffer) -> tuple[EpisodeBuffer, EpisodeBuffer]:
    """Alternate episodes into (train, held-out)."""
    if len(buf) < 2:
        raise UserError(f"{len(buf)} episode(s): the state probe needs at least 2 (train and held-out), or pass train_data")
    train, test = EpisodeBuffer(), EpisodeBuffer()
    for i, ep in enumerate(buf.episodes):
        (test if i % 2 else train).add(ep)
    return train, test


@torch.no_grad()
def evaluate_world_model(model: Any, data: Data, ks: Sequence[int] = (1, 5, 10), train_data: Data | None = None,
                         context: int = 5, stride: int | None = None) -> dict[str, Any]:
    """Open-loop k-step metrics (module docstring) on held-out ``data``; the state probe is fit on ``train_data``
    (default: every other episode of ``data``, scored on the rest). ``stride``: steps between window starts
    (default ``max(ks)``). Returns JSON-able lists aligned with ``ks``."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or context < 1:
        raise UserError(f"ks={list(ks)}, context={context}: need steps k >= 1 and context >= 1")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    buf = as_buffer(model, data)
    train_buf, test_buf = (as_buffer(model, train_data), buf) if train_data is not None else _split(buf)
    horizon, stride = ks[-1], stride or ks[-1]
    train, test = (Windows(model, b, context, horizon, stride) for b in (train_buf, test_buf))
    out: dict[str, Any] = {"ks": ks, "context": context, "windows_train": len(train.feats), "windows_test": len(test.feats)}
    if train.states is not None and test.states is not None:
        out["r2"] = [ridge_probe(train.feats[:, k - 1].numpy(), train.states[:, k - 1], test.feats[:, k - 1].numpy(),
                                 test.states[:, k - 1], groups=train.groups)["r2"] for k in ks]
    if hasattr(model, "predict_embedding"):
        dev = _device(model)
        constant = model.target_embedding(_to(train.obs, dev)).flatten(0, 1).mean(0)
        out["cosine"], out["cosine_constant"] = [], []
        for k in ks:
            target = model.target_embedding(_to({n: v[:, k - 1] for n, v in test.obs.items()}, dev))
            pred = model.predict_embedding(test.feats[:, k - 1].to(dev))
            out["cosine"].append(float(F.cosine_similarity(pred, target, dim=-1).mean()))
            out["cosine_constant"].append(float(F.cosine_similarity(constant.expand_as(target), target, dim=-1).mean()))
    if getattr(model, "has_decoder", False) and "frames" in test.obs:
        dev = _device(model)
        out["psnr"] = [psnr(model.decode(test.feats[:, k - 1].to(dev)).cpu(), test.obs["frames"][:, k - 1].float() / 255)
                       for k in ks]
    if was_training:
        model.train()
    return out


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _to(obs: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in obs.items()}


@torch.no_grad()
def prediction_video(model: Any, frames: torch.Tensor | np.ndarray, actions: torch.Tensor | np.ndarray, path: str | Path,
                     context: int = 5, pool: torch.Tensor | np.ndarray | None = None, fps: int = 10,
                     scale: int = 2) -> dict[str, Any]:
    """GIF of the real frames (left) next to the open-loop prediction (right) for one episode: ``frames``
    (T+1, 3, H, W) uint8 and ``actions`` (T, A). The prediction is decoded, or for decoder-free models the
    nearest real frame in embedding space among ``pool`` (uint8 frames; default: this episode's frames).
    The first ``context`` frames are filtered, the rest imagined. Returns what was written."""
    model.eval()
    frames, actions = torch.as_tensor(frames), torch.as_tensor(actions).float()
    if len(frames) <= context:
        raise UserError(f"an episode of {len(frames)} frames is too short for a prediction video after {context} context frames")
    dev = _device(model)
    obs = {k: v[None] for k, v in model.prepare(frames).items()}
    feats = model.open_loop(obs, actions[None], context)[0]
    if getattr(model, "has_decoder", False):
        predicted = (model.decode(feats).cpu() * 255).round().to(torch.uint8)
        how = "decoded"
    else:
        pool = frames if pool is None else torch.as_tensor(pool)
        pool_obs = _to(model.prepare(pool), dev)
        keys = torch.cat([model.target_embedding({k: v[i: i + 512] for k, v in pool_obs.items()})
                          for i in range(0, len(pool), 512)])
        sims = F.normalize(model.predict_embedding(feats), dim=-1) @ F.normalize(keys, dim=-1).t()
        predicted = pool[sims.argmax(1).cpu()]
        how = f"nearest of {len(pool)} real frames in embedding space"
    real = frames[context:]
    size = real.shape[-1]
    if predicted.shape[-1] != size:
        predicted = F.interpolate(predicted.float(), size=(size, size), mode="nearest").to(torch.uint8)
    pair = torch.cat([real, torch.full_like(real[..., :2], 255), predicted], -1)  # white gap between the two
    pair = pair.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    save_gif(path, list(pair.permute(0, 2, 3, 1).numpy()), fps=fps)
    return {"path": str(path), "frames": len(real), "context": context, "prediction": how}
