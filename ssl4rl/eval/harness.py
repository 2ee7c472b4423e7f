"""The evaluation harness: every metric that applies to the data, for several encoders at once.

``evaluate(encoders, data, kind=...)`` compares each saved encoder with a random init of
its architecture and with raw pixels (downsampled to ``pixels_size``):

- env frames (``kind='frames'``, folders made by ``envs/collect.py``, split by episode):
  R² of the physical state by a linear and an RBF kernel ridge probe, pose from one frame and
  velocity from frames t-2..t, each with a 95% bootstrap interval over held-out episodes
  (``ssl4rl.eval.probe``), per dataset, beside the velocity ceiling of each dataset (the same
  probes fed the true pose of frames t-2..t); plus kNN and linear probes on free labels.
  Tables rank representations by a probe R² only where the intervals do not overlap.
- labelled images (``imagefolder``, ``cifar10``, ``stl10``, via ``ssl4rl.data.images``):
  kNN (k = 20, 200), linear top-1, both with 1% and 10% of the train labels, and
  (``finetune=True``, off by default: slow on a CPU) end-to-end fine-tuning.

Labels for free on env frames: with several datasets the class is the dataset (which
task/domain a frame comes from); with one dataset the class is the quantile bin
(``n_bins``, default 4) of one state variable (``label_state``: a state name such as
``position[0]``, default the first pose dimension), with bin edges from the train frames.
Fine-tuning on frames skips the horizontal flip (it would mirror positions).

An encoder saved by a C-SWM run (a ``worldmodel/`` of kind ``cswm`` next to it) is also ranked
(``ssl4rl.eval.ranking``): Hits@1 and MRR at 1, 5 and 10 predicted steps over every episode of the
frame folders (a separate evaluation set, e.g. ``envs/collect.py ... episode_steps=10``).

The encoder's own pretext score: ``val_metrics`` in its ``encoder.json`` (held-out metrics
recorded by pretraining), reported as is.

With ``out`` given, writes ``eval.json``, ``eval.md`` (one row per representation),
``eval_bars.png`` (main metrics) and ``eval_projection.png`` (PCA of test features,
coloured by label); for one frame dataset also ``probe.json`` / ``probe.md`` (state R²).
"""

from __future__ import annotations

import contextlib

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssl4rl.data import dataset_meta, load_split, resize_frames
from ssl4rl.data.datasets import FrameDataset
from ssl4rl.encoders import Encoder, encoder_meta, load_encoder, random_like
from ssl4rl.errors import UserError
from ssl4rl.runs import claimed_run_dir
from ssl4rl.eval.finetune import finetune as finetune_encoder
from ssl4rl.eval.knn import DEFAULT_TEMPERATURE, knn_accuracy
from ssl4rl.eval.linear import linear_probe, stratified_split
from ssl4rl.eval.plots import bar_chart, projection_plot
from ssl4rl.eval.probe import (
    encoder_featurizer,
    pixel_featurizer,
    pose_ceiling,
    quantile_bin_labels,
    state_probe,
    velocity_dims,
)
from ssl4rl.eval.ranking import ranking_markdown, world_model_ranking
from ssl4rl.eval.report import eval_markdown, main_metrics, markdown_table, probe_json
from ssl4rl.runs import log
from ssl4rl.utils import check_memory, resolve_device, write_json, write_text

PROJECTION_POINTS = 2000


@dataclass
class Representation:
    """A way to turn uint8 images (N,3,H,W) into CPU features (N, D); ``encoder`` if trainable."""

    name: str
    featurize: Callable[[torch.Tensor], torch.Tensor]
    encoder: Encoder | None = None
    path: str | None = None
    pretext: dict[str, Any] | None = None


@dataclass
class Labelled:
    """uint8 images with class labels, as lists of blocks (one per frame dataset, else one)."""

    images: list[torch.Tensor]
    labels: torch.Tensor


@dataclass
class FrameSet:
    """One frame dataset split by episode."""

    name: str
    state_names: list[str]
    train: FrameDataset
    test: FrameDataset


def unique_names(names: Sequence[str], details: Sequence[str]) -> list[str]:
    """``names`` made unique: clashing ones get their detail appended, then an index if still equal."""
    out = [f"{n} ({d})" if list(names).count(n) > 1 else n for n, d in zip(names, details, strict=True)]
    return [f"{n} #{i + 1}" if out.count(n) > 1 else n for i, n in enumerate(out)]


