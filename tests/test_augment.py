"""Batched augmentations: shapes, ranges, seeding, per-sample randomness and the formulas."""

import kornia
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torchvision.transforms.v2 import functional as TF

from ssl4rl import augment as A
from ssl4rl.errors import UserError
from helpers import assert_one_line

ALL_ON = A.ViewAug(size=12, crop_scale=(0.3, 1.0), blur=0.5, solarize=0.5, shift_pad=2)

# name -> op(x, generator), each with its random parameters switched on
OPS = {
    "crop": lambda x, g: A.random_resized_crop(x, 12, (0.2, 1.0), generator=g),
    "hflip": lambda x, g: A.random_hflip(x, 0.5, g),
    "jitter": lambda x, g: A.color_jitter(x, p=0.8, generator=g),
    "grayscale": lambda x, g: A.random_grayscale(x, 0.5, g),
    "blur": lambda x, g: A.gaussian_blur(x, 0.8, generator=g),
    "solarize": lambda x, g: A.solarize(x, 0.5, generator=g),
    "channel_drop": lambda x, g: A.channel_drop(x, 0.8, g),
    "view": lambda x, g: A.apply_view(x, ALL_ON, g),
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, size: int = 16, seed: int = 0, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=gen(seed)) * (hi - lo) + lo


def luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def all_pairs_differ(y: torch.Tensor) -> bool:
    d = torch.cdist(y.flatten(1), y.flatten(1))
    return bool((d + torch.eye(len(y)) > 1e-4).all())


@pytest.mark.parametrize("name", OPS)
def test_shape_range_new_tensor(name):
    x = images()
    before = x.clone()
    y = OPS[name](x, gen())
    side = 12 if name in ("crop", "view") else 16
    assert y.shape == (8, 3, side, side) and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(x, before) and y.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("name", OPS)
def test_seed_repeats_and_other_seed_differs(name):
    x = images()
    assert torch.equal(OPS[name](x, gen(0)), OPS[name](x, gen(0)))
    assert not torch.equal(OPS[name](x, gen(0)), OPS[name](x, gen(1)))


@pytest.mark.parametrize(
    "op",
    [
        lambda x, g: A.random_resized_crop(x, 12, generator=g),
        lambda x, g: A.color_jitter(x, p=1.0, generator=g),
        lambda x, g: A.gaussian_blur(x, 1.0, sigma=(0.3, 2.0), generator=g),
        lambda x, g: A.apply_view(x, ALL_ON, g),
    ],
    ids=["crop", "jitter", "blur", "view"],
)
def test_samples_get_their_own_parameters(op):
    x = images(n=1).expand(6, -1, -1, -1)
    assert all_pairs_differ(op(x, gen()))


def test_chunked_cpu_path_equals_one_pass(monkeypatch):
    x = images(n=200, size=32)  # > 1 MiB: the CPU path splits it into groups
    ops = [OPS["jitter"], OPS["blur"], OPS["channel_drop"], lambda x, g: A.color_jitter(x, p=1.0, generator=g)]
    chunked = [op(x, gen()) for op in ops]
    monkeypatch.setattr(A, "_CHUNK_BYTES", 1 << 40)
    for op, y in zip(ops, chunked, strict=True):
        torch.testing.assert_close(op(x, gen()), y, atol=1e-6, rtol=0)


def test_full_crop_is_identity_and_boxes_follow_scale_and_ratio():
    x = images()
    torch.testing.assert_close(A.random_resized_crop(x, 16, (1.0, 1.0), (1.0, 1.0), gen()), x, atol=1e-5, rtol=0)
    boxes = A.random_crop_boxes(2000, 32, 24, scale=(0.2, 0.6), ratio=(0.5, 2.0), generator=gen())
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 24 + 1e-4).all() and (boxes[:, 3] <= 32 + 1e-4).all()
    area = w * h / (32 * 24)
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 0.6 + 1e-5 and area.max() - area.min() > 0.3
    assert (w / h).min() >= 0.5 - 1e-5 and (w / h).max() <= 2.0 + 1e-5
    too_big = A.random_crop_boxes(50, 16, 16, scale=(1.0, 1.0), ratio=(2.0, 2.0), generator=gen())
    assert (too_big[:, 2:] <= 16).all() and (too_big[:, :2] >= 0).all()  # clamped to the image


