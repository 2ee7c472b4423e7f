import json

import numpy as np
import pytest
import torch
from helpers import assert_one_line
from PIL import Image

from ssl4rl.data.images import (
    ImageFolderStream,
    LabelledImages,
    load_cifar10,
    load_image_folder,
    load_split_image_folder,
    load_stl10,
    make_dmc_imagefolder,
    open_images,
)
from ssl4rl.errors import UserError

CLASSES = ["ant", "bee", "cat"]


def _fake_folder(root, per_class=4, size=20):
    """3 classes x per_class PNGs; image j of class i is a flat colour (40*i, 10*j, 7)."""
    for i, cls in enumerate(reversed(CLASSES)):  # creation order must not matter
        (root / cls).mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", (size, size), (40 * (2 - i), 10 * j, 7)).save(root / cls / f"{j}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    return _fake_folder(tmp_path / "set")


def test_image_folder_loads_resized_with_sorted_classes(folder):
    data = load_image_folder(folder, 16, progress=False)
    assert data.classes == CLASSES
    assert data.images.dtype == torch.uint8 and data.images.shape == (12, 3, 16, 16)
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert data.images[5, :, 8, 8].tolist() == [40, 10, 7]  # class bee, image 1
    assert len(load_image_folder(folder, 16, max_images=6, progress=False).labels.unique()) == 3


def test_split_is_stratified_and_reproducible(folder):
    data = load_image_folder(folder, 16, progress=False)
    train, test = data.split(0.25, seed=3)
    assert torch.bincount(test.labels).tolist() == [1, 1, 1]
    assert torch.bincount(train.labels).tolist() == [3, 3, 3]
    again, _ = data.split(0.25, seed=3)
    assert torch.equal(again.images, train.images)
    assert not torch.equal(data.split(0.25, seed=4)[0].images, train.images)


def test_split_folders_use_train_classes(tmp_path):
    root = tmp_path / "splits"
    _fake_folder(root / "train")
    (root / "val" / "cat").mkdir(parents=True)  # test split lacks two classes: labels must still match train's
    Image.new("RGB", (20, 20), (1, 2, 3)).save(root / "val" / "cat" / "x.png")
    train, test = load_split_image_folder(root, 16, progress=False)
    assert len(train) == 12 and test.labels.tolist() == [2] and test.classes == CLASSES
    with pytest.raises(UserError) as exc:
        load_image_folder(root, 16, progress=False)
    assert_one_line(exc, "load_split_image_folder")


def test_stream_matches_memory_and_budget_picks_streaming(folder):
    data = load_image_folder(folder, 16, progress=False)
    stream = open_images("imagefolder", folder, 16, memory_budget=100)
    assert isinstance(stream, ImageFolderStream) and len(stream) == 12
    for i in range(len(stream)):
        image, label, index = stream[i]
        assert index == i and label == data.labels[i] and torch.equal(image, data.images[i])
    assert isinstance(open_images("imagefolder", folder, 16, progress=False), LabelledImages)


def test_cifar10_binary_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([3, 0, 9], np.uint8)
    pixels = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    batches = tmp_path / "cifar-10-batches-bin"
    batches.mkdir()
    np.concatenate([labels[:, None], pixels], 1).tofile(batches / "test_batch.bin")
    data = load_cifar10(tmp_path, train=False)
    assert data.labels.tolist() == [3, 0, 9] and data.classes[3] == "cat"
    assert torch.equal(data.images, torch.from_numpy(pixels.reshape(3, 3, 32, 32)))
    with pytest.raises(UserError) as exc:
        load_cifar10(tmp_path, train=True)
    assert_one_line(exc, "data_batch_1.bin")


def test_stl10_binary_is_column_major(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rows, cols = np.meshgrid(np.arange(96), np.arange(96), indexing="ij")
    red, green = rows.astype(np.uint8), (cols // 2).astype(np.uint8)  # red = row index, green = column / 2
    raw = bytearray()
    for k in range(2):
        for channel in (red, green, np.full((96, 96), k, np.uint8)):
            raw += bytes(channel[r, c] for c in range(96) for r in range(96))  # down each column first
    (folder / "test_X.bin").write_bytes(bytes(raw))
    np.array([1, 10], np.uint8).tofile(folder / "test_y.bin")
    data = load_stl10(tmp_path, "test")
    assert data.images.shape == (2, 3, 96, 96) and data.labels.tolist() == [0, 9]
    assert data.images[1, 0, 5, 60] == 5 and data.images[1, 1, 5, 60] == 30 and data.images[1, 2, 0, 0] == 1
    assert load_stl10(tmp_path, "test", image_size=32).images.shape == (2, 3, 32, 32)


def test_bad_input_is_one_line(tmp_path, folder):
    with pytest.raises(UserError) as exc:
        load_image_folder(tmp_path / "nope", 16)
    assert_one_line(exc, "not found", "<class>")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (8, 8)).save(loose / "a.png")
    with pytest.raises(UserError) as exc:
        load_image_folder(loose, 16)
    assert_one_line(exc, "no class folders")
    with pytest.raises(UserError) as exc:
        open_images("mnist", folder, 16)
    assert_one_line(exc, "imagefolder, cifar10, stl10")
    (folder / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError) as exc:
        load_image_folder(folder, 16, progress=False)
    assert_one_line(exc, "1 of 13", "broken.png")
    with pytest.raises(UserError) as exc:
        ImageFolderStream(folder, 16)[8]  # sorted: ant/0..3, bee/0..3, bee/broken.png
    assert_one_line(exc, "broken.png")


def test_make_dmc_imagefolder(tmp_path):
    envs = ["dmc_cartpole", "dmc_cup"]
    out = make_dmc_imagefolder(tmp_path / "dmc", envs, per_class=5, image_size=32, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"] == {s: {"dmc_cartpole": n, "dmc_cup": n} for s, n in (("train", 5), ("test", 1))}
    train, test = load_split_image_folder(out, 32, progress=False)
    assert train.classes == ["dmc_cartpole", "dmc_cup"] and train.labels.tolist() == [0] * 5 + [1] * 5
    assert test.labels.tolist() == [0, 1] and test.images.shape == (2, 3, 32, 32)
    train_episodes = {p.name.split("_")[0] for p in (out / "train" / "dmc_cup").iterdir()}
    assert (out / "test" / "dmc_cup").iterdir().__next__().name.split("_")[0] not in train_episodes
    with pytest.raises(UserError) as exc:
        make_dmc_imagefolder(out, ["dmc_cartpole"], per_class=5, image_size=32, progress=False)
    assert_one_line(exc, "already holds files")


def test_make_dmc_state_bins(tmp_path):
    out = make_dmc_imagefolder(
        tmp_path / "bins", ["dmc_cartpole"], per_class=3, image_size=16, labels="state_bin", progress=False
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == ["bin0", "bin1", "bin2", "bin3"] and meta["state_name"] == "position[0]"
    assert meta["counts"]["train"] == dict.fromkeys(meta["classes"], 3)
    assert sorted(meta["bin_edges"]) == meta["bin_edges"]