def _run_folder(path: str | Path) -> str:
    folder = Path(path).resolve()
    return (folder.parent if folder.name == "encoder" else folder).name


def representations(
    encoder_paths: Sequence[str | Path], device: torch.device, batch_size: int = 256, pixels_size: int = 16,
    seed: int = 0,
) -> list[Representation]:
    """The saved encoders, one random init (seeded, normalised like the first encoder of its
    architecture config) per config that has no saved random init among them, and raw pixels."""
    metas = [encoder_meta(p) for p in encoder_paths]
    names = unique_names([f"{m.get('method', 'none')} ({m['arch']})" for m in metas],
                         [_run_folder(p) for p in encoder_paths])
    key = lambda meta: json.dumps([meta["arch"], meta["kwargs"]], sort_keys=True)
    have_random = {key(m) for m in metas if m.get("method") == "random"}
    reps, randoms = [], {}
    for path, name, meta in zip(encoder_paths, names, metas, strict=True):
        enc = load_encoder(path, device=device)
        reps.append(Representation(name, encoder_featurizer(enc, batch_size), enc, str(path), meta.get("val_metrics")))
        if key(meta) not in randoms and key(meta) not in have_random:
            with torch.random.fork_rng(devices=[]):
                randoms[key(meta)] = random_like(path, seed).to(device)
    rand_names = unique_names([f"random init ({e.arch})" for e in randoms.values()],
                              [f"dim {e.feature_dim}" for e in randoms.values()])
    for name, enc in zip(rand_names, randoms.values(), strict=True):
        reps.append(Representation(name, encoder_featurizer(enc, batch_size), enc))
    return [*reps, Representation(f"raw pixels {pixels_size}x{pixels_size}", pixel_featurizer(pixels_size))]


def load_frame_sets(paths: Sequence[str | Path], holdout: float = 0.2, seed: int = 0) -> list[FrameSet]:
    """Each frame dataset split by episode (the split pretraining uses), named by its env."""
    loaded = []
    for p in paths:
        train, test = load_split(p, holdout=holdout, seed=seed)
        if not test:
            raise UserError(f"{p}: need at least 2 episodes to hold one out for evaluation")
        meta, dim = dataset_meta(p), train[0].states.shape[1]
        names = meta.get("state_names") or [f"s{i}" for i in range(dim)]
        if len(names) != dim:
            raise UserError(f"{Path(p) / 'meta.json'}: {len(names)} state_names for states of {dim} values; delete it "
                            "or re-collect the dataset")
        loaded.append((str(meta.get("env") or Path(p).name), list(names), FrameDataset(train), FrameDataset(test)))
    names = unique_names([x[0] for x in loaded], [Path(p).name for p in paths])
    return [FrameSet(n, *rest) for n, (_, *rest) in zip(names, loaded, strict=True)]


def frame_labels(
    sets: Sequence[FrameSet], label_state: str | None = None, n_bins: int = 4
) -> tuple[Labelled, Labelled, list[str], str]:
    """Free labels on frames: the dataset index (several datasets) or quantile bins of one state."""
    if len(sets) > 1:
        def task(split: str) -> Labelled:
            blocks = [getattr(s, split).frames for s in sets]
            return Labelled(blocks, torch.cat([torch.full((len(b),), i) for i, b in enumerate(blocks)]))

        return task("train"), task("test"), [s.name for s in sets], "task (which dataset a frame comes from)"
    s = sets[0]
    if label_state is None:
        pose = [i for i in range(len(s.state_names)) if i not in velocity_dims(s.state_names)]
        dim = pose[0] if pose else 0
    elif label_state in s.state_names:
        dim = s.state_names.index(label_state)
    else:
        raise UserError(f"unknown label_state '{label_state}'; valid: {', '.join(s.state_names)}")
    name = s.state_names[dim]
    y_tr, y_te, edges = quantile_bin_labels(s.train.states[:, dim], s.test.states[:, dim], n_bins)
    bounds = ["-inf", *(f"{e:.3g}" for e in edges), "inf"]
    classes = [f"{name} in [{lo}, {hi})" for lo, hi in itertools.pairwise(bounds)]
    how = f"{n_bins} quantile bins of {name} (edges from the train frames)"
    return Labelled([s.train.frames], y_tr), Labelled([s.test.frames], y_te), classes, how


