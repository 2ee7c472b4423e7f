"""Labelled image sets: ImageFolders, CIFAR-10 and STL-10 from local files, and DMC-made sets.

Besides episode folders (``ssl4rl.data.episodes``), pretraining and evaluation accept
labelled still images, all read from local files (nothing is ever downloaded, nothing
is unpickled):

- ``imagefolder``: the torchvision layout ``root/<class>/<image>`` (png, jpg, bmp, ppm,
  tif, webp; subfolders of a class folder are searched too). Classes are the sorted
  class-folder names. A set with explicit splits (``root/train/<class>/...`` plus
  ``root/test/`` or ``root/val/``) is read with ``load_split_image_folder`` or by
  loading ``root/train`` and ``root/test`` directly. Images are decoded once into
  memory as uint8 ``(N,3,S,S)``: shorter side resized to ``S``, then centre-cropped.
- ``cifar10``: the *binary* version (``cifar-10-batches-bin/data_batch_1.bin`` ...
  ``test_batch.bin``: records of 1 label byte + 3072 pixel bytes), or an ImageFolder; the python
  version (``cifar-10-batches-py/``, pickles) is refused.
- ``stl10``: the binary files (``stl10_binary/train_X.bin``, ``train_y.bin``,
  ``test_X.bin``, ``test_y.bin``, ``unlabeled_X.bin``; 3x96x96 images stored
  column-major, labels 1..10). Unlabelled images get label -1.

``open_images(kind, path, image_size)`` returns a ``LabelledImages`` when the decoded set
fits the memory budget (4 GiB by default), else an ``ImageFolderStream`` that decodes
one image per item (binary sets over the budget are refused with the size they need).

Bad input raises a one-line ``UserError`` naming the fix: a missing path, an empty
folder, images lying loose without class folders, an unknown kind. An unreadable
image file is an error too, never skipped silently: the in-memory loaders decode the
whole set, then report how many files failed and the first of them; the stream
reports a bad file when its item is read.

**Labels for free from environment frames.** Frames rendered from simulated tasks carry
labels at no annotation cost: the task that produced a frame is its *domain* label
(``labels='domain'``: class = env name, e.g. ``dmc_walker``), and the simulator's true
state gives continuous targets that become classes by cutting one state variable into
quantile bins (``labels='state_bin'``: for one env, class ``binK`` holds frames whose
variable ``state_dim`` lies in the K-th of 4 quartiles of the training frames).
``make_dmc_imagefolder`` renders such sets from uniform-random-policy episodes and
writes them as an ImageFolder ``out/train/<class>/*.png`` + ``out/test/<class>/*.png``
(test frames come from other episodes than train frames) with ``out/meta.json``,
written last, describing the set.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl4rl.data.datasets import resize_frames
from ssl4rl.envs import DMCEnv, check_dmc_task, make_env
from ssl4rl.errors import UserError
from ssl4rl.runs import log
from ssl4rl.utils import atomic_path, progress_bar, write_json

KINDS = ("imagefolder", "cifar10", "stl10")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MEMORY_BUDGET = 4 << 30  # bytes of decoded uint8 images that open_images keeps in memory
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
STL10_FILES = {
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
    "unlabeled": ("unlabeled_X.bin", None),
}
LABEL_RULES = ("domain", "state_bin")
STATE_BINS = 4
TEST_FRACTION = 0.2  # test images per class, as a fraction of per_class
FRAMES_PER_EPISODE = 20  # about this many images are drawn from one episode

_CIFAR_RECORD = 1 + 3 * 32 * 32
_STL_IMAGE = 3 * 96 * 96
_DECODE_WORKERS = min(4, os.cpu_count() or 1)
_DECODE_BLOCK = 64  # images per thread-pool task
_RUN_FILES = {"config.yaml", "log.txt"}  # a run's bookkeeping, allowed in make_dmc_imagefolder's out
_HINTS = {
    "imagefolder": "put an ImageFolder there ({root}/<class>/<image>.png, one folder per class)",
    "cifar10": "put CIFAR-10's binary version there ({root}/cifar-10-batches-bin/data_batch_1.bin ... "
    "test_batch.bin, from cifar-10-binary.tar.gz) or an ImageFolder of its images",
    "stl10": "put STL-10's binary files there ({root}/stl10_binary/train_X.bin, train_y.bin, test_X.bin, "
    "test_y.bin, unlabeled_X.bin, from stl10_binary.tar.gz)",
}


@dataclass
class LabelledImages:
    """Images in memory with integer labels (-1 = unlabelled) and the class names."""

    images: torch.Tensor  # uint8 (N,3,S,S)
    labels: torch.Tensor  # int64 (N,), -1 = unlabelled
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor | Sequence[int]) -> LabelledImages:
        """The images at ``idx`` (same class list)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return LabelledImages(self.images[idx], self.labels[idx], list(self.classes))

    def split(self, holdout: float = 0.2, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
        """Split into (train, test), holding out ``holdout`` of each class (unlabelled counts as one).

        Reproducible for a given seed; a label with two or more images keeps at least
        one on each side. Both parts keep the original order.
        """
        if not 0 <= holdout < 1:
            raise UserError(f"holdout={holdout}: use a fraction in [0, 1), e.g. holdout=0.2")
        g = torch.Generator().manual_seed(seed)
        train, test = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.long)]
        for label in torch.unique(self.labels).tolist():
            idx = (self.labels == label).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n = len(idx)
            n_test = 0 if n < 2 or holdout == 0 else min(n - 1, max(1, round(holdout * n)))
            test.append(idx[:n_test])
            train.append(idx[n_test:])
        return self.subset(torch.cat(train).sort().values), self.subset(torch.cat(test).sort().values)


