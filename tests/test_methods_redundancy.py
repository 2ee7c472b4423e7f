"""DINO, SwAV, Barlow Twins and VICReg: losses against hand computations, Sinkhorn marginals,
DINO's centre, temperature schedule and crop routing, SwAV's prototypes and queue, and a
3-step pretraining run per method."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.encoders import build_encoder, load_encoder
from ssl4rl.errors import UserError
from ssl4rl.losses.barlow import barlow_twins_loss
from ssl4rl.losses.dino import dino_loss
from ssl4rl.losses.swav import sinkhorn, swav_loss
from ssl4rl.losses.vicreg import vicreg_loss
from ssl4rl.methods import Batch, MethodContext, build_method, default_config
from ssl4rl.methods.dino import teacher_temperature
from ssl4rl.parts.heads import DINOHead
from ssl4rl.parts.momentum import cosine_momentum
from ssl4rl.pretrain import pretrain

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n))


def _model(name, arch="vit", total_steps=10, num_samples=0, **options):
    enc = build_encoder(arch, **(VIT if arch == "vit" else {"image_size": 32}))
    ctx = MethodContext(generator=torch.Generator().manual_seed(0), total_steps=total_steps, num_samples=num_samples)
    return build_method(default_config(name, **options), enc, ctx)


# ---------------------------------------------------------------- losses by hand
def test_barlow_loss_matches_hand_computation():
    z1, z2 = _randn(5, 3, seed=1), _randn(5, 3, seed=2)
    n, d, lambd, eps = 5, 3, 0.3, 1e-5

    def standardise(z, j):
        col = [z[b, j].item() for b in range(n)]
        mean = sum(col) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in col) / n + eps)
        return [(v - mean) / std for v in col]

    a = [standardise(z1, j) for j in range(d)]
    b = [standardise(z2, j) for j in range(d)]
    c = [[sum(a[i][k] * b[j][k] for k in range(n)) / n for j in range(d)] for i in range(d)]
    on = sum((1 - c[i][i]) ** 2 for i in range(d))
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    loss, terms = barlow_twins_loss(z1, z2, lambd, eps)
    assert terms["on_diag"].item() == pytest.approx(on, rel=1e-9)
    assert terms["off_diag"].item() == pytest.approx(off, rel=1e-9)
    assert loss.item() == pytest.approx(on + lambd * off, rel=1e-9)
    # identical, decorrelated embeddings are optimal: C is the identity
    q, _ = torch.linalg.qr(_randn(6, 3, seed=3) - _randn(6, 3, seed=3).mean(0))
    q = q - q.mean(0)
    assert barlow_twins_loss(q, q)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_vicreg_terms_match_hand_computation():
    z1, z2 = _randn(6, 3, seed=4) * 0.5, _randn(6, 3, seed=5) * 2
    n, d, eps = 6, 3, 1e-4
    inv = sum((z1[b, j] - z2[b, j]).item() ** 2 for b in range(n) for j in range(d)) / (n * d)

    def stats(z):
        cols = [[z[b, j].item() for b in range(n)] for j in range(d)]
        means = [sum(c) / n for c in cols]
        cov = [[sum((cols[i][b] - means[i]) * (cols[j][b] - means[j]) for b in range(n)) / (n - 1)
                for j in range(d)] for i in range(d)]
        var = sum(max(0.0, 1 - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        off = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return var, off

    (v1, c1), (v2, c2) = stats(z1), stats(z2)
    loss, terms = vicreg_loss(z1, z2)
    assert terms["invariance"].item() == pytest.approx(inv, rel=1e-9)
    assert terms["variance"].item() == pytest.approx((v1 + v2) / 2, rel=1e-9)
    assert terms["covariance"].item() == pytest.approx(c1 + c2, rel=1e-9)
    assert loss.item() == pytest.approx(25 * inv + 25 * (v1 + v2) / 2 + (c1 + c2), rel=1e-9)
    # z2 has std ~2 > 1 in every dimension: its hinge is inactive
    assert v2 == 0.0 < v1


def _cross_entropy(q, logits, temp):
    """Batch mean of -sum_k q_k log softmax(logits / temp)_k, by hand."""
    total = 0.0
    for row_q, row_s in zip(q.tolist(), logits.tolist(), strict=True):
        log_z = math.log(sum(math.exp(s / temp) for s in row_s))
        total += -sum(qk * (s / temp - log_z) for qk, s in zip(row_q, row_s, strict=True))
    return total / len(q)


def test_dino_loss_excludes_same_view_pairs():
    student = [_randn(3, 4, seed=s) for s in (10, 11, 12)]  # 2 global + 1 local view
    teacher = [_randn(3, 4, seed=s) for s in (20, 21)]
    center = _randn(1, 4, seed=30)
    ts, tt = 0.1, 0.04
    targets = [F.softmax((t - center) / tt, dim=-1) for t in teacher]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (teacher view, student view), never the same view
    expected = sum(_cross_entropy(targets[i], student[v], ts) for i, v in pairs) / len(pairs)
    assert dino_loss(student, teacher, center, ts, tt).item() == pytest.approx(expected, rel=1e-9)


def test_swav_loss_is_swapped_prediction():
    scores = [_randn(3, 5, seed=s) for s in (40, 41, 42, 43)]
    codes = [F.softmax(_randn(3, 5, seed=s), dim=-1) for s in (50, 51)]
    pairs = [(i, v) for i in range(2) for v in range(4) if v != i]
    expected = sum(_cross_entropy(codes[i], scores[v], 0.1) for i, v in pairs) / len(pairs)
    assert swav_loss(scores, codes, 0.1).item() == pytest.approx(expected, rel=1e-6)


def test_sinkhorn_marginals():
    scores = F.normalize(_randn(12, 4, seed=6), dim=1).float()
    q = sinkhorn(scores, epsilon=0.05, iters=3)
    assert q.shape == (12, 4) and (q >= 0).all()
    torch.testing.assert_close(q.sum(1), torch.ones(12))  # each sample: mass 1 (last normalisation)
    q = sinkhorn(scores, epsilon=0.5, iters=200)
    torch.testing.assert_close(q.sum(0), torch.full((4,), 12 / 4), atol=1e-4, rtol=0)  # equipartition: B / K
    torch.testing.assert_close(q.sum(1), torch.ones(12))
    # a constant shift of the scores changes nothing; no gradient flows
    torch.testing.assert_close(sinkhorn(scores + 3.0, 0.5, 200), q)
    assert not sinkhorn(scores.requires_grad_(), 0.05, 3).requires_grad


# ---------------------------------------------------------------- DINO mechanics
def test_teacher_temperature_schedule():
    assert teacher_temperature(0, 100, 0.04, 0.07, 0.3) == pytest.approx(0.04)
    assert teacher_temperature(15, 100, 0.04, 0.07, 0.3) == pytest.approx(0.055)
    assert teacher_temperature(30, 100, 0.04, 0.07, 0.3) == pytest.approx(0.07)
    assert teacher_temperature(99, 100, 0.04, 0.07, 0.3) == pytest.approx(0.07)
    model = _model("dino", total_steps=10)  # defaults: 0.04 -> 0.07 over the first 3 steps
    temps = [model.teacher_temp_at(s) for s in range(5)]
    assert temps == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.07])
    assert model.training_step(_batch(), 1)[1]["teacher_temp"].item() == pytest.approx(0.05)


def test_dino_head_batch_norm_option():
    plain, bn = DINOHead(8, 16, 12, 4), DINOHead(8, 16, 12, 4, use_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.mlp)
    norms = [i for i, m in enumerate(bn.mlp) if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms == [1, 4]  # after each hidden linear layer, before its GELU
    assert all(bn.mlp[i - 1].bias is None for i in norms) and bn.mlp[-1].bias is not None
    x = _randn(6, 8).float()
    h = bn.mlp[:2](x)  # training mode: normalised over the batch
    torch.testing.assert_close(h.mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    assert bn(x).shape == (6, 16)
    assert default_config("dino").use_bn_in_head
    assert not isinstance(_model("dino", use_bn_in_head=False).head.mlp[1], torch.nn.BatchNorm1d)


def test_dino_lr_scales_linearly_with_the_batch():
    for batch_size in (64, 512):
        groups = _model("dino", batch_size=batch_size).param_groups()
        assert groups and all(g["lr_scale"] == batch_size / 256 for g in groups)


def test_dino_centre_and_teacher_updates():
    model = _model("dino", total_steps=10)
    seen = []
    model.teacher.head.register_forward_hook(lambda mod, inp, out: seen.append(out.detach().clone()))
    model.center.fill_(0.25)
    with torch.no_grad():  # make the student differ from the teacher
        for p in model.encoder.parameters():
            p.add_(0.1)
    loss, _ = model.training_step(_batch(), 0)
    assert len(seen) == 1 and torch.equal(model.center, torch.full_like(model.center, 0.25))  # not yet
    teacher_before = [p.clone() for p in model.teacher.encoder.parameters()]
    model.after_step(1)
    expected = 0.9 * 0.25 + 0.1 * seen[0].mean(0, keepdim=True)
    torch.testing.assert_close(model.center, expected)
    m = cosine_momentum(0, 10, 0.996)
    for t0, t1, s in zip(teacher_before, model.teacher.encoder.parameters(), model.encoder.parameters(), strict=True):
        torch.testing.assert_close(t1, m * t0 + (1 - m) * s)
    assert model.export_encoder() is model.teacher.encoder


def _record_inputs(encoder, log):
    """Make ``encoder.forward_features`` append the shape of each input it gets to ``log``."""
    original = encoder.forward_features

    def recorded(x):
        log.append(tuple(x.shape))
        return original(x)

    encoder.forward_features = recorded


def test_dino_teacher_sees_global_crops_only_and_locals_keep_their_size_on_a_vit():
    model = _model("dino")  # 2 global crops at 32 px, 4 local crops at 16 px
    student, teacher = [], []
    _record_inputs(model.encoder, student)
    _record_inputs(model.teacher.encoder, teacher)
    model.training_step(_batch(n=4), 0)
    assert teacher == [(2 * 4, 3, 32, 32)]
    assert student == [(2 * 4, 3, 32, 32), (4 * 4, 3, 16, 16)]


def test_multi_crop_on_a_conv_encoder_resizes_local_crops():
    model = _model("swav", arch="conv")
    shapes = []
    _record_inputs(model.encoder, shapes)
    loss, _ = model.training_step(_batch(n=4), 0)
    assert shapes == [((2 + 4) * 4, 3, 32, 32)] and torch.isfinite(loss)


def test_temporal_positive_gives_the_second_global_crop():
    model = _model("dino")
    batch = _batch(n=4)
    batch.positive = torch.zeros_like(batch.images)  # black frames: only the second global crop is black
    original = model.embed
    means = []
    model.embed = lambda x, enc=None: (means.append(x.reshape(len(x) // 4, -1).mean(1)), original(x, enc))[1]
    model.training_step(batch, 0)
    student_globals = means[1]  # calls: teacher globals, student globals, student locals
    assert student_globals[1] == 0 and student_globals[0] > 0 and (means[2] > 0).all()


# ---------------------------------------------------------------- SwAV mechanics
def test_swav_prototypes_frozen_then_normalised_in_after_step():
    model = _model("swav", freeze_prototypes=1)
    loss, _ = model.training_step(_batch(), 0)
    loss.backward()
    assert model.prototypes.weight.grad is None  # frozen during the first step
    model.zero_grad()
    loss, _ = model.training_step(_batch(), 1)
    loss.backward()
    assert model.prototypes.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.prototypes.weight.mul_(3.0)
    model.after_step(2)
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(model.cfg.n_prototypes))


def test_swav_small_batch_queue_is_on_by_default_and_sized_in_batches():
    assert _model("swav", batch_size=64).queue_length == 15 * 64  # the official 3840 = 15 x 256
    assert not _model("swav", batch_size=256).queues  # large batches: no queue
    assert not _model("swav", batch_size=64, queue_batches=0).queues
    model = _model("swav", num_samples=100, batch_size=16)
    assert model.queue_start_step == 15 * 7  # epoch 15, 7 steps an epoch
    torch.testing.assert_close(model.embedding(_batch().images.float() / 255).norm(dim=1), torch.ones(4))
    for bad in ({"queue_batches": -1}, {"queue_start_epochs": -1}):
        with pytest.raises(UserError):
            _model("swav", **bad)


def test_swav_queue_starts_fills_then_enters_sinkhorn():
    model = _model("swav", num_samples=8, batch_size=4, queue_batches=2, queue_start_epochs=1)  # starts at step 2
    codes_sizes = []
    original = model.codes
    model.codes = lambda scores, crop: (codes_sizes.append(scores.shape[0]), original(scores, crop))[1]
    initial = [q.items.clone() for q in model.queues]
    for step in range(2):
        model.training_step(_batch(n=4, seed=step), step)
        model.after_step(step + 1)
    assert int(model.queue_seen) == 0 and all(torch.equal(q.items, i) for q, i in zip(model.queues, initial, strict=True))
    pushed = []
    for step in (2, 3):
        model.training_step(_batch(n=4, seed=step), step)
        pushed.append([z.clone() for z in model.pending])
        model.after_step(step + 1)
    assert model.pending == [] and int(model.queue_seen) == 8
    for crop, queue in enumerate(model.queues):
        torch.testing.assert_close(queue.items, torch.cat([pushed[0][crop], pushed[1][crop]]))
        torch.testing.assert_close(queue.items.norm(dim=1), torch.ones(8))
    sinkhorn_rows = []
    import ssl4rl.methods.swav as swav_module

    real = swav_module.sinkhorn
    swav_module.sinkhorn = lambda s, e, i: (sinkhorn_rows.append(s.shape[0]), real(s, e, i))[1]
    try:
        model.training_step(_batch(n=4, seed=4), 4)
    finally:
        swav_module.sinkhorn = real
    assert sinkhorn_rows == [4 + 8, 4 + 8] and codes_sizes[-1] == 4


# ---------------------------------------------------------------- the loop
@pytest.mark.parametrize("name", ["dino", "swav", "barlow", "vicreg"])
def test_three_step_pretrain_writes_a_loadable_encoder(name, tiny_dataset, tmp_path):
    cfg = PretrainConfig(
        method=default_config(name, batch_size=8),
        backbone={"arch": "vit", **VIT},
        data=DataConfig(path=str(tiny_dataset)),
        steps=3, progress=False, device="cpu",
    )
    res = pretrain(cfg, tmp_path / name)
    assert res["steps"] == 3 and math.isfinite(res["final_train_loss"])
    enc = load_encoder(tmp_path / name / "encoder")
    assert enc.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, enc.feature_dim)
