"""Dense pretext methods: colorization (Lab, ab bins, soft targets) and the context encoder
(masks, masked L2 with overlap, adversarial term), their figures and a short pretraining run."""

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ssl4rl.augment import ViewAug
from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.encoders import build_encoder, load_encoder
from ssl4rl.errors import UserError
from ssl4rl.losses.soft_ce import soft_cross_entropy
from ssl4rl.losses.weighted_l2 import weighted_l2
from ssl4rl.methods import Batch, MethodContext, build_method, default_config
from ssl4rl.methods.inpainting import block_mask, center_mask, loss_weights, region_mask
from ssl4rl.optim import build_optimizer
from ssl4rl.parts.decoders import ConvDecoder, decoder_for, map_size
from ssl4rl.parts.lab import (
    ab_points,
    annealed_mean,
    gamut_bins,
    lab_to_rgb,
    quantize_ab,
    rebalance_weights,
    rgb_to_lab,
    soft_encode,
)
from ssl4rl.pretrain import pretrain

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
NO_AUG = ViewAug(crop_scale=(1.0, 1.0), flip=0.0, jitter=0.0, grayscale=0.0)
PNG = b"\x89PNG\r\n\x1a\n"


def _model(name, arch="vit", seed=0, **options):
    torch.manual_seed(seed)
    enc = build_encoder(arch, **(VIT if arch == "vit" else {"image_size": 32}))
    ctx = MethodContext(generator=torch.Generator().manual_seed(seed))
    return build_method(default_config(name, batch_size=4, **options), enc, ctx)


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n))


# ---------------------------------------------------------------- Lab and ab bins
def test_lab_round_trip():
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(rgb)
    assert 0 <= lab[:, 0].min() and lab[:, 0].max() <= 100
    assert (lab_to_rgb(lab) - rgb).abs().max() < 1e-3


def test_gamut_bins_and_quantisation():
    bins = gamut_bins(10.0)
    assert 240 <= len(bins) <= 313 and bins.shape[1] == 2
    assert torch.equal(bins, torch.round(bins / 10) * 10)  # centres on the grid
    assert len(torch.unique(bins, dim=0)) == len(bins)
    assert torch.equal(quantize_ab(bins, bins), torch.arange(len(bins)))
    # every sRGB colour (denser than the sample that made the bins) is within half a cell of a bin
    v = torch.linspace(0, 1, 37)
    rgb = torch.stack(torch.meshgrid(v, v, v, indexing="ij")).reshape(1, 3, -1, 1)
    ab = ab_points(rgb_to_lab(rgb))
    nearest = bins[quantize_ab(ab, bins)]
    assert (ab - nearest).abs().max() <= 5.0 + 1e-4


def test_soft_encoding_is_a_gaussian_over_the_five_nearest_bins():
    bins = gamut_bins(10.0)
    points = torch.tensor([[3.0, -6.0], [0.0, 0.0], [41.0, 12.5]])  # no ties at the 5th bin
    index, weights = soft_encode(points, bins, k=5, sigma=5.0)
    assert index.shape == weights.shape == (3, 5)
    assert torch.allclose(weights.sum(1), torch.ones(3))
    for i, p in enumerate(points):
        d2 = ((bins - p) ** 2).sum(1)
        order = d2.argsort()[:5]
        assert set(index[i].tolist()) == set(order.tolist())
        g = torch.exp(-d2[index[i]] / (2 * 5.0**2))
        assert torch.allclose(weights[i], g / g.sum(), atol=1e-6)
    # a point on a bin centre puts most mass there and is quantised to it
    assert index[1, 0] == quantize_ab(points[1:2], bins)[0] and weights[1, 0] == weights[1].max()


def test_soft_cross_entropy_matches_dense_targets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g)
    index = torch.stack([torch.randperm(10, generator=g)[:3] for _ in range(6)])
    weights = torch.softmax(torch.randn(6, 3, generator=g), 1)
    dense = torch.zeros(6, 10).scatter_(1, index, weights)
    assert torch.allclose(soft_cross_entropy(logits, index, weights), F.cross_entropy(logits, dense), atol=1e-6)
    sw = torch.rand(6, generator=g)
    per_row = -(dense * F.log_softmax(logits, 1)).sum(1)
    assert torch.allclose(soft_cross_entropy(logits, index, weights, sw), (per_row * sw).mean(), atol=1e-6)


def test_rebalance_weights_formula():
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])  # far apart: smoothing is the identity
    counts = torch.tensor([6.0, 3.0, 1.0])
    p = counts / counts.sum()
    w = 1 / (0.5 * p + 0.5 / 3)
    w = w / (p * w).sum()
    got = rebalance_weights(counts, centres, sigma=5.0, lam=0.5)
    assert torch.allclose(got, w, atol=1e-6)
    assert got[2] > got[1] > got[0] and torch.isclose((p * got).sum(), torch.tensor(1.0))