class ImageFolderStream(Dataset):
    """An ImageFolder decoded one image per item, for sets too large to hold in memory.

    Item ``i``: (uint8 (3,S,S) tensor, label, i). ``classes`` fixes the class order
    (e.g. the train split's when reading a test split); by default the sorted
    class-folder names. ``load()`` decodes the whole set into a ``LabelledImages``.
    """

    def __init__(self, root: str | Path, image_size: int, classes: Sequence[str] | None = None) -> None:
        if image_size < 1:
            raise UserError(f"image_size={image_size}: use a positive size in pixels, e.g. image_size=64")
        self.root = _require_dir(root, "imagefolder")
        self.image_size = int(image_size)
        self.paths, labels, self.classes = _scan(self.root, classes)
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        image = _decode(self.paths[i], self.image_size)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), int(self.labels[i]), int(i)

    @property
    def nbytes(self) -> int:
        """Memory the decoded set takes as uint8."""
        return len(self) * 3 * self.image_size**2

    def load(self, max_images: int | None = None, progress: bool = True) -> LabelledImages:
        """Decode all images (or ``max_images`` spread evenly over the sorted files) into memory."""
        idx = np.arange(len(self))
        if max_images is not None:
            if max_images < 1:
                raise UserError(f"max_images={max_images}: use a positive number, or none for all images")
            if max_images < len(self):
                idx = np.linspace(0, len(self) - 1, max_images).round().astype(np.int64)
        images = _decode_all([self.paths[i] for i in idx], self.image_size, progress, f"decode {self.root.name}")
        return LabelledImages(images, self.labels[torch.from_numpy(idx)], list(self.classes))


def load_image_folder(
    path: str | Path,
    image_size: int,
    max_images: int | None = None,
    progress: bool = True,
    classes: Sequence[str] | None = None,
) -> LabelledImages:
    """Decode an ImageFolder ``path/<class>/<image>`` into memory at ``image_size`` px.

    ``max_images`` keeps that many images spread evenly over the sorted files (all
    classes stay represented); ``classes`` fixes the class order (see ImageFolderStream).
    """
    return ImageFolderStream(path, image_size, classes).load(max_images, progress)


def load_split_image_folder(
    path: str | Path,
    image_size: int,
    holdout: float = 0.2,
    seed: int = 0,
    max_images: int | None = None,
    progress: bool = True,
) -> tuple[LabelledImages, LabelledImages]:
    """(train, test) of an ImageFolder: its train/ and test/ (or val/) folders when present,
    else a class-stratified ``holdout`` split (``LabelledImages.split``) of the whole set."""
    root = _require_dir(path, "imagefolder")
    train_dir, test_dir = _split_layout(root) or (root, None)
    train = load_image_folder(train_dir, image_size, max_images, progress)
    if test_dir is None:
        return train.split(holdout, seed)
    return train, load_image_folder(test_dir, image_size, max_images, progress, classes=train.classes)


