"""Image augmentations as small composable parts (operate on float (N,C,H,W) batches).

Every function takes float images in [0, 1] on any device and returns a new tensor (the input
is never modified). Random parameters are drawn per sample from an explicit CPU
``torch.Generator`` (the global CPU generator when ``None``) and then moved to the images'
device, so a seeded run repeats exactly and CUDA tensors work. The number of draws of a call
depends only on the batch size and the arguments, never on the device.

SSL views are built with ``apply_view(x, ViewAug(...), generator)`` and ``multi_crop``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ssl4rl.errors import UserError
from ssl4rl.fields import setting

# ITU-R BT.601 luma weights (as PIL and torchvision use for grayscale).
LUMA = (0.299, 0.587, 0.114)

Size = int | tuple[int, int]


def random_shift(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ random shift: replicate-pad by ``pad`` then crop back at a random offset per image (any dtype: uint8 frames
    shift before they become floats; edge pixels repeat, as replicate padding does)."""
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (oy.view(n, 1) - pad + torch.arange(h, device=x.device)).clamp(0, h - 1)
    cols = (ox.view(n, 1) - pad + torch.arange(w, device=x.device)).clamp(0, w - 1)
    return _windows(x, rows, cols)


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A ``size`` x ``size`` window of each image at a random offset (CURL's crop; every channel alike)."""
    n, _, h, w = x.shape
    ox = torch.randint(0, w - size + 1, (n,), generator=generator).to(x.device)
    oy = torch.randint(0, h - size + 1, (n,), generator=generator).to(x.device)
    rows = oy.view(n, 1) + torch.arange(size, device=x.device)
    cols = ox.view(n, 1) + torch.arange(size, device=x.device)
    return _windows(x, rows, cols)


def _windows(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Image i's pixels at ``rows[i]`` x ``cols[i]`` (N, C, h, w), laid out channels-last (what CPU convs want)."""
    n, h, w = len(x), rows.shape[1], cols.shape[1]
    picked = x[torch.arange(n, device=x.device).view(n, 1, 1), :, rows.view(n, h, 1), cols.view(n, 1, w)]
    return picked.permute(0, 3, 1, 2)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window (CURL acts on it)."""
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


# ----------------------------------------------------------------------------- checks and draws


def _check_images(x: torch.Tensor, where: str, rgb: bool = False) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(f"{where}: expected float images (N,C,H,W) in [0, 1], got {got}; convert with x.float() / 255")
    if rgb and x.shape[1] != 3:
        raise UserError(f"{where}: expected 3 colour channels, got {x.shape[1]}; pass RGB images (N,3,H,W)")


def _check_prob(p: float, where: str, name: str = "p") -> None:
    if not 0.0 <= p <= 1.0:
        raise UserError(f"{where}: {name} must be a probability in [0, 1], got {p}")


def _check_range(lo_hi: Sequence[float], where: str, name: str, low: float, high: float) -> tuple[float, float]:
    """``(lo, hi)`` with ``low < lo <= hi <= high`` (``low`` excluded), as floats."""
    if len(lo_hi) != 2:
        raise UserError(f"{where}: {name} must be two numbers (lo, hi), got {list(lo_hi)}")
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    if not low < lo <= hi <= high:
        raise UserError(f"{where}: {name} must satisfy {low} < lo <= hi <= {high}, got ({lo}, {hi})")
    return lo, hi


def _check_generator(generator: torch.Generator | None, where: str) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise UserError(f"{where}: generator must be a CPU torch.Generator, got one on {generator.device}")


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` CPU draws uniform in [lo, hi)."""
    return torch.rand(n, generator=generator) * (hi - lo) + lo


def _coins(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """CPU bool mask, each entry True with probability ``p``."""
    return torch.rand(n, generator=generator) < p


# Elementwise chains on a CPU are bound by memory traffic: run them on groups of samples
# small enough (about this many bytes) to stay in the cache.
_CHUNK_BYTES = 1 << 20


def _apply_masked(x: torch.Tensor, mask: torch.Tensor, fn: Callable[..., torch.Tensor], *params: torch.Tensor) -> torch.Tensor:
    """``fn(x[mask], *(p[mask]))`` written into a copy of ``x``.

    ``mask`` and ``params`` (one row per sample) are on the CPU, so which samples are selected
    is known without waiting for a GPU. Only the selected samples are computed; on a CPU they
    go through ``fn`` in cache-sized groups (``fn`` must keep the shape and treat samples
    independently), on a GPU all at once.
    """
    n = x.shape[0]
    rows = mask.nonzero().squeeze(1)
    if len(rows) == 0:
        return x.clone()
    full = len(rows) == n
    out = torch.empty_like(x) if full else x.clone()
    step = max(1, _CHUNK_BYTES // max(1, x[0].numel() * x.element_size())) if x.device.type == "cpu" else n
    for start in range(0, len(rows), step):
        sel = rows[start : start + step]
        ps = [p[sel].to(x.device) for p in params]
        if full:
            out[start : start + step] = fn(x[start : start + step], *ps)
        else:
            dev_sel = sel.to(x.device)
            out.index_copy_(0, dev_sel, fn(x.index_select(0, dev_sel), *ps))
    return out


def _pair(size: Size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise UserError(f"crop size must be positive, got {size}")
    return h, w


# ----------------------------------------------------------------------------- geometry


def random_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample ``n`` crop boxes ``(x0, y0, x1, y1)`` in pixels (float, sub-pixel) on the CPU.

    As torchvision's RandomResizedCrop: area fraction uniform in ``scale``, aspect ratio
    (width / height) log-uniform in ``ratio``, up to 10 tries per box for one that fits the
    image; when none fits, the first try is clamped to the image. Position uniform.
    """
    _check_generator(generator, "random_crop_boxes")
    s_lo, s_hi = _check_range(scale, "random_crop_boxes", "scale", 0.0, 1.0)
    r_lo, r_hi = _check_range(ratio, "random_crop_boxes", "ratio", 0.0, math.inf)
    tries = 10
    area = _uniform(n * tries, s_lo, s_hi, generator).view(n, tries) * (height * width)
    aspect = _uniform(n * tries, math.log(r_lo), math.log(r_hi), generator).view(n, tries).exp()
    w_all, h_all = (area * aspect).sqrt(), (area / aspect).sqrt()
    fits = (w_all <= width) & (h_all <= height)
    first = fits.int().argmax(1, keepdim=True)  # first try that fits, 0 when none does
    w = w_all.gather(1, first).squeeze(1).clamp(max=width)
    h = h_all.gather(1, first).squeeze(1).clamp(max=height)
    x0 = torch.rand(n, generator=generator) * (width - w)
    y0 = torch.rand(n, generator=generator) * (height - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: Size) -> torch.Tensor:
    """Crop box ``boxes[i] = (x0, y0, x1, y1)`` (pixels, image spans [0, W] x [0, H]) out of
    image ``i`` and resize it to ``size``, all in one batched bilinear ``grid_sample``.

    Pixel centres map to pixel centres, so the full box at the input size is the identity.
    Samples past the border take the edge pixel. No antialiasing: strong downscaling aliases.
    """
    _check_images(x, "crop_resize")
    n, c, h, w = x.shape
    out_h, out_w = _pair(size)
    if boxes.shape != (n, 4):
        raise UserError(f"crop_resize: boxes must have shape ({n}, 4), got {tuple(boxes.shape)}")
    if n == 0:
        return x.new_empty(0, c, out_h, out_w)
    b = boxes.to(x.device, x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = (b[:, 2] - b[:, 0]) / w
    theta[:, 0, 2] = (b[:, 0] + b[:, 2]) / w - 1
    theta[:, 1, 1] = (b[:, 3] - b[:, 1]) / h
    theta[:, 1, 2] = (b[:, 1] + b[:, 3]) / h - 1
    grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(
    x: torch.Tensor,
    size: Size,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample random crop (``random_crop_boxes``) resized to ``size``: (N,C,size,size)."""
    _check_images(x, "random_resized_crop")
    boxes = random_crop_boxes(x.shape[0], x.shape[-2], x.shape[-1], scale, ratio, generator)
    return crop_resize(x, boxes, size)


def random_hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check_images(x, "random_hflip")
    _check_prob(p, "random_hflip")
    _check_generator(generator, "random_hflip")
    return _apply_masked(x, _coins(x.shape[0], p, generator), lambda xs: xs.flip(-1))


# ----------------------------------------------------------------------------- colour


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) -> (N,1,H,W) BT.601 luma."""
    return (x * torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) values -> (N,1,1,1) on x's device and dtype, to broadcast over images."""
    return values.to(x.device, x.dtype).view(-1, 1, 1, 1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(other + factor * (x - other))`` with one factor per sample."""
    return (x - other).mul_(_per_sample(factor, x)).add_(other).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(x * factor)`` with one factor per sample (N,)."""
    return (x * _per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean luma (a grey image): factor 0 grey, 1 unchanged."""
    return _blend(x, _luma(x).mean((1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its own grayscale version: factor 0 grayscale, 1 unchanged."""
    return _blend(x, _luma(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each image by ``shift`` (N,) turns; saturation and value are kept.

    The hue ``h`` in sextants [0, 6) comes from the largest channel as in RGB->HSV; the result
    is the hexcone HSV->RGB, written per channel as
    ``min + (max - min) * clamp(d(h, c) - 1, 0, 1)`` with ``d`` the distance around the hue
    circle to the channel's opposite hue ``c`` (3, 5, 1 for R, G, B).
    """
    maxc, minc = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    delta = maxc - minc
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~(is_r | is_g)
    # hue * delta; ties between channels give the same hue either way, grey pixels hue 0
    num = is_r.to(x.dtype) * (g - b) + is_g.to(x.dtype) * (b - r + 2 * delta) + is_b.to(x.dtype) * (r - g + 4 * delta)
    hue = num / delta.clamp(min=1e-12) + 6 * _per_sample(shift, x)
    hue = hue - 6 * torch.floor(hue / 6)
    dist = (hue - torch.tensor((3.0, 5.0, 1.0), device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).abs_()
    dist = torch.minimum(dist, 6 - dist)
    return dist.sub_(1).clamp_(0.0, 1.0).mul_(delta).add_(minc)


def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchvision-style colour jitter, applied to each sample with probability ``p``.

    Per sample: brightness, contrast and saturation factors uniform in
    ``[max(0, 1 - s), 1 + s]``, hue shift uniform in ``[-hue, hue]`` turns (``hue`` <= 0.5),
    each op clamped to [0, 1]. The order of the four ops is random: one permutation is drawn
    per call (per batch), shared by all samples of the batch. Ops with strength 0 are skipped.
    """
    where = "color_jitter"
    _check_images(x, where, rgb=True)
    _check_prob(p, where)
    _check_generator(generator, where)
    for name, s in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if s < 0:
            raise UserError(f"{where}: {name} must be >= 0, got {s}")
    if not 0.0 <= hue <= 0.5:
        raise UserError(f"{where}: hue must be in [0, 0.5] (a fraction of a full turn), got {hue}")
    n = x.shape[0]
    mask = _coins(n, p, generator)
    order = torch.randperm(4, generator=generator).tolist()
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    strengths = (brightness, contrast, saturation, hue)
    ranges = [(max(0.0, 1 - s), 1 + s) for s in strengths[:3]] + [(-hue, hue)]
    factors = [_uniform(n, lo, hi, generator) for lo, hi in ranges]
    active = [i for i in order if strengths[i] > 0]

    def jitter(xs: torch.Tensor, *fs: torch.Tensor) -> torch.Tensor:
        for i in active:
            xs = ops[i](xs, fs[i])
        return xs.clamp(0.0, 1.0)

    return _apply_masked(x, mask, jitter, *factors)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma replicated to 3 channels."""
    return _luma(x).expand(-1, 3, -1, -1).contiguous()


def random_grayscale(x: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each image by its grayscale version (``grayscale``) with probability ``p``."""
    _check_images(x, "random_grayscale", rgb=True)
    _check_prob(p, "random_grayscale")
    _check_generator(generator, "random_grayscale")
    return _apply_masked(x, _coins(x.shape[0], p, generator), grayscale)


def solarize(x: torch.Tensor, p: float = 0.0, threshold: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``p`` per image, invert the pixels at or above ``threshold`` (``1 - x``)."""
    _check_images(x, "solarize")
    _check_prob(p, "solarize")
    _check_generator(generator, "solarize")
    return _apply_masked(x, _coins(x.shape[0], p, generator), lambda xs: torch.where(xs >= threshold, 1 - xs, xs))


def channel_drop(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Colour dropping (Doersch et al. 2015), against chromatic-aberration shortcuts.

    With probability ``p`` per image, one colour channel chosen uniformly is kept and the other
    two are replaced by their own per-image mean plus Gaussian noise whose standard deviation
    is 1/100 of that channel's per-image standard deviation (clamped to [0, 1]). The noise is
    drawn on the CPU for every image, selected or not, so it suits large ``p``.
    """
    _check_images(x, "channel_drop", rgb=True)
    _check_prob(p, "channel_drop")
    _check_generator(generator, "channel_drop")
    n = x.shape[0]
    mask = _coins(n, p, generator)
    keep = F.one_hot(torch.randint(0, 3, (n,), generator=generator), 3).to(x.dtype)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)

    def drop(xs: torch.Tensor, kept: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        std, mean = torch.std_mean(xs, dim=(2, 3), keepdim=True)
        filled = (z * (0.01 * std) + mean).clamp_(0.0, 1.0)
        kept = kept.view(-1, 3, 1, 1)
        return xs * kept + filled * (1 - kept)

    return _apply_masked(x, mask, drop, keep, noise)


# ----------------------------------------------------------------------------- blur


def default_blur_kernel_size(height: int, width: int) -> int:
    """About 10% of the shorter image side, odd, at least 3 (SimCLR's choice)."""
    return max(3, int(0.1 * min(height, width)) // 2 * 2 + 1)


def gaussian_blur(
    x: torch.Tensor,
    p: float = 0.5,
    sigma: Sequence[float] = (0.1, 2.0),
    kernel_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian blur with probability ``p`` per image and per-image sigma uniform in ``sigma``.

    Separable: one horizontal and one vertical depthwise (grouped) convolution over the whole
    batch with one kernel per image; reflect padding, so a constant image stays constant.
    ``kernel_size`` defaults to ``default_blur_kernel_size``.
    """
    where = "gaussian_blur"
    _check_images(x, where)
    _check_prob(p, where)
    _check_generator(generator, where)
    s_lo, s_hi = _check_range(sigma, where, "sigma", 0.0, math.inf)
    h, w = x.shape[-2:]
    k = default_blur_kernel_size(h, w) if kernel_size is None else int(kernel_size)
    if k < 1 or k % 2 == 0 or k // 2 >= min(h, w):
        raise UserError(f"{where}: kernel_size must be odd, positive and below twice the image side, got {k}")
    n = x.shape[0]
    mask = _coins(n, p, generator)
    sigmas = _uniform(n, s_lo, s_hi, generator)

    def blur(xs: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        m, c = xs.shape[:2]
        t = torch.arange(k, device=xs.device, dtype=xs.dtype) - k // 2
        kernel = torch.exp(-0.5 * (t.view(1, k) / _per_sample(sig, xs).view(m, 1)) ** 2)
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (m*c, k)
        pad = k // 2
        y = F.pad(xs.reshape(1, m * c, h, w), (pad, pad, pad, pad), mode="reflect")
        y = F.conv2d(y, kernel.view(m * c, 1, 1, k), groups=m * c)
        y = F.conv2d(y, kernel.view(m * c, 1, k, 1), groups=m * c)
        return y.view(m, c, h, w)

    return _apply_masked(x, mask, blur, sigmas)


# ----------------------------------------------------------------------------- views


def scale_pair(value: Any) -> str | None:
    """The problem with a crop-scale setting, or None: it must be two area fractions ``[lo, hi]``, ``lo <= hi``."""
    if not isinstance(value, (list, tuple)):
        return None  # one number of the pair (its bounds are declared beside the setting)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if len(value) != 2 or not numbers or value[0] > value[1]:
        return "must be two area fractions [lo,hi] with 0 < lo <= hi <= 1, e.g. [0.2,1.0]"
    return None


@dataclass
class ViewAug:
    """One SimCLR/BYOL/DINO-style view; each part is skipped when its probability is 0.

    Order: random resized crop to ``size`` (None: the input size; aspect ratio in [3/4, 4/3];
    ``crop_scale=(1, 1)``: no crop, only a resize when the size differs), DrQ shift by ``shift_pad``, horizontal flip,
    colour jitter (probability ``jitter``), grayscale, Gaussian blur, solarize.
    Usable as a Hydra structured config (``OmegaConf.structured(ViewAug)``).
    """

    size: int | None = setting(None, ge=8, le=1024)
    crop_scale: tuple[float, float] = setting((0.2, 1.0), gt=0, le=1, check=scale_pair)  # area fractions (lo, hi)
    flip: float = setting(0.5, ge=0, le=1)
    jitter: float = setting(0.8, ge=0, le=1)  # probability of the colour jitter
    brightness: float = setting(0.4, ge=0, le=1)
    contrast: float = setting(0.4, ge=0, le=1)
    saturation: float = setting(0.2, ge=0, le=1)
    hue: float = setting(0.1, ge=0, le=0.5)  # a fraction of a full turn
    grayscale: float = setting(0.2, ge=0, le=1)
    blur: float = setting(0.0, ge=0, le=1)
    solarize: float = setting(0.0, ge=0, le=1)
    shift_pad: int = setting(0, ge=0, le=64)


def apply_view(x: torch.Tensor, aug: ViewAug | Any, generator: torch.Generator | None = None) -> torch.Tensor:
    """Float images (N,3,H,W) in [0, 1] -> one augmented view per image (see ``ViewAug``).

    ``aug`` may also be an OmegaConf config with ViewAug's fields.
    """
    return _view(x, aug, aug.size, aug.crop_scale, generator)


def multi_crop(
    x: torch.Tensor,
    n_global: int,
    global_size: int,
    global_scale: Sequence[float],
    n_local: int,
    local_size: int,
    local_scale: Sequence[float],
    aug: ViewAug | Any,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """DINO/SwAV multi-crop: ``n_global`` views at ``global_size`` then ``n_local`` at ``local_size``.

    Each view is (N,C,size,size); ``aug``'s size and crop scale are replaced by the global or
    local ones. All views of one size are produced as one batched tensor and returned as
    its ``n``-way split (so ``torch.cat(views[:n_global])`` is that batch).
    """
    if n_global < 0 or n_local < 0:
        raise UserError(f"multi_crop: view counts must be >= 0, got n_global={n_global}, n_local={n_local}")
    views: list[torch.Tensor] = []
    for count, size, scale in ((n_global, global_size, global_scale), (n_local, local_size, local_scale)):
        if count > 0:
            views += list(_view(x.repeat(count, 1, 1, 1), aug, size, scale, generator).chunk(count))
    return views


def _view(
    x: torch.Tensor, aug: Any, size: Size | None, crop_scale: Sequence[float], generator: torch.Generator | None
) -> torch.Tensor:
    _check_images(x, "apply_view", rgb=True)
    _check_generator(generator, "apply_view")
    source = x
    out_size = _pair(size) if size is not None else (x.shape[-2], x.shape[-1])
    scale = _check_range(crop_scale, "apply_view", "crop_scale", 0.0, 1.0)
    if scale != (1.0, 1.0):
        x = random_resized_crop(x, out_size, scale, generator=generator)
    elif out_size != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=out_size, mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)
    if aug.shift_pad > 0:
        x = random_shift(x, aug.shift_pad, generator)
    if aug.flip > 0:
        x = random_hflip(x, aug.flip, generator)
    if aug.jitter > 0:
        x = color_jitter(x, aug.brightness, aug.contrast, aug.saturation, aug.hue, aug.jitter, generator)
    if aug.grayscale > 0:
        x = random_grayscale(x, aug.grayscale, generator)
    if aug.blur > 0:
        x = gaussian_blur(x, aug.blur, generator=generator)
    if aug.solarize > 0:
        x = solarize(x, aug.solarize, generator=generator)
    return x.clone() if x is source else x