def test_annealed_mean_of_a_peaked_distribution_is_its_bin():
    bins = gamut_bins(10.0)
    logits = torch.zeros(1, len(bins), 2, 2)
    logits[0, 7, :, :] = 50.0
    ab = annealed_mean(logits, bins)
    assert torch.allclose(ab[0, :, 1, 1], bins[7], atol=1e-3)


# ---------------------------------------------------------------- decoder
@pytest.mark.parametrize("arch", ["vit", "conv"])
def test_decoder_reaches_any_output_size(arch):
    enc = build_encoder(arch, **(VIT if arch == "vit" else {"image_size": 32}))
    side = map_size(enc)
    assert side == (4 if arch == "vit" else 9)
    dec = decoder_for(enc, 5, 32)
    fmap = enc.forward_map(torch.zeros(2, 3, 32, 32))
    assert dec(fmap, (32, 32)).shape == (2, 5, 32, 32) and dec(fmap, (8, 6)).shape == (2, 5, 8, 6)
    assert isinstance(dec, ConvDecoder)


# ---------------------------------------------------------------- colorization
def test_colorization_loss_is_soft_cross_entropy_on_l_only_inputs():
    m = _model("colorization", aug=NO_AUG)
    batch = _batch()
    loss, logs = m.training_step(batch, 0)
    assert set(logs) == {"loss", "acc"} and all(isinstance(v, torch.Tensor) for v in logs.values())
    lab = rgb_to_lab(batch.images.float() / 255)
    logits = m.logits(lab)
    assert logits.shape == (4, len(m.bins), 8, 8)  # 1/4 of the 32 px image
    # by hand: ab averaged over each 4x4 cell, soft-encoded, dense cross-entropy
    ab = lab[:, 1:].reshape(4, 2, 8, 4, 8, 4).mean((3, 5)).permute(0, 2, 3, 1).reshape(-1, 2)
    index, weights = soft_encode(ab, m.bins)
    dense = torch.zeros(len(ab), len(m.bins)).scatter_(1, index, weights)
    flat = logits.permute(0, 2, 3, 1).reshape(-1, len(m.bins))
    assert torch.allclose(loss, F.cross_entropy(flat, dense), atol=1e-5)
    assert torch.isclose(logs["acc"], (flat.argmax(1) == quantize_ab(ab, m.bins)).float().mean())
    # the encoder sees the lightness only: other colours with the same L give the same logits
    recoloured = torch.cat([lab[:, :1], lab[:, 1:].flip(0)], 1)
    assert torch.allclose(m.logits(recoloured), logits)
    grey = m.grey(lab)
    assert grey.shape == (4, 3, 32, 32) and torch.equal(grey[:, 0], grey[:, 2])


def test_colorization_rebalancing_counts_the_training_set():
    batch = _batch(8)
    torch.manual_seed(0)
    enc = build_encoder("vit", **VIT)
    ctx = MethodContext(generator=torch.Generator().manual_seed(0), all_batches=lambda: iter([batch]))
    m = build_method(default_config("colorization", rebalance=True, aug=NO_AUG), enc, ctx)
    assert torch.equal(m.class_weights, torch.ones(len(m.bins)))
    m.on_train_start()
    lab = rgb_to_lab(batch.images.float() / 255)
    nearest = quantize_ab(m.target_ab(lab, (8, 8)), m.bins)
    expected = rebalance_weights(torch.bincount(nearest, minlength=len(m.bins)).float(), m.bins)
    assert torch.allclose(m.class_weights, expected)
    with pytest.raises(UserError):
        _model("colorization", rebalance=True).on_train_start()  # no training set to count


# ---------------------------------------------------------------- inpainting masks and loss
def test_masks():
    c = center_mask(2, (32, 32))
    assert c.shape == (2, 1, 32, 32) and c.sum() == 2 * 32 * 32 / 4
    assert c[0, 0, 8:24, 8:24].all() and c[0, 0, :8].sum() == 0 and c[0, 0, :, 24:].sum() == 0
    g = torch.Generator().manual_seed(0)
    b = block_mask(3, (32, 32), 0.25, 4, g)
    assert ((b == 0) | (b == 1)).all() and (b.sum((1, 2, 3)) <= 256).all() and (b.sum((1, 2, 3)) >= 64).all()
    r = region_mask(3, (32, 32), 0.25, g)
    assert (r.sum((1, 2, 3)) == 256).all() and not torch.equal(r[0], r[1])
    r2 = region_mask(3, (32, 32), 0.25, torch.Generator().manual_seed(0))
    assert not torch.equal(r, r2)  # the generator moved on
    assert torch.equal(region_mask(1, (32, 32), 0.25, torch.Generator().manual_seed(5)),
                       region_mask(1, (32, 32), 0.25, torch.Generator().manual_seed(5)))