def load_cifar10(
    path: str | Path, train: bool = True, image_size: int | None = None, progress: bool = True
) -> LabelledImages:
    """CIFAR-10's train (50k) or test (10k) images, 32 px unless ``image_size`` is given.

    ``path`` holds the binary version (``cifar-10-batches-bin/`` or its files), or is an
    ImageFolder (with train/ and test/ folders for ``train=False``).
    """
    root = _require_dir(path, "cifar10")
    bin_dir = _cifar_bin_dir(root)
    if bin_dir is None:
        return _cifar_folder(root, image_size or 32, train).load(progress=progress)
    raw = np.concatenate([_read_records(f, _CIFAR_RECORD) for f in _cifar_files(bin_dir, train)])
    classes = _class_names(bin_dir / "batches.meta.txt", CIFAR10_CLASSES)
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    if int(labels.max()) >= len(classes):
        raise UserError(
            f"{bin_dir}: label {int(labels.max())} out of range 0..{len(classes) - 1}; the files are corrupt, "
            f"re-extract them"
        )
    images = torch.from_numpy(np.ascontiguousarray(raw[:, 1:]).reshape(-1, 3, 32, 32))
    return LabelledImages(resize_frames(images, image_size or 32), labels, classes)


def load_stl10(
    path: str | Path, split: str = "train", image_size: int | None = None, progress: bool = True
) -> LabelledImages:
    """STL-10's 'train' (5k), 'test' (8k) or 'unlabeled' (100k, label -1) images, 96 px
    unless ``image_size`` is given (resized in chunks, so the file is never held whole)."""
    root = _require_dir(path, "stl10")
    x_file, y_file = _stl_files(root, split)
    images = _read_stl_images(x_file, image_size or 96, progress)
    classes = _class_names(x_file.parent / "class_names.txt", STL10_CLASSES)
    if y_file is None:
        return LabelledImages(images, torch.full((len(images),), -1, dtype=torch.int64), classes)
    if not y_file.is_file():
        raise UserError(f"{y_file} not found; {_hint('stl10', root)}")
    y = np.fromfile(y_file, dtype=np.uint8)
    if len(y) != len(images) or len(y) == 0 or y.min() < 1 or y.max() > len(classes):
        raise UserError(
            f"{y_file}: expected {len(images)} labels in 1..{len(classes)}, got {len(y)}; the file is corrupt, "
            f"re-extract it"
        )
    return LabelledImages(images, torch.from_numpy(y.astype(np.int64) - 1), classes)