def load_labelled_images(
    kind: str, path: str | Path, image_size: int, holdout: float = 0.2, seed: int = 0, progress: bool = True
) -> tuple[Labelled, Labelled, list[str]]:
    """A labelled image set (``ssl4rl.data.images``) in memory as (train, test, class names).

    An ImageFolder without train/ and test/ folders is split by class (``holdout``, ``seed``).
    """
    # imported here: ssl4rl.data.images pulls in dm_control, which frame-only evaluation never needs
    from ssl4rl.data.images import (
        ImageFolderStream,
        load_split_image_folder,
        open_images,
    )

    if kind == "imagefolder":
        train, test = load_split_image_folder(path, image_size, holdout=holdout, seed=seed, progress=progress)
    else:
        train, test = (open_images(kind, path, image_size, train=t, progress=progress) for t in (True, False))
    for part in (train, test):
        if isinstance(part, ImageFolderStream):
            raise UserError(
                f"{part.root}: {part.nbytes / 2**30:.1f} GiB of decoded images is too much to evaluate in memory; "
                "use a smaller data.image_size"
            )
    return Labelled([train.images], train.labels), Labelled([test.images], test.labels), list(train.classes)


def classification_metrics(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
    subsets: dict[str, torch.Tensor],
    knn_k: Sequence[int] = (20, 200),
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
) -> dict[str, Any]:
    """kNN (each k) and linear top-1 on all train labels and on each label subset (name -> indices)."""

    def scores(idx: torch.Tensor | None) -> dict[str, Any]:
        xt, yt = (x_train, y_train) if idx is None else (x_train[idx], y_train[idx])
        knn = {f"k={k}": knn_accuracy(xt, yt, x_test, y_test, k, temperature, num_classes) for k in knn_k}
        lin = linear_probe(xt, yt, x_test, y_test, num_classes, generator=torch.Generator().manual_seed(seed))
        return {"knn": knn, "linear": lin, "train_labels": len(yt)}

    return {**scores(None), "fractions": {name: scores(idx) for name, idx in subsets.items()}}


