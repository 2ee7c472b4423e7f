"""MoCo v2, MoCo v3, BYOL and SimSiam: momentum teachers, schedules, the queue, the losses
against hand computations, SimSiam's fixed-lr predictor and stop-gradient, MoCo v3 on a
ResNet-18, and a 3-step pretraining run per method."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.encoders import build_encoder, load_encoder
from ssl4rl.losses.negative_cosine import negative_cosine
from ssl4rl.losses.normalized_mse import normalized_mse
from ssl4rl.losses.queue_infonce import queue_info_nce
from ssl4rl.methods import Batch, MethodContext, build_method, default_config
from ssl4rl.optim import build_optimizer, build_scheduler
from ssl4rl.parts.momentum import Queue, cosine_momentum
from ssl4rl.pretrain import pretrain

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
METHODS = ("moco", "mocov3", "byol", "simsiam")


def _model(name, arch="vit", total_steps=10, **options):
    torch.manual_seed(0)
    enc = build_encoder(arch, **(VIT if arch == "vit" else options.pop("backbone")))
    ctx = MethodContext(generator=torch.Generator().manual_seed(0), total_steps=total_steps)
    return build_method(default_config(name, batch_size=8, **options), enc, ctx)


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n))


def _step(model, opt, step=0):
    loss, logs = model.training_step(_batch(seed=step), step)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss, logs


# ---------------------------------------------------------------- momentum teachers and schedules
def test_cosine_momentum_schedule_start_middle_end():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(25, 100, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(150, 100, 0.99) == pytest.approx(1.0)


@pytest.mark.parametrize(("name", "step", "base", "expected"), [
    ("byol", 1, 0.996, 0.996),  # the schedule's value at training step 0 (BYOL's default base)
    ("mocov3", 6, 0.99, 1 - 0.01 * (math.cos(math.pi * 5 / 10) + 1) / 2),  # training step 5 of 10
    ("moco", 7, 0.999, 0.999),  # constant
])
def test_ema_update_is_m_teacher_plus_one_minus_m_student(name, step, base, expected):
    model = _model(name, total_steps=10, teacher_momentum=base)
    opt = build_optimizer(model.param_groups(), "sgd", 0.5)
    _step(model, opt)
    student = dict(model.encoder.named_parameters()) | {f"p.{k}": v for k, v in model.projector.named_parameters()}
    teacher = dict(model.teacher.encoder.named_parameters()) | {f"p.{k}": v for k, v in model.teacher.head.named_parameters()}
    before = {k: v.detach().clone() for k, v in teacher.items()}
    assert any(not torch.equal(before[k], student[k]) for k in student), "the optimiser step should move the student"
    model.after_step(step)
    assert teacher.keys() == student.keys()
    for k, t in teacher.items():
        want = expected * before[k] + (1 - expected) * student[k].detach()
        assert torch.allclose(t, want, atol=1e-7), k
        assert not t.requires_grad


def test_default_teacher_momentum_bases_are_the_papers():
    assert default_config("mocov3").teacher_momentum == 0.99  # MoCo v3
    assert default_config("byol").teacher_momentum == 0.996  # BYOL
    assert _model("mocov3").momentum_at(1) == pytest.approx(0.99)


def test_teacher_moves_only_in_after_step():
    model = _model("byol")
    opt = build_optimizer(model.param_groups(), "sgd", 0.5)
    before = {k: v.clone() for k, v in model.teacher.state_dict().items() if "running" not in k and "batches" not in k}
    _step(model, opt)
    for k, v in before.items():
        assert torch.equal(model.teacher.state_dict()[k], v), k


# ---------------------------------------------------------------- MoCo v2
def test_queue_push_fills_slots_in_order_and_wraps_around():
    q = Queue(5, 2, normalize=False)
    a = torch.arange(6.0).view(3, 2)
    q.push(a)
    assert torch.equal(q.items[:3], a) and int(q.ptr) == 3
    b = torch.arange(6.0, 12.0).view(3, 2)
    q.push(b)
    assert torch.equal(q.items[3:], b[:2]) and torch.equal(q.items[0], b[2]) and torch.equal(q.items[1:3], a[1:])
    assert int(q.ptr) == 1


def test_moco_enqueues_this_steps_keys_in_after_step_only():
    model = _model("moco", queue_size=12)
    opt = build_optimizer(model.param_groups(), "sgd", 0.1)
    start = model.queue.items.clone()
    _step(model, opt)
    keys = model.pending_keys.clone()
    assert torch.equal(model.queue.items, start)
    model.after_step(1)
    assert torch.equal(model.queue.items[:8], keys) and torch.equal(model.queue.items[8:], start[8:])
    assert int(model.queue.ptr) == 8 and model.pending_keys is None
    assert torch.allclose(keys.norm(dim=1), torch.ones(8))
    model.eval()
    with torch.no_grad():
        model.training_step(_batch(), 1)  # validation does not queue keys
    assert model.pending_keys is None


def test_moco_loss_matches_hand_infonce_with_the_queue():
    g = torch.Generator().manual_seed(0)
    q, k, queue = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(10, 6, generator=g)
    qn, kn, queue_n = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    t = 0.2
    want = 0.0
    for i in range(4):
        logits = torch.cat([(qn[i] @ kn[i]).view(1), queue_n @ qn[i]]) / t  # positive first
        want += -torch.log_softmax(logits, 0)[0] / 4
    assert queue_info_nce(q, k, queue, t).item() == pytest.approx(want.item(), rel=1e-5)


# ---------------------------------------------------------------- MoCo v3
def test_mocov3_loss_is_two_tau_infonce_over_in_batch_keys():
    model = _model("mocov3")
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / 0.2
    want = 2 * 0.2 * -torch.log_softmax(logits, 1).diagonal().mean()
    assert model.criterion(q, k).item() == pytest.approx(want.item(), rel=1e-5)


def test_mocov3_runs_a_step_on_resnet18():
    model = _model("mocov3", arch="resnet", backbone={"image_size": 32, "depth": 18})
    assert model.encoder.arch == "resnet"
    opt = build_optimizer(model.param_groups(), "adamw", 1e-3)
    teacher = {k: v.clone() for k, v in model.teacher.encoder.named_parameters()}
    loss, logs = _step(model, opt)
    assert torch.isfinite(loss) and logs["loss"] == loss.detach()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)
    model.after_step(1)
    assert any(not torch.equal(v, dict(model.teacher.encoder.named_parameters())[k]) for k, v in teacher.items())


# ---------------------------------------------------------------- BYOL
def test_byol_loss_is_two_minus_two_cos():
    g = torch.Generator().manual_seed(2)
    p, z = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    cos = (p * z).sum(1) / (p.norm(dim=1) * z.norm(dim=1))
    assert normalized_mse(p, z).item() == pytest.approx((2 - 2 * cos).mean().item(), rel=1e-6)
    direct = (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(1).mean()
    assert normalized_mse(p, z).item() == pytest.approx(direct.item(), rel=1e-5)
    assert normalized_mse(p, 3 * p).item() == pytest.approx(0.0, abs=1e-6)


def test_byol_targets_carry_no_gradient():
    model = _model("byol")
    z = model.target(torch.rand(4, 3, 32, 32))
    assert not z.requires_grad
    assert all(not p.requires_grad for p in model.teacher.parameters())


# ---------------------------------------------------------------- SimSiam
def test_simsiam_predictor_group_has_a_fixed_lr():
    model = _model("simsiam")
    groups = model.param_groups()
    fixed = [p for g in groups if g.get("fixed_lr") for p in g["params"]]
    assert {id(p) for p in fixed} == {id(p) for p in model.predictor.parameters()}
    opt = build_optimizer(groups, "sgd", 0.05)
    sched = build_scheduler(opt, warmup=2, total=10)
    for _ in range(6):
        opt.step()
        sched.step()
    lrs = {bool(g.get("fixed_lr")): g["lr"] for g in opt.param_groups}
    assert lrs[True] == pytest.approx(0.05) and lrs[False] < 0.05


def test_simsiam_stop_gradient_on_the_target_branch():
    g = torch.Generator().manual_seed(3)
    p, z = torch.randn(4, 5, generator=g, requires_grad=True), torch.randn(4, 5, generator=g, requires_grad=True)
    loss = negative_cosine(p, z)
    loss.backward()
    assert z.grad is None and p.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(-F.cosine_similarity(p, z, dim=1).mean().item(), rel=1e-6)

    # in the method: with the predictor's input cut off, any gradient reaching the encoder
    # would have to come through the target branch -- there is none
    model = _model("simsiam")
    predictor = model.predictor
    model.predictor = torch.nn.Sequential(_Detach(), predictor)
    loss, _ = model.training_step(_batch(), 0)
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.projector.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in predictor.parameters())


class _Detach(torch.nn.Module):
    def forward(self, x):
        return x.detach()


# ---------------------------------------------------------------- the pretraining loop
@pytest.mark.parametrize("name", METHODS)
def test_three_step_pretrain_writes_a_loadable_encoder(name, tiny_dataset, tmp_path):
    cfg = PretrainConfig(
        method=default_config(name, batch_size=8), data=DataConfig(path=str(tiny_dataset)), steps=3,
        ckpt_every=3, log_every=1, backbone={"arch": "vit", **VIT}, progress=False, device="cpu",
    )
    results = pretrain(cfg, tmp_path / name)
    assert results["steps"] == 3 and math.isfinite(results["final_train_loss"])
    enc = load_encoder(results["encoder"])
    frames = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = enc(frames)
    assert out.shape == (2, enc.feature_dim) and torch.isfinite(out).all()