def open_images(
    kind: str,
    path: str | Path,
    image_size: int,
    train: bool = True,
    memory_budget: int = MEMORY_BUDGET,
    progress: bool = True,
) -> LabelledImages | ImageFolderStream:
    """Open an image set of ``kind`` ('imagefolder' | 'cifar10' | 'stl10') at ``image_size`` px.

    ``train`` picks the train or test split (an ImageFolder without train/ + test|val/
    folders is one train set: split it with ``LabelledImages.split``; STL-10's unlabelled
    images come from ``load_stl10(path, 'unlabeled')``). Returns the images in memory
    when they fit ``memory_budget`` bytes, else an ``ImageFolderStream``.
    """
    if kind not in KINDS:
        raise UserError(f"unknown image set kind '{kind}'; valid kinds: {', '.join(KINDS)}")
    root = _require_dir(path, kind)
    if kind == "stl10":
        split = "train" if train else "test"
        x_file, _ = _stl_files(root, split)
        _check_budget(x_file.stat().st_size // _STL_IMAGE, image_size, memory_budget, f"STL-10 {split}")
        return load_stl10(root, split, image_size, progress)
    bin_dir = _cifar_bin_dir(root) if kind == "cifar10" else None
    if bin_dir is not None:
        n = sum(f.stat().st_size for f in _cifar_files(bin_dir, train)) // _CIFAR_RECORD
        _check_budget(n, image_size, memory_budget, f"CIFAR-10 {'train' if train else 'test'}")
        return load_cifar10(root, train, image_size, progress)
    stream = _cifar_folder(root, image_size, train) if kind == "cifar10" else _folder_split(root, image_size, train)
    if stream.nbytes > memory_budget:
        log.info(f"{stream.root}: {stream.nbytes / 2**30:.1f} GiB decoded is over the memory budget; streaming")
        return stream
    return stream.load(progress=progress)


def make_dmc_imagefolder(
    out: str | Path,
    envs: Sequence[str],
    per_class: int = 200,
    image_size: int = 64,
    seed: int = 0,
    labels: str = "domain",
    state_dim: int = 0,
    camera: int = 0,
    progress: bool = True,
) -> Path:
    """Render a labelled ImageFolder from uniform-random-policy episodes of DMC tasks.

    Writes ``per_class`` images per class to ``out/train/<class>/`` and
    ``max(1, round(0.2 * per_class))`` to ``out/test/<class>/`` (from other episodes),
    each an atomically written PNG, then ``out/meta.json``. ``labels='domain'``:
    class = env name; ``labels='state_bin'`` (one env): class ``binK`` = K-th quartile
    of state variable ``state_dim`` (index into ``info['state']``) over the training
    frames; a test class may hold fewer images when its episodes rarely visit that bin.
    Refuses an ``out`` that holds anything besides a run's config.yaml / log.txt.
    Returns ``out``.
    """
    out = Path(out)
    envs = list(envs)
    if labels not in LABEL_RULES:
        raise UserError(f"unknown labels rule '{labels}'; valid: {', '.join(LABEL_RULES)}")
    if not envs or len(set(envs)) != len(envs):
        raise UserError(f"envs={envs}: name one or more different envs, e.g. envs=[dmc_cartpole,dmc_walker]")
    for name in envs:
        check_dmc_task(name, "a labelled image set of dm_control domains")
    if labels == "state_bin" and len(envs) != 1:
        raise UserError(f"labels=state_bin bins one env's state; name exactly one env, e.g. envs=[{envs[0]}]")
    if per_class < 1:
        raise UserError(f"per_class={per_class}: use at least 1 image per class")
    _refuse_nonempty(out)
    n_test = max(1, round(TEST_FRACTION * per_class))
    n_classes = STATE_BINS if labels == "state_bin" else 1  # classes per env
    n_train_episodes = max(2, math.ceil(n_classes * per_class / FRAMES_PER_EPISODE))
    n_test_episodes = math.ceil(n_classes * n_test / FRAMES_PER_EPISODE)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    meta_extra: dict = {}
    total = len(envs) * n_classes * (per_class + n_test)
    bar = progress_bar(total=total, desc="dmc images", unit="img", disable=not progress)
    for name in envs:
        bar.set_postfix_str(f"roll out {name}")
        env = make_env(name, image_size=image_size, camera=camera, frame_stack=1, obs_type="state", seed=seed)
        if labels == "state_bin" and not 0 <= state_dim < env.state_dim:
            raise UserError(
                f"state_dim={state_dim} out of range for {name}: use 0..{env.state_dim - 1} "
                f"({', '.join(env.state_names)})"
            )
        env.action_space.seed(seed)
        train = _Rollouts(env, range(seed, seed + n_train_episodes))
        test = _Rollouts(env, range(seed + n_train_episodes, seed + n_train_episodes + n_test_episodes))
        if labels == "domain":
            picks = {"train": {name: train.pick(per_class, g)}, "test": {name: test.pick(n_test, g)}}
        else:
            edges = torch.quantile(train.states[:, state_dim], torch.linspace(0, 1, STATE_BINS + 1)[1:-1])
            picks = {
                "train": train.pick_bins(state_dim, edges, per_class, g, strict=True),
                "test": test.pick_bins(state_dim, edges, n_test, g, strict=False),
            }
            meta_extra = {"state_dim": state_dim, "state_name": env.state_names[state_dim], "bin_edges": edges.tolist()}
        bar.set_postfix_str(f"render {name}")
        for split, rollouts in (("train", train), ("test", test)):
            for cls, rows in picks[split].items():
                counts[split][cls] = len(rows)
            for path, frame in rollouts.render(picks[split]):
                _write_png(out / split / path, frame)
                bar.update()
        env.close()
    bar.close()
    meta = {
        "format": "imagefolder",
        "source": "dm_control, uniform random policy",
        "envs": envs,
        "labels": labels,
        **meta_extra,
        "classes": sorted(counts["train"]),
        "per_class": per_class,
        "counts": counts,
        "episodes_per_env": {"train": n_train_episodes, "test": n_test_episodes},
        "image_size": image_size,
        "camera": camera,
        "seed": seed,
        "seconds": round(time.time() - t0, 2),
    }
    write_json(out / "meta.json", meta)
    return out


class _Rollouts:
    """Random-policy episodes of one env, run without rendering: states and MuJoCo states per step.

    Frames are rendered afterwards, only for the picked steps, by restoring the MuJoCo
    state after a reset with the episode's seed (which restores per-episode model
    changes such as reacher's target); this gives the exact frames of a pixel rollout.
    """

    def __init__(self, env: DMCEnv, seeds: Iterable[int]) -> None:
        self.env = env
        self.seeds = list(seeds)
        episode, step, states, self.physics = [], [], [], []
        for i, s in enumerate(self.seeds):
            _, info = env.reset(seed=s)
            ep_states, ep_physics, done = [info["state"]], [info["physics"]], False
            while not done:
                _, _, term, trunc, info = env.step(env.action_space.sample())
                ep_states.append(info["state"])
                ep_physics.append(info["physics"])
                done = term or trunc
            episode += [i] * len(ep_states)
            step += range(len(ep_states))
            states += ep_states
            self.physics.append(ep_physics)
        self.episode, self.step = np.asarray(episode), np.asarray(step)
        self.states = torch.from_numpy(np.stack(states))

    def pick(self, n: int, g: torch.Generator, among: torch.Tensor | None = None) -> np.ndarray:
        """``n`` random pooled steps (rows), drawn from ``among`` (all rows by default)."""
        among = torch.arange(len(self.states)) if among is None else among
        return among[torch.randperm(len(among), generator=g)[:n]].numpy()

    def pick_bins(
        self, dim: int, edges: torch.Tensor, n: int, g: torch.Generator, strict: bool
    ) -> dict[str, np.ndarray]:
        """Up to ``n`` rows per quantile bin of state variable ``dim``; ``strict``: exactly ``n``."""
        bins = torch.bucketize(self.states[:, dim].contiguous(), edges, right=True)
        picks = {}
        for b in range(STATE_BINS):
            among = (bins == b).nonzero().flatten()
            if len(among) < n and (strict or len(among) == 0):
                raise UserError(
                    f"state variable {dim} ({self.env.state_names[dim]}) has too few distinct values for "
                    f"{STATE_BINS} quantile bins; choose another state_dim"
                )
            picks[f"bin{b}"] = self.pick(n, g, among)
        return picks

    def render(self, picks: dict[str, np.ndarray]) -> Iterable[tuple[str, np.ndarray]]:
        """Yield (``<class>/<name>.png``, (H,W,3) uint8 frame) for the picked rows, episode by episode."""
        rows = sorted((int(self.episode[r]), int(self.step[r]), cls) for cls, rs in picks.items() for r in rs)
        current = None
        physics = self.env.physics
        for ep, t, cls in rows:
            if ep != current:
                self.env.reset(seed=self.seeds[ep])
                current = ep
            with physics.reset_context():
                physics.set_state(self.physics[ep][t])
            yield f"{cls}/ep{self.seeds[ep]:04d}_t{t:04d}.png", self.env.render()


def _write_png(path: Path, frame: np.ndarray) -> None:
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frame, extension=".png")


