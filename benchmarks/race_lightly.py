"""Race with lightly: speed, peak RSS and kNN parity of ssl4rl against lightly 1.6.0, one process per side.

    python benchmarks/race_lightly.py                      # DMC ImageFolder made on first use
    python benchmarks/race_lightly.py --data DIR           # any ImageFolder (DIR/train + DIR/test, or DIR/<class>)

Both sides get the same backbone (timm ResNet-18 with the 3x3 stride-1 stem for SimCLR, MoCo and
BYOL; a timm ViT, patch 8, dim 192, CLS pooling, for DINO and MAE), heads, loss settings,
optimiser, batch, image size, augmentation parameters, normalisation, torch threads and data.
ssl4rl augments batches on the tensor from images held in memory (no DataLoader: the design
being raced); lightly transforms each PIL image in ``--workers`` DataLoader workers, as its
examples do. Lightly runs in its own venv (``benchmarks/.venv-lightly``, made on first use, or
``--lightly-python``). Results: ``benchmarks/results/race_lightly.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssl4rl  # noqa: F401
from _common import header

import numpy as np
import torch

from ssl4rl.errors import UserError
from ssl4rl.utils import write_json, write_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "_race_worker.py"
LIGHTLY_VENV = HERE / ".venv-lightly"
LIGHTLY_PINS = ("lightly==1.6.0", "torch==2.14.1", "torchvision==0.29.1", "timm==1.0.31")
DMC_ENVS = ("dmc_cartpole", "dmc_walker", "dmc_cheetah", "dmc_reacher", "dmc_finger", "dmc_cup")
DEFAULT_DATA = ROOT / "data" / "race_dmc"
RACE_METHODS = ("simclr", "moco", "byol", "dino", "mae")
VIT_METHODS = ("dino", "mae")
KNN_TEMPERATURE = 0.07


def lightly_python(given: str | None) -> Path:
    """The lightly venv's python: ``given``, or benchmarks/.venv-lightly (created and filled on first use)."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise UserError(f"--lightly-python {given}: not found; give a python with lightly==1.6.0 installed")
        return path
    py = LIGHTLY_VENV / "bin" / "python"
    stamp = LIGHTLY_VENV / ".installed-stamp"
    if not stamp.exists():
        print(f"== creating {LIGHTLY_VENV} with {' '.join(LIGHTLY_PINS)} (once, a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LIGHTLY_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *LIGHTLY_PINS], check=True)
        stamp.touch()
    return py


def prepare_data(data: Path | None, per_class: int, image_size: int, tmp: Path) -> tuple[Path, Path, str]:
    """(train dir, test dir, description): DIR/train + DIR/test, a class-stratified 80/20 split of a
    flat class folder (symlinked under ``tmp``), or the DMC set rendered into data/race_dmc."""
    from ssl4rl.data.images import IMAGE_EXTENSIONS, make_dmc_imagefolder

    if data is None:
        data = DEFAULT_DATA
        if not (data / "meta.json").exists():
            print(f"== rendering {len(DMC_ENVS)} DMC domains x {per_class} train images into {data}", flush=True)
            make_dmc_imagefolder(data, DMC_ENVS, per_class=per_class, image_size=image_size)
        desc = f"DMC frames, class = domain ({', '.join(DMC_ENVS)}), random policy"
    else:
        desc = str(data)
    if not data.is_dir():
        raise UserError(f"--data {data}: folder not found; give an ImageFolder (DIR/<class>/<image> or DIR/train + DIR/test)")
    test = next((data / n for n in ("test", "val") if (data / n).is_dir()), None)
    if (data / "train").is_dir() and test is not None:
        return data / "train", test, desc
    classes = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"--data {data}: no class folders; put images in {data}/<class>/ or {data}/train|test/<class>/")
    g = torch.Generator().manual_seed(0)
    for cls in classes:
        files = sorted(f for f in cls.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        order = torch.randperm(len(files), generator=g).tolist()
        n_test = min(len(files) - 1, max(1, round(0.2 * len(files)))) if len(files) > 1 else 0
        for rank, i in enumerate(order):
            split = "test" if rank < n_test else "train"
            link = tmp / split / cls.name / f"{i:06d}{files[i].suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(files[i].resolve())
    return tmp / "train", tmp / "test", desc + " (80/20 split per class)"


def image_stats(train_dir: Path, image_size: int) -> tuple[list[float], list[float], int]:
    """Per-channel mean/std of the training images in [0, 1] and their count (both sides normalise with these)."""
    from ssl4rl.data.images import load_image_folder

    x = load_image_folder(train_dir, image_size, progress=False).images.float() / 255
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-3).tolist(), len(x)


