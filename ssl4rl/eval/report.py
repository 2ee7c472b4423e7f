"""The probe report: an encoder next to its two baselines, as JSON and markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssl4rl.data import dataset_meta, load_split
from ssl4rl.encoders import build_encoder, encoder_meta, load_encoder
from ssl4rl.eval.probe import encoder_featurizer, pixel_featurizer, probe_features
from ssl4rl.runs import log
from ssl4rl.utils import resolve_device, seed_everything


def probe_report(
    encoder_path: str | Path,
    data_path: str | Path,
    holdout: float = 0.2,
    seed: int = 0,
    pixels_size: int = 16,
    batch_size: int = 256,
    device: str = "auto",
) -> dict[str, Any]:
    """Probe R² of the encoder, a random init of the same architecture, and raw pixels."""
    seed_everything(seed)
    dev = resolve_device(device)
    meta = encoder_meta(encoder_path)
    encoder = load_encoder(encoder_path, device=dev)
    train, test = load_split(data_path, holdout=holdout, seed=seed)
    if not test:
        from ssl4rl.errors import UserError

        raise UserError(f"{data_path}: need at least 2 episodes to hold one out for the probe")
    random_enc = build_encoder(meta["arch"], **meta["kwargs"]).to(dev).eval()
    candidates = {
        f"{meta['method']} ({meta['arch']})": encoder_featurizer(encoder, batch_size),
        f"random init ({meta['arch']})": encoder_featurizer(random_enc, batch_size),
        f"raw pixels {pixels_size}x{pixels_size}": pixel_featurizer(pixels_size),
    }
    rows = []
    for name, featurize in candidates.items():
        with torch.inference_mode():
            res = probe_features(featurize, train, test)
        log.info(f"probe {name}: held-out R² {res['r2']:.3f} (dim {res['feature_dim']}, alpha {res['alpha']:g})")
        rows.append({"name": name, **res})
    dmeta = dataset_meta(data_path)
    return {
        "encoder": str(encoder_path),
        "data": str(data_path),
        "env": dmeta.get("env"),
        "train_episodes": len(train),
        "test_episodes": len(test),
        "test_frames": int(sum(len(e.frames) for e in test)),
        "state_names": dmeta.get("state_names") or [f"s{i}" for i in range(len(rows[0]["r2_per_dim"]))],
        "rows": rows,
    }


def markdown_table(report: dict[str, Any]) -> str:
    """Two tables: mean R² per representation, then R² per state dimension."""
    rows = report["rows"]
    lines = [
        f"State-regression probe on {report.get('env')} ({report['train_episodes']} train / "
        f"{report['test_episodes']} held-out episodes, {report['test_frames']} held-out frames)",
        "",
        "| representation | feature dim | held-out R² (mean) |",
        "|---|---|---|",
    ]
    lines += [f"| {r['name']} | {r['feature_dim']} | {r['r2']:.3f} |" for r in rows]
    lines += ["", "| state dim | " + " | ".join(r["name"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for i, name in enumerate(report["state_names"]):
        lines.append(f"| {name} | " + " | ".join(_fmt(r["r2_per_dim"][i]) for r in rows) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "n/a (constant)" if v is None else f"{v:.3f}"