def _refuse_nonempty(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"out={out} is a file; choose a folder that does not exist yet")
    if {p.name for p in out.iterdir()} - _RUN_FILES:
        raise UserError(f"out={out} already holds files; choose a new or empty folder (nothing there was changed)")


def _hint(kind: str, root: Path) -> str:
    return _HINTS[kind].format(root=root)


def _require_dir(path: str | Path, kind: str) -> Path:
    root = Path(path)
    if not root.exists():
        raise UserError(f"{root}: folder not found; {_hint(kind, root)}")
    if not root.is_dir():
        raise UserError(f"{root} is a file, not a folder; {_hint(kind, root)}")
    return root


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def _subdirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_layout(root: Path) -> tuple[Path, Path | None] | None:
    """(train, test-or-val folder or None) when ``root/train`` holds class folders; None otherwise."""
    train = root / "train"
    if not (train.is_dir() and _subdirs(train)):
        return None
    return train, next((root / n for n in ("test", "val") if (root / n).is_dir()), None)


def _folder_split(root: Path, image_size: int, train: bool) -> ImageFolderStream:
    """The train or test split of an ImageFolder; the test split uses the train split's classes."""
    layout = _split_layout(root)
    if layout is None:
        if train:
            return ImageFolderStream(root, image_size)
        raise UserError(
            f"{root} has no train/ and test/ (or val/) folders; use train=True and split the images "
            f"(LabelledImages.split or load_split_image_folder)"
        )
    train_dir, test_dir = layout
    if train:
        return ImageFolderStream(train_dir, image_size)
    if test_dir is None:
        raise UserError(
            f"{root} has train/ but no test/ or val/ folder; add one, or split train/ with load_split_image_folder"
        )
    return ImageFolderStream(test_dir, image_size, classes=_subdirs(train_dir))