def test_crop_resize_cuts_the_box_and_keeps_constants():
    x = images()
    boxes = torch.tensor([[2.0, 3.0, 10.0, 9.0]]).expand(8, 4)  # x0, y0, x1, y1
    torch.testing.assert_close(A.crop_resize(x, boxes, (6, 8)), x[:, :, 3:9, 2:10], atol=1e-5, rtol=0)
    flat = torch.full((2, 3, 16, 16), 0.3)
    corners = torch.tensor([[0.0, 0.0, 4.0, 4.0], [12.0, 12.0, 16.0, 16.0]])
    y = A.crop_resize(flat, corners, 16)  # upscaled: the outer samples lie past the pixel centres
    torch.testing.assert_close(y, torch.full_like(y, 0.3))


def test_hflip():
    x = images()
    assert torch.equal(A.random_hflip(x, 1.0, gen()), torch.flip(x, [-1]))
    assert torch.equal(A.random_hflip(x, 0.0, gen()), x)
    y = A.random_hflip(x, 0.5, gen())
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(8)]
    assert all(f or torch.equal(y[i], x[i]) for i, f in enumerate(flipped)) and 0 < sum(flipped) < 8


def test_grayscale_is_bt601_luma_in_three_channels():
    x = images()
    y = A.random_grayscale(x, 1.0, gen())
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    torch.testing.assert_close(y[:, :1], luma(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("part", ["brightness", "contrast", "saturation"])
def test_jitter_factor_matches_direct_blend(part):
    """With one part on, out = ref + f * (x - ref) with one factor f in [1-s, 1+s] per sample."""
    x = images(lo=0.4, hi=0.6)  # no clamping for factors in [0.5, 1.5]
    strengths = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, part: 0.5}
    y = A.color_jitter(x, **strengths, p=1.0, generator=gen())
    ref = {
        "brightness": torch.zeros_like(x),
        "contrast": luma(x).mean((1, 2, 3), keepdim=True),
        "saturation": luma(x),
    }[part].expand_as(x)
    f = ((y - ref) * (x - ref)).sum((1, 2, 3)) / ((x - ref) ** 2).sum((1, 2, 3))
    torch.testing.assert_close(y, ref + f.view(-1, 1, 1, 1) * (x - ref), atol=1e-5, rtol=0)
    assert f.min() >= 0.5 - 1e-4 and f.max() <= 1.5 + 1e-4 and f.std() > 0.05


def test_brightness_clamps():
    x = images()
    y = A.color_jitter(x, brightness=0.4, contrast=0, saturation=0, hue=0, p=1.0, generator=gen())
    low = x < 0.7  # x * f < 1 there for every f <= 1.4
    f = (y * low).sum((1, 2, 3)) / (x * low).sum((1, 2, 3))
    torch.testing.assert_close(y, (x * f.view(-1, 1, 1, 1)).clamp(0, 1), atol=1e-5, rtol=0)


def test_hue_rotation():
    x = images()
    for turns in (0.0, 1.0, -1.0, 3.0):
        torch.testing.assert_close(A.adjust_hue(x, torch.full((8,), turns)), x, atol=1e-5, rtol=0)
    red = torch.tensor([1.0, 0.2, 0.2]).view(1, 3, 1, 1).expand(3, 3, 2, 2)
    rotated = A.adjust_hue(red, torch.tensor([0.0, 1 / 3, 2 / 3]))
    for i, expect in enumerate(([1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0])):
        torch.testing.assert_close(rotated[i, :, 0, 0], torch.tensor(expect), atol=1e-5, rtol=0)
    yellow = torch.tensor([1.0, 1.0, 0.2]).view(1, 3, 1, 1)  # two channels tie for the maximum
    torch.testing.assert_close(A.adjust_hue(yellow, torch.tensor([1 / 3]))[0, :, 0, 0], torch.tensor([0.2, 1.0, 1.0]))
    shift = torch.rand(8, generator=gen()) - 0.5
    levels = torch.randint(0, 4, x.shape, generator=gen()) / 3  # many ties between channels, and greys
    for img in (x, levels):
        expect = kornia.enhance.adjust_hue(img, shift * 2 * torch.pi)
        torch.testing.assert_close(A.adjust_hue(img, shift), expect, atol=1e-5, rtol=0)


def test_jitter_hue_only_keeps_value_and_saturation_and_zero_is_identity():
    x = images()
    y = A.color_jitter(x, brightness=0, contrast=0, saturation=0, hue=0.5, p=1.0, generator=gen())
    torch.testing.assert_close(y.amax(1), x.amax(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.amin(1), x.amin(1), atol=1e-5, rtol=0)
    assert (y - x).abs().max() > 0.1
    assert torch.equal(A.color_jitter(x, 0, 0, 0, 0, p=1.0, generator=gen()), x)


def test_blur():
    flat = torch.full((4, 3, 16, 16), 0.37)
    torch.testing.assert_close(A.gaussian_blur(flat, 1.0, generator=gen()), flat)
    noise = images(size=32)
    assert (A.gaussian_blur(noise, 1.0, sigma=(1.0, 2.0), generator=gen()).var((1, 2, 3)) < 0.5 * noise.var((1, 2, 3))).all()
    reference = TF.gaussian_blur(noise, [5, 5], [1.3, 1.3])
    torch.testing.assert_close(A.gaussian_blur(noise, 1.0, (1.3, 1.3), 5, gen()), reference, atol=1e-5, rtol=0)
    assert [A.default_blur_kernel_size(s, s) for s in (16, 32, 64, 84, 224)] == [3, 3, 7, 9, 23]


def test_solarize_formula():
    x = images()
    assert torch.equal(A.solarize(x, 1.0, 0.3, gen()), torch.where(x >= 0.3, 1 - x, x))
    assert torch.equal(A.solarize(x, 0.0, 0.3, gen()), x)


def test_channel_drop_keeps_one_channel_and_flattens_two():
    x = images()
    y = A.channel_drop(x, 1.0, gen())
    kept = (y == x).flatten(2).all(2)  # (N, 3)
    assert (kept.sum(1) == 1).all() and len(set(kept.int().argmax(1).tolist())) > 1
    dropped = ~kept
    std, mean = torch.std_mean(y, dim=(2, 3))
    x_std, x_mean = torch.std_mean(x, dim=(2, 3))
    assert (std[dropped] <= 0.02 * x_std[dropped]).all()
    torch.testing.assert_close(mean[dropped], x_mean[dropped], atol=1e-3, rtol=0)


def test_view_parts_skip_and_resize_only():
    x = images()
    off = A.ViewAug(crop_scale=(1.0, 1.0), flip=0, jitter=0, grayscale=0)
    y = A.apply_view(x, off, gen())
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    resized = A.apply_view(x, A.ViewAug(size=8, crop_scale=(1.0, 1.0), flip=0, jitter=0, grayscale=0), gen())
    torch.testing.assert_close(resized, F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True))


def test_view_aug_is_a_structured_config():
    cfg = OmegaConf.merge(OmegaConf.structured(A.ViewAug), {"crop_scale": [0.5, 1.0], "blur": 0.5, "size": 12})
    x = images()
    y = A.apply_view(x, cfg, gen())
    assert y.shape == (8, 3, 12, 12)
    assert torch.equal(A.apply_view(x, OmegaConf.to_object(cfg), gen()), y)
    assert torch.equal(A.apply_view(x, A.ViewAug(size=12, crop_scale=(0.5, 1.0), blur=0.5), gen()), y)


def test_multi_crop_sizes_and_order():
    x = images(n=4)
    views = A.multi_crop(x, 2, 16, (0.4, 1.0), 3, 8, (0.05, 0.4), A.ViewAug(), gen())
    assert [tuple(v.shape) for v in views] == [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 3
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[2], views[3])
    assert A.multi_crop(x, 2, 16, (0.4, 1.0), 0, 8, (0.05, 0.4), A.ViewAug(), gen())[1].shape == (4, 3, 16, 16)


def test_runs_on_explicit_cpu_device():
    x = images().to(torch.device("cpu"))
    assert A.apply_view(x, ALL_ON, gen()).device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", OPS)
def test_cuda_matches_cpu(name):
    x = images(n=64, size=32)
    y = OPS[name](x.cuda(), gen())
    assert y.is_cuda
    torch.testing.assert_close(y.cpu(), OPS[name](x, gen()), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "call, needles",
    [
        (lambda x: A.random_hflip(x, 1.5), ["random_hflip", "[0, 1]"]),
        (lambda x: A.color_jitter((x * 255).byte()), ["color_jitter", "x.float() / 255"]),
        (lambda x: A.color_jitter(x, hue=0.7), ["hue", "0.5"]),
        (lambda x: A.gaussian_blur(x, kernel_size=4), ["kernel_size", "odd"]),
        (lambda x: A.random_resized_crop(x, 8, scale=(0.0, 1.0)), ["scale"]),
        (lambda x: A.random_grayscale(x[:, :1]), ["3 colour channels"]),
        (lambda x: A.apply_view(x, A.ViewAug(crop_scale=(0.5, 2.0))), ["crop_scale"]),
    ],
)
def test_bad_arguments_raise_one_line(call, needles):
    with pytest.raises(UserError) as e:
        call(images())
    assert_one_line(e, *needles)


# --- DrQ's random shift and CURL's random crop (uint8 frame stacks, one offset per observation) -------------------


def _offsets(n: int, span: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, y) offsets random_shift / random_crop draw from ``gen(seed)``: x for all images, then y."""
    g = gen(seed)
    return torch.randint(0, span, (n,), generator=g), torch.randint(0, span, (n,), generator=g)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_shift_is_replicate_pad_then_crop(dtype):
    n, pad, size = 16, 3, 12
    x = torch.randint(0, 256, (n, 9, size, size), generator=gen(5), dtype=torch.uint8).to(dtype)  # 3 stacked frames
    y = A.random_shift(x, pad, gen(1))
    assert y.shape == x.shape and y.dtype == dtype
    ox, oy = _offsets(n, 2 * pad + 1, 1)
    padded = F.pad(x.float(), (pad,) * 4, mode="replicate")
    for i in range(n):  # every channel of an observation (all its frames) moves alike
        expect = padded[i, :, oy[i] : oy[i] + size, ox[i] : ox[i] + size]
        assert torch.equal(y[i].float(), expect), i
    moved = [i for i in range(n) if (ox[i], oy[i]) != (pad, pad)]
    assert moved and all(not torch.equal(y[i], x[i]) for i in moved)  # content moves
    assert all(torch.equal(y[i], x[i]) for i in range(n) if i not in moved)  # the centre offset is the identity
    assert torch.equal(A.random_shift(x, pad, gen(1)), y)  # seeded: repeats
    assert torch.equal(A.random_shift(x, 0, gen(1)), x)


def test_random_shift_of_a_channels_last_batch_and_copies():
    x = torch.randint(0, 256, (4, 6, 10, 10), generator=gen(0), dtype=torch.uint8)
    y = A.random_shift(x.repeat(3, 1, 1, 1), 2, gen(2))  # three shifted copies, as DrQ's K / M views
    assert y.shape == (12, 6, 10, 10) and y.is_contiguous(memory_format=torch.channels_last)
    views = [y[j * 4 : (j + 1) * 4] for j in range(3)]
    assert not (torch.equal(views[0], views[1]) and torch.equal(views[1], views[2]))


def test_random_crop_is_a_window_at_the_drawn_offset():
    n, size, out = 8, 14, 10
    x = torch.randint(0, 256, (n, 9, size, size), generator=gen(3), dtype=torch.uint8)
    y = A.random_crop(x, out, gen(4))
    assert y.shape == (n, 9, out, out) and y.dtype == torch.uint8
    ox, oy = _offsets(n, size - out + 1, 4)
    for i in range(n):
        assert torch.equal(y[i], x[i, :, oy[i] : oy[i] + out, ox[i] : ox[i] + out])
    assert torch.equal(A.center_crop(x, out), x[..., 2:12, 2:12])
