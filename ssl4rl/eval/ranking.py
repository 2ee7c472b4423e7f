"""Multi-step ranking of a C-SWM world model (Kipf et al., ICLR 2020, Section 4).

For each evaluation episode: encode o_0, apply z <- z + T(z, a_t) for k steps (k = 1, 5, 10)
and rank the prediction against the encodings of o_k of EVERY evaluation sample (N candidates,
one sample per episode long enough). Reported: Hits@1 (the target is the nearest candidate) and
the mean reciprocal rank, with N.

Two deliberate differences from the reference evaluation:
- ties count AGAINST the model: rank = 1 + the number of candidates at a distance <= the
  target's (the target excluded), so a constant encoder scores Hits@1 = 0 and MRR ~ 1/N (the
  reference breaks ties in the target's favour, so a collapsed encoder would score 100%);
- a candidate whose true object state equals the target's (the episodes' ``states``) is the same
  state, not a competitor: it never counts as better.

Distances are computed in chunks of rows (never an N x N x D tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl4rl.data.episodes import Episode, episode_paths, load_episode
from ssl4rl.errors import UserError
from ssl4rl.worldmodels import load_world_model
from ssl4rl.worldmodels.cswm import CSWM
from ssl4rl.worldmodels.io import META, world_model_meta

STEPS = (1, 5, 10)


def target_ranks(pred: torch.Tensor, target: torch.Tensor, states: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:
    """int64 (N,): the rank of ``target[i]`` among all targets by Euclidean distance to ``pred[i]``
    (rows flattened), ties against the model, same-state candidates excluded (see module doc)."""
    if pred.shape != target.shape or pred.ndim < 2 or len(pred) == 0:
        raise UserError(f"ranking needs predictions and targets of one shape (N, ...), got {tuple(pred.shape)} and "
                        f"{tuple(target.shape)}")
    if chunk < 1:
        raise UserError(f"chunk={chunk}: must be at least 1")
    n = len(pred)
    pred, target = pred.reshape(n, -1).float(), target.reshape(n, -1).float()
    if states is None:
        ids = torch.arange(n)
    else:
        if len(states) != n:
            raise UserError(f"{len(states)} states for {n} ranking samples; give one state per sample")
        ids = torch.unique(torch.as_tensor(states).reshape(n, -1), dim=0, return_inverse=True)[1]
    ranks = torch.empty(n, dtype=torch.int64)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        # exact per-pair differences (no matmul trick): equal rows give exactly equal distances, whatever the chunk
        dist = torch.cdist(pred[rows], target, compute_mode="donot_use_mm_for_euclid_dist").nan_to_num(nan=float("inf"))
        own = dist.gather(1, rows.unsqueeze(1))
        better = (dist <= own) & (ids[rows].unsqueeze(1) != ids.unsqueeze(0))
        ranks[rows] = 1 + better.sum(1)
    return ranks


def ranking_metrics(
    pred: torch.Tensor, target: torch.Tensor, states: torch.Tensor | None = None, chunk: int = 1024
) -> dict[str, float]:
    """Hits@1, MRR and N of predictions ``pred`` against targets ``target`` (N, ...) (see ``target_ranks``)."""
    ranks = target_ranks(pred, target, states, chunk).double()
    return {"hits_at_1": float((ranks == 1).double().mean()), "mrr": float((1 / ranks).mean()), "n": len(ranks)}


@torch.no_grad()
def _encode(model: CSWM, frames: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model.encode(chunk.to(model.encoder.mean.device)).cpu() for chunk in frames.split(batch_size)])


@torch.no_grad()
def _rollout(model: CSWM, z: torch.Tensor, actions: torch.Tensor, batch_size: int) -> torch.Tensor:
    """States (N, K, D) stepped through actions (N, k, A) in batches."""
    dev, out = model.encoder.mean.device, []
    for zc, ac in zip(z.split(batch_size), actions.split(batch_size), strict=True):
        zc, ac = zc.to(dev), ac.to(dev)
        for t in range(ac.shape[1]):
            zc = model.step(zc, ac[:, t])
        out.append(zc.cpu())
    return torch.cat(out)


def evaluate_cswm(
    model: CSWM, episodes: Sequence[Episode], steps: Sequence[int] = STEPS, batch_size: int = 256, chunk: int = 1024
) -> dict[str, Any]:
    """Hits@1 / MRR / N for each horizon in ``steps`` over ``episodes`` (one sample per episode of at
    least k steps; a horizon longer than every episode gives None)."""
    if not episodes:
        raise UserError("no evaluation episodes: collect some with envs/collect.py (e.g. episode_steps=10)")
    if any(int(k) < 1 for k in steps):
        raise UserError(f"ranking steps {list(steps)}: every horizon must be at least 1")
    was_training = model.training
    model.eval()
    results: dict[str, Any] = {}
    for k in steps:
        eps = [e for e in episodes if len(e) >= k]
        if not eps:
            results[str(k)] = None
            continue
        first = torch.from_numpy(np.stack([e.frames[0] for e in eps]))
        later = torch.from_numpy(np.stack([e.frames[k] for e in eps]))
        actions = torch.from_numpy(np.stack([e.actions[:k] for e in eps]).astype(np.float32))
        states = torch.from_numpy(np.stack([e.states[k] for e in eps]))
        pred = _rollout(model, _encode(model, first, batch_size), actions, batch_size)
        results[str(k)] = ranking_metrics(pred, _encode(model, later, batch_size), states, chunk)
    model.train(was_training)
    return {"steps": results, "episodes": len(episodes)}


def cswm_folder(encoder_path: str | Path) -> Path | None:
    """The C-SWM world model saved by the same pretraining run as the encoder at ``encoder_path``, or None."""
    folder = Path(encoder_path).resolve()
    folder = folder.parent if folder.is_file() else folder
    candidate = folder.parent / "worldmodel"
    if not (candidate / META).exists():
        return None
    return candidate if world_model_meta(candidate)["kind"] == CSWM.kind else None


def world_model_ranking(
    encoder_path: str | Path, data_paths: Sequence[str | Path], device: torch.device, out: Path | None = None,
    steps: Sequence[int] = STEPS,
) -> dict[str, Any]:
    """``{"ranking": ...}`` for an encoder whose run saved a C-SWM world model (all episodes of
    ``data_paths``; a latent-trajectory figure in ``out``), else ``{}``."""
    folder = cswm_folder(encoder_path)
    if folder is None:
        return {}
    model: CSWM = load_world_model(folder, device=device, kind=CSWM.kind)  # type: ignore[assignment]
    episodes = [load_episode(p) for d in data_paths for p in episode_paths(d)]
    result = {"worldmodel": str(folder), "data": [str(p) for p in data_paths], **evaluate_cswm(model, episodes, steps)}
    trained_on = world_model_meta(folder).get("data")
    result["trained_on_eval_data"] = any(Path(str(trained_on)).resolve() == Path(p).resolve() for p in data_paths)
    if out is not None:
        result["figure"] = str(plot_latent_trajectories(model, episodes[0], out / f"cswm_latents_{folder.parent.name}.png"))
    return {"ranking": result}


@torch.no_grad()
def plot_latent_trajectories(model: CSWM, episode: Episode, path: str | Path) -> Path:
    """One panel per object slot: its state over the episode as encoded (solid) and as predicted
    open loop from o_0 with the episode's actions (dashed); the first two state dimensions."""
    from ssl4rl.viz import _save_fig, plt

    was_training = model.training
    model.eval()
    frames = torch.from_numpy(episode.frames)
    encoded = _encode(model, frames, 256)
    actions = torch.from_numpy(episode.actions.astype(np.float32))
    z, predicted = encoded[:1], [encoded[0]]
    for t in range(len(actions)):
        z = model.step(z.to(model.encoder.mean.device), actions[t : t + 1].to(model.encoder.mean.device)).cpu()
        predicted.append(z[0])
    model.train(was_training)
    pred = torch.stack(predicted)
    k = encoded.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(2.6 * k, 2.6), squeeze=False)
    for s in range(k):
        ax = axes[0][s]
        for z_path, style, label in ((encoded[:, s], "-o", "encoded"), (pred[:, s], "--x", "predicted")):
            xy = z_path.numpy()
            x, y = (xy[:, 0], xy[:, 1]) if xy.shape[1] > 1 else (np.arange(len(xy)), xy[:, 0])
            ax.plot(x, y, style, markersize=3, linewidth=1, label=label)
        ax.set_title(f"slot {s}", fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"object-slot states over one episode ({len(actions)} steps): encoded vs open-loop prediction",
                 fontsize=8, y=1.04)
    path = Path(path)
    _save_fig(fig, path)
    return path


def ranking_markdown(result: dict[str, Any]) -> str:
    """The ranking table of an evaluation result (rows with ``ranking``), or '' when there is none."""
    rows = [r for r in result["rows"] if r.get("ranking")]
    if not rows:
        return ""
    horizons = list(rows[0]["ranking"]["steps"])
    head = ["representation", "episodes", *(f"{m} {k} step{'s' * (k != '1')}" for k in horizons for m in ("H@1 %", "MRR %")),
            "N"]
    lines = [
        "",
        "C-SWM multi-step ranking: encode o_0, predict k steps with the episode's actions, rank against the "
        "encodings of o_k of every evaluation sample (N per horizon); ties count against the model, candidates "
        "in the target's true state count as correct.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for r in rows:
        rk = r["ranking"]
        cells = [r["name"] + (" (trained on these episodes)" if rk.get("trained_on_eval_data") else ""), str(rk["episodes"])]
        for k in horizons:
            m = rk["steps"][k]
            cells += ["—", "—"] if m is None else [f"{100 * m['hits_at_1']:.1f}", f"{100 * m['mrr']:.1f}"]
        cells.append("/".join("—" if rk["steps"][k] is None else str(rk["steps"][k]["n"]) for k in horizons))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