def backbone_for(method: str, vit_depth: int) -> dict[str, Any]:
    """ssl4rl backbone kwargs (the lightly side builds the same timm network from them)."""
    if method in VIT_METHODS:
        return {"arch": "vit", "patch_size": 8, "embed_dim": 192, "depth": vit_depth, "num_heads": 3, "pool": "cls"}
    return {"arch": "resnet", "depth": 18, "small_stem": True}


def method_spec(method: str, batch: int, vit_depth: int, total_steps: int) -> dict[str, Any]:
    """The parts of a worker spec fixed by the method: ssl4rl's recipe, the optimiser and the lr
    schedule it builds for ``total_steps`` (the lightly side applies the same multipliers)."""
    from ssl4rl.methods import default_config
    from ssl4rl.optim import build_optimizer, cosine_with_warmup

    cfg = default_config(method, batch_size=batch)
    probe = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}], cfg.optimizer, cfg.lr, cfg.momentum)
    return {
        "method": method,
        "overrides": {"batch_size": batch},
        "total_steps": total_steps,
        "config": dataclasses.asdict(cfg),
        "backbone": backbone_for(method, vit_depth),
        "optimizer": {
            "name": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "momentum": cfg.momentum,
            "warmup": cfg.warmup, "betas": list(probe.defaults.get("betas", (0.9, 0.999))),
            "lr_scale": [cosine_with_warmup(s, cfg.warmup, total_steps) for s in range(total_steps)],
        },
    }


