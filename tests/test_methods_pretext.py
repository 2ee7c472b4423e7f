"""Pretext methods (rotation, jigsaw, relative position): labels, tile geometry, permutation sets,
accuracy logs, and a 3-step pretraining run each."""

import json
import math

import pytest
import torch

from ssl4rl.augment import ViewAug
from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.encoders import build_encoder, load_encoder
from ssl4rl.errors import UserError
from ssl4rl.methods import Batch, MethodContext, build_method, default_config
from ssl4rl.methods.jigsaw import jigsaw_layout, make_puzzle
from ssl4rl.methods.relpos import NEIGHBOURS, make_pair, relpos_layout
from ssl4rl.methods.rotation import rotate, rotation_labels
from ssl4rl.parts.tiles import classification_outputs, maximal_hamming_permutations, tile_input_size
from ssl4rl.pretrain import pretrain

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
PRETEXT = ("rotation", "jigsaw", "relpos")


def _images(n=4, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _batch(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), torch.arange(n))


def _coords(n, size):
    """Images whose channel 0 holds each pixel's row and channel 1 its column (channel 2: row too)."""
    r = torch.arange(size, dtype=torch.float32).view(size, 1).expand(size, size)
    c = torch.arange(size, dtype=torch.float32).view(1, size).expand(size, size)
    return torch.stack([r, c, r]).expand(n, 3, size, size).contiguous()


def _model(name, arch="vit", seed=0, **options):
    enc = build_encoder(arch, **(VIT if arch == "vit" else {"image_size": 32}))
    ctx = MethodContext(generator=torch.Generator().manual_seed(seed))
    return build_method(default_config(name, **options), enc, ctx)


# ---------------------------------------------------------------- shared pieces
def test_classification_outputs_match_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    labels = torch.tensor([0, 2])
    loss, logs = classification_outputs(logits, labels)
    by_hand = [-(2.0 - math.log(math.exp(2) + 1 + math.exp(-1))), -(0.0 - math.log(math.exp(0.5) + math.exp(1.5) + 1))]
    assert loss.item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)
    assert torch.is_tensor(logs["acc"]) and logs["acc"].item() == 0.5 and logs["loss"].item() == loss.item()


def test_default_tile_sizes_for_32_to_84_px():
    vit = build_encoder("vit", **VIT)
    assert (jigsaw_layout(32, 0.85, 0.88).tile, jigsaw_layout(84, 0.85, 0.88).tile) == (8, 20)
    assert (relpos_layout(32).tile, relpos_layout(84).tile) == (7, 20)
    for size in (32, 48, 64, 84):
        for layout in (jigsaw_layout(size, 0.85, 0.88), relpos_layout(size)):
            assert layout.extent <= size and layout.stride > layout.tile and layout.jitter > 0
    assert [tile_input_size(vit, t) for t in (7, 8, 16, 20, 24)] == [16, 16, 16, 24, 24]
    assert tile_input_size(build_encoder("conv", image_size=32), 8) == 32  # fixed-size encoders get their size
    with pytest.raises(UserError, match="spans"):
        relpos_layout(32, patch=12)
    with pytest.raises(UserError, match="tile_frac"):
        jigsaw_layout(32, 1.5)
    with pytest.raises(UserError, match="grid_frac"):
        jigsaw_layout(32, 0.85, 0.0)


# ---------------------------------------------------------------- rotation
@pytest.mark.parametrize("all_rotations", [True, False])
def test_rotation_labels_match_rot90(all_rotations):
    x = _images(6)
    labels = rotation_labels(6, all_rotations, torch.Generator().manual_seed(1))
    src = x.repeat(4, 1, 1, 1) if all_rotations else x
    rotated = rotate(src, labels)
    assert len(labels) == len(src) and set(labels.tolist()) <= {0, 1, 2, 3}
    if all_rotations:
        assert labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6
    for i, k in enumerate(labels.tolist()):
        assert torch.equal(rotated[i], torch.rot90(src[i], k, dims=(-2, -1)))
        assert torch.equal(torch.rot90(rotated[i], -k, dims=(-2, -1)), src[i])  # rotating back recovers it
    assert not torch.equal(rotate(x, torch.ones(6, dtype=torch.long)), x)