def test_l2_counts_only_the_hole_and_the_documented_overlap():
    g = torch.Generator().manual_seed(0)
    target, pred = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g)
    mask = center_mask(2, (32, 32))
    l2 = weighted_l2(pred, target, mask)
    assert torch.isclose(l2, ((pred - target) ** 2)[:, :, 8:24, 8:24].mean())
    outside = pred + 5 * (1 - mask)
    assert torch.equal(weighted_l2(outside, target, loss_weights(mask, 0, 10.0)), l2)
    # overlap: a 4 px band around the hole weighs 10x, pixels beyond it still do not count
    w = loss_weights(mask, 4, 10.0)
    assert w[0, 0, 16, 16] == 1 and w[0, 0, 4, 16] == 10 and w[0, 0, 3, 16] == 0 and w[0, 0, 4, 4] == 10
    with_overlap = weighted_l2(pred, target, w)
    far = pred.clone()
    far[:, :, :4] += 5.0
    assert torch.equal(weighted_l2(far, target, w), with_overlap)
    near = pred.clone()
    near[:, :, 5] += 5.0
    assert weighted_l2(near, target, w) > with_overlap
    sq = ((pred - target) ** 2).sum(1, keepdim=True)
    assert torch.isclose(with_overlap, (w * sq).sum() / (3 * w.sum()))


@pytest.mark.parametrize("arch", ["vit", "conv"])
def test_inpainting_encoder_never_sees_the_hole(arch):
    m = _model("inpainting", arch=arch, aug=NO_AUG)
    m.eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, :, 8:24, 8:24] = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        tx, mask, px = m(x)
        ty, _, py = m(y)
    assert torch.equal(mask, center_mask(2, (32, 32)))
    assert torch.allclose(px, py, atol=1e-6) and not torch.equal(tx, ty)
    loss, logs = m.training_step(Batch((x * 255).to(torch.uint8), torch.arange(2)), 0)
    assert set(logs) == {"loss", "l2"} and torch.equal(logs["loss"], logs["l2"])


def test_adversarial_terms_reach_only_their_own_parameters():
    m = _model("inpainting", adversarial=True, mask="block", overlap=4)
    terms = m.losses(_batch().images.float() / 255)
    assert torch.allclose(terms["loss"], 0.999 * terms["rec"] + 0.001 * terms["adv"] + terms["disc"])
    disc = list(m.discriminator.parameters())
    gen = [p for n, p in m.named_parameters() if p.requires_grad and not n.startswith("discriminator.")]
    grad = lambda term, params: torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    assert all(g is None for g in grad(terms["adv"], disc))  # generator term: discriminator frozen
    assert all(g is None for g in grad(terms["rec"], disc))
    assert all(g is None for g in grad(terms["disc"], gen))  # discriminator term: fakes detached
    assert any(g is not None and g.abs().sum() > 0 for g in grad(terms["adv"], gen))
    own = grad(terms["disc"], disc)
    total = grad(terms["loss"], disc)
    assert all(torch.allclose(a, b) for a, b in zip(own, total, strict=True))
    # one optimiser step moves both the discriminator and the encoder
    opt = build_optimizer(m.param_groups(), "adamw", 1e-3, 0.9)
    watched = (disc[0], next(p for p in m.encoder.parameters() if p.requires_grad))
    before = [p.detach().clone() for p in watched]
    loss, logs = m.training_step(_batch(), 0)
    assert {"loss", "l2", "rec", "adv", "disc"} <= set(logs)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, watched, strict=True))


def test_bad_options_are_one_line_errors():
    for options in ({"mask": "ring"}, {"mask_area": 1.5}, {"overlap": -1}):
        with pytest.raises(UserError, match="method\\."):
            _model("inpainting", **options)
    with pytest.raises(UserError, match="out_stride"):
        _model("colorization", out_stride=0)


# ---------------------------------------------------------------- figures and pretraining
@pytest.mark.parametrize("name", ["colorization", "inpainting"])
def test_figures_are_png(name, tmp_path):
    m = _model(name)
    m.train()
    paths = m.save_figures(_batch(3), tmp_path, step=7)
    assert [p.name for p in paths] == [f"{name}_step0000007.png"]
    assert paths[0].read_bytes()[:8] == PNG
    with Image.open(paths[0]) as im:
        im.verify()
    assert m.training


@pytest.mark.parametrize("name", ["colorization", "inpainting"])
def test_pretrain_three_steps(name, tiny_dataset, tmp_path):
    backbone = {"arch": "vit", **VIT}
    cfg = PretrainConfig(method=default_config(name, batch_size=8), data=DataConfig(path=str(tiny_dataset)),
                         steps=3, ckpt_every=3, log_every=1, backbone=backbone, progress=False, device="cpu")
    res = pretrain(cfg, tmp_path / "run")
    expected = {"colorization": {"loss", "acc"}, "inpainting": {"loss", "l2"}}[name]
    assert set(res["val_metrics"]) == expected
    assert (tmp_path / "run" / f"{name}_step0000003.png").is_file()
    enc = load_encoder(tmp_path / "run" / "encoder")
    assert json.loads((tmp_path / "run" / "encoder" / "encoder.json").read_text())["method"] == name
    assert enc.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, enc.feature_dim)