def evaluate(
    encoders: Sequence[str | Path],
    data: str | Path | Sequence[str | Path],
    kind: str = "frames",
    out: str | Path | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    knn_k: Sequence[int] = (20, 200),
    temperature: float = DEFAULT_TEMPERATURE,
    label_fractions: Sequence[float] = (0.01, 0.1),
    finetune: bool = False,
    finetune_epochs: int = 3,
    label_state: str | None = None,
    n_bins: int = 4,
    image_size: int | None = None,
    pixels_size: int = 16,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate saved encoders (and the random-init and pixel baselines) on ``data``; see module doc.

    ``data`` is one folder or a list of frame folders (``kind='frames'``); returns the results
    dict written to ``out/eval.json`` when ``out`` is given.
    """
    from ssl4rl.config import EvalConfig, EvalDataConfig, validate_config

    paths = [data] if isinstance(data, (str, Path)) else list(data)
    # the same typed config, with the same declared ranges, as pretrain/eval.py's settings
    validate_config(EvalConfig(
        data=EvalDataConfig(path=[str(p) for p in paths], kind=kind, holdout=holdout, image_size=image_size),
        knn_k=list(knn_k), knn_temperature=temperature, label_fractions=list(label_fractions), label_state=label_state,
        n_bins=n_bins, finetune=finetune, finetune_epochs=finetune_epochs, pixels_size=pixels_size, batch_size=batch_size,
        seed=seed, device=device, progress=progress))
    if not encoders or not paths:
        raise UserError("give at least one encoder (encoders=[dir,...]) and one data.path")
    if kind != "frames" and len(paths) > 1:
        raise UserError(f"data.kind={kind} takes one data.path, got {len(paths)}")
    claim = claimed_run_dir(out, log_file=False) if out is not None else contextlib.nullcontext()
    with claim:  # out= is claimed as by the command line: never a finished evaluation, never two processes
        dev = resolve_device(device)
        reps = representations(encoders, dev, batch_size, pixels_size, seed)

        sets: list[FrameSet] = []
        if kind == "frames":
            sets = load_frame_sets(paths, holdout, seed)
            train, test, classes, label_how = frame_labels(sets, label_state, n_bins)
        else:
            size = image_size or max(r.encoder.image_size for r in reps if r.encoder is not None)
            train, test, classes = load_labelled_images(kind, paths[0], size, holdout, seed, progress)
            label_how = f"the {kind} class labels"
        n = len(train.labels) + len(test.labels)  # features of every image, then their concatenation: two copies
        check_memory(2 * n * 3 * pixels_size**2 * 4, f"pixels_size={pixels_size}: the raw-pixel baseline of {n} images",
                     "use pixels_size=16")
        gen = torch.Generator().manual_seed(seed)
        subsets = {f"{f:g}": stratified_split(train.labels, f, gen)[0] for f in label_fractions}
        shown = torch.randperm(len(test.labels), generator=gen)[:PROJECTION_POINTS].sort().values

        rows, panels = [], {}
        for rep in reps:
            with torch.no_grad():  # features are leaves for the linear probe, not inference tensors
                x_tr = [rep.featurize(b) for b in train.images]
                x_te = [rep.featurize(b) for b in test.images]
            row: dict[str, Any] = {"name": rep.name, "encoder": rep.path, "feature_dim": int(x_tr[0].shape[1]),
                                   "pretext": rep.pretext}
            if sets:
                row["state"] = {
                    s.name: state_probe(a.numpy(), s.train.states.numpy(), s.train.store.lengths,
                                        b.numpy(), s.test.states.numpy(), s.test.store.lengths, s.state_names, seed)
                    for s, a, b in zip(sets, x_tr, x_te, strict=True)
                }
            x_tr, x_te = torch.cat(x_tr), torch.cat(x_te)
            row.update(classification_metrics(x_tr, train.labels, x_te, test.labels, len(classes), subsets, knn_k,
                                              temperature, seed))
            if kind == "frames" and rep.path is not None:  # a C-SWM run's world model: multi-step ranking
                row.update(world_model_ranking(rep.path, paths, dev, None if out is None else Path(out)))
            if finetune and rep.encoder is not None:
                row["finetune"] = finetune_encoder(
                    rep.encoder, _one_block(train.images), train.labels, _one_block(test.images), test.labels,
                    len(classes), epochs=finetune_epochs, flip=kind != "frames",
                    generator=torch.Generator().manual_seed(seed), progress=progress, desc=f"fine-tune {rep.name}",
                )
            panels[rep.name] = (x_te[shown], test.labels[shown])
            shown_metrics = ", ".join(f"{k} {v:.3f}" for k, v in main_metrics(row).items() if v is not None)
            log.info(f"eval {rep.name}: {shown_metrics}")
            rows.append(row)

        result = {
            "kind": kind,
            "data": [str(p) for p in paths],
            "labels": label_how,
            "classes": classes,
            "train_samples": len(train.labels),
            "test_samples": len(test.labels),
            "knn": {"k": [int(k) for k in knn_k], "temperature": temperature},
            "label_fractions": [float(f) for f in label_fractions],
            "datasets": [{"name": s.name, "train_episodes": len(s.train.store.lengths),
                          "test_episodes": len(s.test.store.lengths), "test_frames": len(s.test),
                          "state_names": s.state_names,
                          "ceiling": pose_ceiling(s.train.states.numpy(), s.train.store.lengths, s.test.states.numpy(),
                                                  s.test.store.lengths, s.state_names, seed)} for s in sets],
            "rows": rows,
        }
        if out is not None:
            write_outputs(result, panels, Path(out))
        return result


def _one_block(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Image blocks of possibly different sizes as one uint8 tensor at the largest size."""
    size = max(b.shape[-1] for b in blocks)
    return torch.cat([resize_frames(b, size) for b in blocks])


def write_outputs(result: dict[str, Any], panels: dict[str, tuple[torch.Tensor, torch.Tensor]], out: Path) -> None:
    """eval.json, eval.md, eval_bars.png, eval_projection.png (+ probe.json/md for one frame dataset)."""
    write_json(out / "eval.json", result)
    write_text(out / "eval.md", eval_markdown(result) + ranking_markdown(result))
    bar_chart(out / "eval_bars.png", {r["name"]: main_metrics(r) for r in result["rows"]},
              title=f"{result['kind']}: {', '.join(Path(p).name for p in result['data'])}")
    projection_plot(out / "eval_projection.png", panels, result["classes"],
                    title=f"PCA of held-out features, coloured by {result['labels']}")
    report = probe_json(result)
    if report is not None:
        write_json(out / "probe.json", report)
        write_text(out / "probe.md", markdown_table(report))