def _scan(root: Path, classes: Sequence[str] | None) -> tuple[list[Path], list[int], list[str]]:
    """Image files under ``root/<class>/`` (sorted), their class indices, and the class list."""
    found = _subdirs(root)
    if classes is None:
        if _split_layout(root) is not None and not any(_is_image(p) for p in (root / "train").iterdir()):
            raise UserError(
                f"{root} holds train/ and test/ splits, not class folders; load {root / 'train'}, or use "
                f"load_split_image_folder / open_images(train=...)"
            )
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise UserError(
                f"{root}: class folders {', '.join(unknown)} are not among the training classes "
                f"({', '.join(classes)}); rename or remove them"
            )
    paths: list[Path] = []
    labels: list[int] = []
    for i, cls in enumerate(classes):
        if (root / cls).is_dir():
            files = sorted(p for p in (root / cls).rglob("*") if _is_image(p))
            paths += files
            labels += [i] * len(files)
    if not paths:
        if any(_is_image(p) for p in root.iterdir()):
            raise UserError(
                f"{root} holds images but no class folders; move them into {root}/<class>/ (one folder per class)"
            )
        if not found:
            raise UserError(f"{root} is empty; {_hint('imagefolder', root)}")
        raise UserError(f"{root}: no image files ({' '.join(IMAGE_EXTENSIONS)}) in its class folders")
    return paths, labels, list(classes)


def _decode(path: Path, size: int) -> np.ndarray:
    """One image file -> RGB uint8 (size, size, 3): shorter side resized to ``size``, centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
            im = im.convert("RGB")
            w, h = im.size
            if (w, h) != (size, size):
                scale = size / min(w, h)
                nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
                im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
                left, top = (nw - size) // 2, (nh - size) // 2
                im = im.crop((left, top, left + size, top + size))
            return np.asarray(im)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: cannot read image ({reason}); delete or replace the file") from None


def _decode_all(paths: Sequence[Path], size: int, progress: bool, desc: str) -> torch.Tensor:
    """Decode files into uint8 (N,3,size,size) with a small thread pool (PIL releases the GIL)."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    array = out.numpy()
    errors: list[tuple[int, str]] = []

    def work(start: int) -> int:
        stop = min(start + _DECODE_BLOCK, len(paths))
        for i in range(start, stop):
            try:
                array[i] = _decode(paths[i], size).transpose(2, 0, 1)
            except UserError as e:
                errors.append((i, str(e)))
        return stop - start

    with ThreadPoolExecutor(_DECODE_WORKERS) as pool, progress_bar(
        total=len(paths), desc=desc, unit="img", disable=not progress, delay=2.0
    ) as bar:
        for done in pool.map(work, range(0, len(paths), _DECODE_BLOCK)):
            bar.update(done)
    if errors:
        raise UserError(f"{len(errors)} of {len(paths)} image files cannot be read; first: {min(errors)[1]}")
    return out


def _check_budget(n: int, image_size: int, budget: int, what: str) -> None:
    need = n * 3 * image_size**2
    if need > budget:
        raise UserError(
            f"{what} at {image_size} px needs {need / 2**30:.1f} GiB in memory, over the "
            f"{budget / 2**30:.1f} GiB budget; use a smaller image_size or a larger memory_budget"
        )