def test_rotation_inputs_show_every_image_in_all_four_rotations():
    still = ViewAug(crop_scale=(1.0, 1.0), flip=0.0, jitter=0.0, grayscale=0.0)
    model = _model("rotation", aug=still)
    batch = _batch(4)
    x, labels = model.inputs(batch)
    original = batch.images.float() / 255
    assert x.shape == (16, 3, 32, 32)
    for i in range(16):
        assert torch.equal(torch.rot90(x[i], -int(labels[i]), dims=(-2, -1)), original[i % 4])


# ---------------------------------------------------------------- jigsaw
def test_permutations_are_distinct_far_apart_and_deterministic():
    perms, min_dist = maximal_hamming_permutations(64, 9, seed=0)
    assert perms.shape == (64, 9) and perms.dtype == torch.int64
    assert (perms.sort(1).values == torch.arange(9)).all()  # each row is a permutation
    assert len({tuple(p) for p in perms.tolist()}) == 64
    dist = (perms[:, None] != perms[None]).sum(-1)
    off_diagonal = dist[~torch.eye(64, dtype=torch.bool)]
    assert off_diagonal.min().item() == min_dist == 7  # what the greedy promises (its last pick's distance)
    assert off_diagonal.float().mean().item() > 8.0
    again, _ = maximal_hamming_permutations(64, 9, seed=0)
    assert torch.equal(perms, again)
    assert not torch.equal(perms[:8], maximal_hamming_permutations(8, 9, seed=1)[0])
    model = _model("jigsaw")
    assert torch.equal(model.permutations, perms) and "permutations" in dict(model.named_buffers())


def test_gapless_tiles_reassemble_under_the_inverse_permutation():
    x = _images(5, size=30)
    layout = jigsaw_layout(30, 1.0)
    assert (layout.tile, layout.stride, layout.jitter) == (10, 10, 0)
    perms, _ = maximal_hamming_permutations(64)
    puzzle, labels = make_puzzle(x, layout, perms, torch.Generator().manual_seed(0))
    assert puzzle.shape == (5, 9, 3, 10, 10) and labels.shape == (5,)
    for i in range(5):
        order = perms[labels[i]]
        tiles = puzzle[i, order.argsort()]
        image = tiles.view(3, 3, 3, 10, 10).permute(2, 0, 3, 1, 4).reshape(3, 30, 30)
        assert torch.equal(image, x[i])
        if not torch.equal(order, torch.arange(9)):
            assert not torch.equal(puzzle[i].view(3, 3, 3, 10, 10).permute(2, 0, 3, 1, 4).reshape(3, 30, 30), x[i])


def test_jigsaw_tiles_stay_in_their_cells_with_gaps_and_channel_shift():
    size, n = 32, 16
    layout = jigsaw_layout(size, 0.85)
    perms, _ = maximal_hamming_permutations(64)
    puzzle, labels = make_puzzle(_coords(n, size), layout, perms, torch.Generator().manual_seed(2), channel_shift=1)
    shifted = False
    for i in range(n):
        tiles = puzzle[i, perms[labels[i]].argsort()]
        for k in range(9):
            top, left = tiles[k, 0, 0, 0].item(), tiles[k, 1, 0, 0].item()  # channel 0 rows, channel 1 columns
            tops = tiles[k, [0, 2], 0, 0]
            assert (tops - top).abs().max() <= 2  # channel shifts of at most +-1 px each
            shifted |= bool((tops != top).any())
            r, c = divmod(k, 3)
            cell, slack = layout.stride, size - layout.extent + 1  # grid origin + channel shift
            assert r * cell - 1 <= top <= r * cell + cell - layout.tile + slack
            assert c * cell - 1 <= left <= c * cell + cell - layout.tile + slack
    assert shifted
    gray, _ = make_puzzle(_coords(n, size), layout, perms, torch.Generator().manual_seed(2), channel_shift=1, grayscale=1.0)
    assert torch.allclose(gray[:, :, 0], gray[:, :, 1]) and torch.allclose(gray[:, :, 0], gray[:, :, 2])


def test_jigsaw_inputs_are_standardised_per_tile():
    model = _model("jigsaw")
    tiles, labels = model.inputs(_batch(4))
    assert tiles.shape == (36, 3, 16, 16) and labels.shape == (4,)
    std, mean = torch.std_mean(tiles, dim=(-2, -1))
    assert mean.abs().max() < 1e-4 and (std - 1).abs().max() < 1e-3