def run_worker(python: Path, lib: str, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run one side in its own process; returns its result dict (raises with its stderr tail on failure)."""
    tag = f"{lib}_{spec['method']}_{spec['mode']}_{spec['seed']}"
    spec_path, result_path = tmp / f"{tag}.spec.json", tmp / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT) if lib == "ssl4rl" else "", "OMP_NUM_THREADS": str(spec["threads"])}
    t = time.perf_counter()
    proc = subprocess.run(
        [str(python), str(WORKER), "--lib", lib, str(spec_path), str(result_path)],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{tag} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(result_path.read_text())
    result["wall_s"] = time.perf_counter() - t
    print(f"   {tag}: {result['wall_s']:.0f} s", flush=True)
    return result


def knn_scores(features: Path, ks: list[int]) -> dict[str, float]:
    """Weighted kNN top-1 accuracy (cosine, T=0.07; ssl4rl.eval.knn) of saved train/test features."""
    from ssl4rl.eval.knn import knn_accuracy

    load = lambda name: torch.from_numpy(np.load(features / f"{name}.npy", allow_pickle=False))
    train_x, train_y, test_x, test_y = (load(n) for n in ("train_x", "train_y", "test_x", "test_y"))
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    return {f"k{k}": knn_accuracy(train_x, train_y, test_x, test_y, k, KNN_TEMPERATURE, n_classes) for k in ks}


def speed_row(method: str, sides: dict[str, dict[str, Any]], batch: int) -> dict[str, Any]:
    """Images/s (whole step, model step) and peak RSS of both sides, with ratios ssl4rl / lightly."""
    row: dict[str, Any] = {"method": method}
    for lib, r in sides.items():
        row[lib] = {
            "images_per_s_whole": batch * len(r["whole_step_s"]) / sum(r["whole_step_s"]),
            "images_per_s_model": batch * len(r["model_step_s"]) / sum(r["model_step_s"]),
            "median_whole_step_s": statistics.median(r["whole_step_s"]),
            "median_model_step_s": statistics.median(r["model_step_s"]),
            "peak_rss_mib": r["peak_rss_mib"],
            "workers_peak_rss_mib": r["workers_peak_rss_mib"],
        }
    s, li = row["ssl4rl"], row["lightly"]
    row["ratio"] = {
        "whole": s["images_per_s_whole"] / li["images_per_s_whole"],
        "model": s["images_per_s_model"] / li["images_per_s_model"],
        "peak_rss": s["peak_rss_mib"] / li["peak_rss_mib"],
    }
    return row


def mean_std(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.1f} ± {100 * (statistics.stdev(values) if len(values) > 1 else 0.0):.1f}"


def markdown(results: dict[str, Any], head: str) -> str:
    """The results as markdown tables under ``head``."""
    a = results["settings"]
    lines = [
        head,
        f"- data: {a['data']} ({a['train_images']} train / {a['test_images']} test images, {a['image_size']} px)",
        f"- batch {a['batch']}, {a['threads']} torch threads per process, lightly DataLoader workers {a['workers']} "
        "(ssl4rl: none, batched augmentation on in-memory images)",
        f"- speed: {a['warmup']} warm-up steps, then {a['timed']} timed whole steps and {a['timed']} timed model steps "
        "(one fixed batch of views); images/s counts source images per step",
        "",
    ]
    for line in results["skipped"]:
        lines.append(f"- skipped: {line}")
    if results["speed"]:
        lines += [
            "| method | backbone | img/s whole ssl4rl | lightly | ratio | img/s model ssl4rl | lightly | ratio "
            "| peak RSS MiB ssl4rl | lightly (+ worker peak) | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results["speed"]:
            s, li, q = r["ssl4rl"], r["lightly"], r["ratio"]
            lines.append(
                f"| {r['method']} | {r['backbone']} | {s['images_per_s_whole']:.1f} | {li['images_per_s_whole']:.1f} "
                f"| **{q['whole']:.2f}x** | {s['images_per_s_model']:.1f} | {li['images_per_s_model']:.1f} "
                f"| {q['model']:.2f}x | {s['peak_rss_mib']:.0f} | {li['peak_rss_mib']:.0f} "
                f"(+{li['workers_peak_rss_mib']:.0f}) | {q['peak_rss']:.2f}x |"
            )
    if results["knn"]:
        ks = list(results["knn"][0]["ssl4rl"])
        lines += [
            "",
            f"kNN top-1 % (cosine, T={KNN_TEMPERATURE}, backbone features, mean ± std over seeds "
            f"{a['seeds']}) after {a['knn_steps']} steps:",
            "",
            "| method | " + " | ".join(f"ssl4rl {k} | lightly {k}" for k in ks) + " | train s ssl4rl | lightly |",
            "|---|" + "---|---|" * len(ks) + "---|---|",
        ]
        for r in results["knn"]:
            cells = " | ".join(f"{mean_std(r['ssl4rl'][k])} | {mean_std(r['lightly'][k])}" for k in ks)
            lines.append(
                f"| {r['method']} | {cells} | {statistics.mean(r['train_s']['ssl4rl']):.0f} "
                f"| {statistics.mean(r['train_s']['lightly']):.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="an ImageFolder (default: DMC frames in data/race_dmc)")
    p.add_argument("--per-class", type=int, default=200, help="train images per DMC domain when making the default set")
    p.add_argument("--methods", nargs="+", default=list(RACE_METHODS), choices=RACE_METHODS)
    p.add_argument("--knn-methods", nargs="*", default=["simclr", "byol"], choices=RACE_METHODS)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch threads in each side's main process")
    p.add_argument("--workers", type=int, default=2, help="lightly's DataLoader workers")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timed", type=int, default=10)
    p.add_argument("--knn-steps", type=int, default=20, help="training steps before the kNN evaluation (0: no kNN)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--vit-depth", type=int, default=4)
    p.add_argument("--lightly-python", default=None,
                   help="python of an env with lightly==1.6.0 (default: made in benchmarks/.venv-lightly)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    a = p.parse_args()
    for name in ("batch", "image_size", "threads", "timed", "per_class"):
        if getattr(a, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(a, name)}: must be at least 1")
    if a.warmup < 0 or a.knn_steps < 0 or a.workers < 0:
        raise UserError("--warmup, --knn-steps and --workers must be >= 0")
    from ssl4rl.methods import METHODS

    python = lightly_python(a.lightly_python)
    t_start = time.perf_counter()
    results: dict[str, Any] = {"speed": [], "knn": [], "skipped": []}
    with tempfile.TemporaryDirectory(prefix="race_lightly_") as tmp_name:
        tmp = Path(tmp_name)
        train_dir, test_dir, desc = prepare_data(a.data, a.per_class, a.image_size, tmp / "split")
        mean, std, n_train = image_stats(train_dir, a.image_size)
        n_test = sum(1 for f in test_dir.rglob("*") if f.is_file() or f.is_symlink())
        if n_train < a.batch:
            raise UserError(f"{train_dir}: {n_train} training images, fewer than --batch {a.batch}; lower --batch")
        common = {
            "train_dir": str(train_dir), "test_dir": str(test_dir), "image_size": a.image_size, "mean": mean, "std": std,
            "threads": a.threads, "workers": a.workers, "warmup": a.warmup, "timed": a.timed, "knn_steps": a.knn_steps,
        }
        results["settings"] = {
            "data": desc, "train_images": n_train, "test_images": n_test, "image_size": a.image_size, "batch": a.batch,
            "threads": a.threads, "workers": a.workers, "warmup": a.warmup, "timed": a.timed, "knn_steps": a.knn_steps,
            "seeds": a.seeds, "lightly": "1.6.0", "torch": torch.__version__,
        }
        runnable = []
        for m in dict.fromkeys([*a.methods, *a.knn_methods]):
            if m in METHODS:
                runnable.append(m)
            else:
                results["skipped"].append(f"{m}: not registered in ssl4rl.methods yet; rerun when it is")
                print(f"== skip {m}: not registered in ssl4rl.methods yet; rerun when it is", flush=True)
        speed_steps = a.warmup + 2 * a.timed + 1  # warm-up, whole steps, the recording step, model steps
        pythons = {"ssl4rl": Path(sys.executable), "lightly": python}
        for m in (m for m in a.methods if m in runnable):
            print(f"== speed {m}", flush=True)
            spec = {**common, **method_spec(m, a.batch, a.vit_depth, speed_steps), "mode": "speed", "seed": 0}
            row = speed_row(m, {lib: run_worker(py, lib, spec, tmp) for lib, py in pythons.items()}, a.batch)
            row["backbone"] = spec["backbone"]["arch"] + ("18" if spec["backbone"]["arch"] == "resnet" else f"-d{a.vit_depth}")
            results["speed"].append(row)
        ks = [20] + ([200] if n_train >= 2000 else [])
        for m in (m for m in a.knn_methods if m in runnable and a.knn_steps > 0):
            print(f"== kNN {m}: {a.knn_steps} steps x seeds {a.seeds}", flush=True)
            row = {"method": m, "ssl4rl": {}, "lightly": {}, "train_s": {"ssl4rl": [], "lightly": []}}
            for seed in a.seeds:
                for lib, py in pythons.items():
                    features = tmp / f"features_{lib}_{m}_{seed}"
                    features.mkdir()
                    spec = {**common, **method_spec(m, a.batch, a.vit_depth, a.knn_steps), "mode": "knn", "seed": seed,
                            "features_dir": str(features)}
                    r = run_worker(py, lib, spec, tmp)
                    row["train_s"][lib].append(r["train_s"])
                    for k, acc in knn_scores(features, ks).items():
                        row[lib].setdefault(k, []).append(acc)
            results["knn"].append(row)
    results["settings"]["total_minutes"] = round((time.perf_counter() - t_start) / 60, 1)
    head = header("Race with lightly 1.6.0: ssl4rl / lightly, each side in its own process")
    text = markdown(results, head)
    write_json(a.out / "race_lightly.json", results)
    write_text(a.out / "race_lightly.md", text)
    print(text)
    print(f"(written to {a.out / 'race_lightly.md'} and .json; {results['settings']['total_minutes']} min)")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"error: {e}")