def _class_names(file: Path, default: Sequence[str]) -> list[str]:
    """Class names listed one per line in ``file`` when it has the expected count, else ``default``."""
    if file.is_file():
        names = [line.strip() for line in file.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == len(default):
            return names
    return list(default)


def _read_records(file: Path, size: int) -> np.ndarray:
    data = np.fromfile(file, dtype=np.uint8)
    if data.size == 0 or data.size % size:
        raise UserError(
            f"{file}: {data.size} bytes is not a whole number of {size}-byte records; the file is truncated "
            f"or not the binary version, re-extract it"
        )
    return data.reshape(-1, size)


def _cifar_bin_dir(root: Path) -> Path | None:
    """The folder holding CIFAR-10's binary batches (``root/cifar-10-batches-bin`` or ``root``)."""
    for d in (root / "cifar-10-batches-bin", root):
        if any((d / f).is_file() for f in ("data_batch_1.bin", "test_batch.bin")):
            return d
    return None


def _cifar_files(bin_dir: Path, train: bool) -> list[Path]:
    files = [bin_dir / f"data_batch_{i}.bin" for i in range(1, 6)] if train else [bin_dir / "test_batch.bin"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{bin_dir}: missing {', '.join(missing)}; {_hint('cifar10', bin_dir.parent)}")
    return files


def _cifar_python_dir(root: Path) -> Path | None:
    """The folder holding CIFAR-10's python (pickled) batches, when ``root`` holds nothing else to read."""
    if set(_subdirs(root)) - {"cifar-10-batches-py"}:
        return None
    for d in (root / "cifar-10-batches-py", root):
        if any((d / f).is_file() for f in ("data_batch_1", "test_batch", "batches.meta")):
            return d
    return None


def _cifar_folder(root: Path, image_size: int, train: bool) -> ImageFolderStream:
    """CIFAR-10 kept as an ImageFolder (no binary batches in ``root``)."""
    python_dir = _cifar_python_dir(root)
    if python_dir is not None:
        raise UserError(
            f"{python_dir} holds CIFAR-10's python version (pickled batches), which ssl4rl never unpickles; use the "
            f"binary version: extract cifar-10-binary.tar.gz in {python_dir.parent} (it makes cifar-10-batches-bin/"
            f"data_batch_1.bin ... test_batch.bin) and give that folder, or an ImageFolder of its images"
        )
    if not _subdirs(root):
        raise UserError(f"{root}: no CIFAR-10 binary batches or class folders; {_hint('cifar10', root)}")
    return _folder_split(root, image_size, train)


def _stl_files(root: Path, split: str) -> tuple[Path, Path | None]:
    if split not in STL10_FILES:
        raise UserError(f"unknown STL-10 split '{split}'; valid: {', '.join(STL10_FILES)}")
    folder = root / "stl10_binary" if (root / "stl10_binary").is_dir() else root
    x_name, y_name = STL10_FILES[split]
    if not (folder / x_name).is_file():
        raise UserError(f"{folder / x_name} not found; {_hint('stl10', root)}")
    return folder / x_name, folder / y_name if y_name else None


def _read_stl_images(file: Path, size: int, progress: bool, chunk: int = 2048) -> torch.Tensor:
    """STL-10 images (column-major 3x96x96 records) -> uint8 (N,3,size,size), read in chunks."""
    n_bytes = file.stat().st_size
    if n_bytes == 0 or n_bytes % _STL_IMAGE:
        raise UserError(
            f"{file}: {n_bytes} bytes is not a whole number of 3x96x96 images; the file is truncated, re-extract it"
        )
    stored = np.memmap(file, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96)  # [n, c, column, row]
    out = torch.empty((len(stored), 3, size, size), dtype=torch.uint8)
    for a in progress_bar(iterable=range(0, len(stored), chunk), desc=f"read {file.name}", unit="chunk",
                          disable=not progress, delay=2.0):
        rows_first = torch.from_numpy(np.ascontiguousarray(stored[a : a + chunk].transpose(0, 1, 3, 2)))
        out[a : a + chunk] = resize_frames(rows_first, size)
    del stored
    return out