# ---------------------------------------------------------------- relative position
def test_neighbour_index_matches_offset_and_patches_are_cut_in_place():
    assert NEIGHBOURS == ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
    size, n = 32, 96
    layout = relpos_layout(size, patch=8, gap_frac=0.25, jitter_frac=0.0)
    assert (layout.tile, layout.stride, layout.jitter, layout.extent) == (8, 10, 0, 28)
    patches, labels = make_pair(_coords(n, size), layout, torch.Generator().manual_seed(3))
    assert patches.shape == (n, 2, 3, 8, 8) and set(labels.tolist()) == set(range(8))
    ar = torch.arange(8, dtype=torch.float32)
    for i in range(n):
        (ct, cl), (nt, nl) = [(patches[i, j, 0, 0, 0].item(), patches[i, j, 1, 0, 0].item()) for j in range(2)]
        dr, dc = NEIGHBOURS[labels[i]]
        assert (nt - ct, nl - cl) == (dr * layout.stride, dc * layout.stride)
        assert layout.stride <= ct <= layout.stride + size - layout.extent  # grid origin within the frame
        for j in range(2):  # each patch is the contiguous 8x8 block at its origin
            top, left = patches[i, j, 0, 0, 0], patches[i, j, 1, 0, 0]
            assert torch.equal(patches[i, j, 0], (top + ar).view(8, 1).expand(8, 8))
            assert torch.equal(patches[i, j, 1], (left + ar).view(1, 8).expand(8, 8))


def test_relpos_jitter_moves_patches_within_bounds():
    layout = relpos_layout(32, patch=8, gap_frac=0.25, jitter_frac=0.1)  # +-1 px each way
    patches, labels = make_pair(_coords(200, 32), layout, torch.Generator().manual_seed(4))
    offsets = set()
    for i in range(200):
        dr, dc = NEIGHBOURS[labels[i]]
        dt = patches[i, 1, 0, 0, 0].item() - patches[i, 0, 0, 0, 0].item() - dr * layout.stride
        dl = patches[i, 1, 1, 0, 0].item() - patches[i, 0, 1, 0, 0].item() - dc * layout.stride
        offsets |= {dt, dl}
    assert offsets == {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_channel_dropping_leaves_exactly_one_channel():
    model = _model("relpos")
    patches, labels = model.inputs(_batch(16))
    assert patches.shape == (32, 3, 16, 16) and labels.shape == (16,)
    std = patches.std(dim=(-2, -1))  # random images: kept channel ~0.29, dropped ones ~0.003
    assert ((std > 0.05).sum(1) == 1).all()
    assert (std.sort(1).values[:, :2] < 0.01).all()


# ---------------------------------------------------------------- all three
@pytest.mark.parametrize("arch", ["vit", "conv"])
@pytest.mark.parametrize("name", PRETEXT)
def test_step_logs_accuracy_in_unit_interval(name, arch):
    model = _model(name, arch=arch)
    assert type(model).family == "pretext"
    loss, logs = model.training_step(_batch(8), 0)
    loss.backward()
    assert torch.isfinite(loss) and torch.is_tensor(logs["acc"]) and 0.0 <= logs["acc"].item() <= 1.0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


@pytest.mark.parametrize("name", PRETEXT)
def test_three_step_pretrain_writes_a_loadable_encoder(name, tiny_dataset, tmp_path):
    cfg = PretrainConfig(
        method=default_config(name, batch_size=8), data=DataConfig(path=str(tiny_dataset)), steps=3,
        backbone={"arch": "vit", **VIT}, progress=False, device="cpu", ckpt_every=3, log_every=3,
    )
    res = pretrain(cfg, tmp_path / name)
    assert res["steps"] == 3 and 0.0 <= res["val_metrics"]["acc"] <= 1.0 and math.isfinite(res["final_val_loss"])
    meta = json.loads((tmp_path / name / "encoder" / "encoder.json").read_text())
    assert meta["method"] == name and meta["val_metrics"]["acc"] == res["val_metrics"]["acc"]
    enc = load_encoder(tmp_path / name / "encoder")
    assert enc.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, enc.feature_dim)
