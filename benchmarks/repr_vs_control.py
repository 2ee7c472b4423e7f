"""Representation vs control: every method pretrained on one fixed frame set, then probed (state
R², pose and velocity) and used frozen by SAC on cartpole_swingup for 100k env steps.

    python benchmarks/repr_vs_control.py                      # all stages, 1 seed
    python benchmarks/repr_vs_control.py --stages pretrain --device cuda --pack enc.tgz   # on a GPU machine
    python benchmarks/repr_vs_control.py --stages control report --seeds 0 1 2 --methods simclr byol random

The frame set: cartpole swingup and balance episodes (random swingup frames never show the pole up)
plus walker episodes, 64 px. Every method trains the same tiny ViT (64 px, patch 8, dim 128, depth 4)
for the same number of steps (1000) at the same batch (64), with its own recipe otherwise. The control
readout keeps position: the ViT's features are its CLS token plus the patch tokens average-pooled onto
a 2x2 grid (640-d per frame; SAC sees the last 3 frames). Every stage skips what is already done, so an interrupted benchmark
continues where it stopped when rerun with the same --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, run

# name -> pretrain overrides ("random" is the untrained ViT)
METHODS: dict[str, list[str]] = {
    "mae": ["method=mae"],
    "simclr": ["method=simclr"],
    "moco": ["method=moco"],
    "byol": ["method=byol"],
    "dino": ["method=dino"],
    "barlow": ["method=barlow"],
    "simclr_temporal": ["method=simclr", "data.positive=temporal", "data.k=3"],
    "rotation": ["method=rotation"],
    "random": [],
}
EXTRA = ["balance", "walker"]  # mixed into training beside swingup


def data_config(out: Path) -> list[str]:
    """The pretraining data overrides: every frame set of ``ssl4rl.demo.FRAME_SET``."""
    return [f"data.path={out}/data/swingup", f"data.extra_paths=[{','.join(f'{out}/data/{n}' for n in EXTRA)}]"]


def collect(out: Path, log: Path) -> None:
    from ssl4rl.demo import FRAME_SET

    for name, (env, episodes) in FRAME_SET.items():
        if not (out / "data" / name / "meta.json").exists():
            run(["envs/collect.py", f"env={env}", f"episodes={episodes}", "image_size=64", f"out={out}/data/{name}"], log)


def encoder_dir(out: Path, method: str, seed: int) -> Path:
    return out / "pretrain" / f"{method}_s{seed}" / "encoder"


def pretrain(out: Path, methods: list[str], steps: int, batch: int, seed: int, device: str, log: Path) -> dict[str, float]:
    seconds = {}
    data = data_config(out)
    for m in methods:
        enc = encoder_dir(out, m, seed)
        if (enc / "encoder.json").exists():
            continue
        if m == "random":
            _save_random_encoder(out, enc, seed)
            continue
        seconds[m] = run(["pretrain/run.py", *METHODS[m], *data, "backbone=vit_tiny", f"steps={steps}",
                          f"method.batch_size={batch}", f"seed={seed}", f"device={device}", f"out={enc.parent}"], log)
    return seconds


def _save_random_encoder(out: Path, enc: Path, seed: int) -> None:
    """The untrained ViT, normalised exactly as pretraining normalises (statistics of the same training
    frames, all three sets). Until 2026-11-25 22:00 it used swingup's statistics alone, which differ
    (std 0.09 vs 0.10-0.14); those results are kept as random_swingupnorm."""
    import torch

    import ssl4rl  # noqa: F401
    from ssl4rl.config import DataConfig
    from ssl4rl.encoders import build_encoder, save_encoder
    from ssl4rl.pretrain import _image_stats, open_sources

    torch.manual_seed(seed)
    encoder = build_encoder("vit", image_size=64)
    data = DataConfig(path=str(out / "data" / "swingup"), extra_paths=[str(out / "data" / n) for n in EXTRA])
    train, _, _ = open_sources(data, 64, seed, 64)
    encoder.set_normalization(*_image_stats(train, seed))
    save_encoder(encoder, enc, method="random")


def probe(out: Path, methods: list[str], seed: int, log: Path) -> None:
    folder = out / f"probe_s{seed}"
    if (folder / "eval.json").exists():
        return
    encs = ",".join(str(encoder_dir(out, m, seed)) for m in methods)
    run(["pretrain/eval.py", f"encoders=[{encs}]", f"data.path={out}/data/swingup", f"out={folder}", f"seed={seed}"], log)


def control(out: Path, methods: list[str], env_steps: int, seeds: list[int], log: Path, state: bool, wait: bool) -> None:
    for seed in seeds:
        for m in methods:
            folder = out / "control" / f"{m}_s{seed}"
            if (folder / "results.json").exists():
                continue
            enc = encoder_dir(out, m, 0)  # one encoder per method; seeds vary the agent
            while wait and not (enc / "encoder.json").exists():  # a pretrain stage running beside this one
                time.sleep(20)
            run(["agents/train.py", "env=dmc_cartpole", f"encoder={enc}", f"steps={env_steps}", f"seed={seed}",
                 "video=false", f"out={folder}"], log)
        if state and not (out / "control" / f"state_s{seed}" / "results.json").exists():
            run(["agents/train.py", "env=dmc_cartpole", "encoder=state", f"steps={env_steps}", f"seed={seed}",
                 "video=false", f"out={out}/control/state_s{seed}"], log)


def report(out: Path, methods: list[str], seeds: list[int]) -> str:
    """The results table: probe R² (velocity by the linear and the kernel probe, 95% bootstrap intervals over
    held-out episodes, ranks tied where intervals overlap), SAC return, and the velocity ceiling of a perfect
    pose encoder (both probes fed the true pose of frames t-2..t)."""
    import numpy as np

    from ssl4rl.eval.report import CEILING, RANK_LEGEND, ceiling_cells, main_metrics, metric_intervals, probe_cells

    probe_rows, ceiling = {}, None
    if (out / "probe_s0" / "eval.json").exists():
        evaluation = json.loads((out / "probe_s0" / "eval.json").read_text())
        for row in evaluation["rows"]:
            probe_rows[Path(row["encoder"]).parent.name.rsplit("_s", 1)[0] if row.get("encoder") else row["name"]] = row
        ceiling = (evaluation.get("datasets") or [{}])[0].get("ceiling")
    keys = ["pose R²", "velocity R²", "velocity R² (kernel)"]
    probed = [m for m in methods if m in probe_rows]
    cells = dict(zip(probed, probe_cells([main_metrics(probe_rows[m]) for m in probed],
                                         [metric_intervals(probe_rows[m]) for m in probed], keys), strict=True))
    lines = ["| representation | pose R² | velocity R² (3 frames, linear) | velocity R² (3 frames, kernel) | "
             "SAC return, 100k env steps | seeds | RL min |",
             "|---|---|---|---|---|---|---|"]
    for m in [*methods, "state"]:
        rets, mins = [], []
        for s in seeds:
            f = out / "control" / f"{m}_s{s}" / "results.json"
            if f.exists():
                r = json.loads(f.read_text())
                rets.append(r["eval_return_mean"])
                episode_std = r["eval_return_std"]
                mins.append(r["rl_seconds"] / 60)
        probe = " | ".join(cells.get(m, ["—"] * len(keys)))
        # over seeds; with one seed, the spread over its 10 evaluation episodes
        ret = (f"{np.mean(rets):.1f} ± {np.std(rets):.1f}" if len(rets) > 1
               else f"{rets[0]:.1f} ± {episode_std:.1f} (10 ep)" if rets else "—")
        lines.append(f"| {m} | {probe} | {ret} | {len(rets)} | {np.mean(mins):.1f} |" if mins
                     else f"| {m} | {probe} | — | 0 | — |")
    if ceiling:
        lines.append(f"| {CEILING} | " + " | ".join(ceiling_cells([ceiling], keys)) + " | — | — | — |")
    return "\n".join([*lines, "", RANK_LEGEND])


def pack(out: Path, dest: Path) -> None:
    """Archive what later stages need from pretraining (encoders, results, logs; no checkpoints), small
    enough to bring back from a GPU machine: a ViT encoder is about 4 MB."""
    import tarfile

    with tarfile.open(dest, "w:gz") as tar:
        for run_dir in sorted((out / "pretrain").iterdir()):
            for name in ("encoder", "results.json", "log.txt", "config.yaml"):
                if (run_dir / name).exists():
                    tar.add(run_dir / name, arcname=f"pretrain/{run_dir.name}/{name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench-repr-control")
    p.add_argument("--stages", nargs="+", default=["collect", "pretrain", "probe", "control", "report"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64, help="pretraining batch, the same for every method")
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--no-state", action="store_true", help="skip the true-state SAC oracle")
    p.add_argument("--wait", action="store_true",
                   help="control: wait for each encoder (run beside a --stages pretrain process; use 1 thread each)")
    p.add_argument("--pack", help="after pretraining, archive encoders and results (no checkpoints) to this .tgz")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench.log"
    if "collect" in a.stages:
        collect(out, log)
    if "pretrain" in a.stages:
        secs = pretrain(out, a.methods, a.pretrain_steps, a.batch, 0, a.device, log)
        print("pretrain seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()), flush=True)
        if a.pack:
            pack(out, Path(a.pack))
    if "probe" in a.stages:
        probe(out, a.methods, 0, log)
    if "control" in a.stages:
        control(out, a.methods, a.env_steps, a.seeds, log, state=not a.no_state, wait=a.wait)
    if "report" in a.stages:
        table = report(out, a.methods, a.seeds)
        text = header("Representation vs control: cartpole_swingup, frozen features + SAC") + "\n" + table + "\n"
        print(text)
        (out / "report.md").write_text(text)


if __name__ == "__main__":
    main()
