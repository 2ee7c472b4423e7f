"""NPID (memory bank), DeepCluster (k-means pseudo-labels) and CPC (patch grid, causal context)."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_one_line
from ssl4rl.augment import apply_view
from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.data.sources import MemorySource
from ssl4rl.encoders import build_encoder, load_encoder
from ssl4rl.errors import UserError
from ssl4rl.methods import Batch, MethodContext, build_method, default_config
from ssl4rl.methods.cpc import ContextNet, patch_grid
from ssl4rl.parts.kmeans import assign, fit_pca_whitening, kmeans, pca_whiten, reseed_empty
from ssl4rl.parts.momentum import MemoryBank
from ssl4rl.pretrain import pretrain

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _method(name, n=16, batch_size=8, seed=0, arch="vit", **options):
    source = MemorySource(_images(n))
    torch.manual_seed(seed)
    enc = build_encoder(arch, **(VIT if arch == "vit" else {"image_size": 32}))
    ctx = MethodContext(generator=torch.Generator().manual_seed(seed), total_steps=10, num_samples=n,
                        batch_size=batch_size, all_batches=lambda: source.in_order(5))
    return build_method(default_config(name, batch_size=batch_size, **options), enc, ctx), source


# ---------------------------------------------------------------- NPID
def test_memory_bank_update_formula_changes_only_indexed_rows():
    bank = MemoryBank(10, 4, momentum=0.5)
    old = bank.bank.clone()
    index = torch.tensor([2, 7])
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    bank.update(index, x)
    torch.testing.assert_close(bank.bank[index], F.normalize(0.5 * old[index] + 0.5 * x, dim=1))
    rest = torch.ones(10, dtype=torch.bool)
    rest[index] = False
    assert torch.equal(bank.bank[rest], old[rest])
    torch.testing.assert_close(bank.bank.norm(dim=1), torch.ones(10))


def _npid_features(model, batch, seed):
    """The features NPID computes for ``batch`` when its generator is seeded with ``seed``."""
    view = apply_view(batch.images.float() / 255, model.cfg.aug, torch.Generator().manual_seed(seed))
    return model.features(view)


def test_npid_loss_is_the_softmax_over_the_bank_by_hand():
    model, source = _method("npid", n=12)
    batch = source.sample(5, torch.Generator().manual_seed(2))
    model.generator = torch.Generator().manual_seed(3)
    loss, logs = model.training_step(batch, 0)
    with torch.no_grad():
        f = _npid_features(model, batch, 3)
        assert f.shape == (5, 128)
        torch.testing.assert_close(f.norm(dim=1), torch.ones(5))
        logits = f @ model.memory.bank.t() / 0.07  # (5, 12): one logit per bank slot
        own = logits[torch.arange(5), batch.index]
        expected = (torch.logsumexp(logits, 1) - own).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
    assert float(logs["loss"]) == pytest.approx(loss.item())


def test_npid_after_step_writes_the_training_batch_into_the_bank():
    model, source = _method("npid", n=12)
    batch = Batch(source.images[[1, 4, 9]], torch.tensor([1, 4, 9]))
    old = model.memory.bank.clone()
    model.eval()  # validation: nothing is remembered for after_step
    with torch.no_grad():
        model.training_step(batch, 0)
    model.after_step(1)
    assert torch.equal(model.memory.bank, old)
    model.train()
    model.generator = torch.Generator().manual_seed(4)
    model.training_step(batch, 1)
    assert torch.equal(model.memory.bank, old)  # only after_step changes the bank
    model.after_step(2)
    with torch.no_grad():
        f = _npid_features(model, batch, 4)
    torch.testing.assert_close(model.memory.bank[batch.index], F.normalize(0.5 * old[batch.index] + 0.5 * f, dim=1))
    others = torch.tensor([i not in (1, 4, 9) for i in range(12)])
    assert torch.equal(model.memory.bank[others], old[others])


def test_npid_needs_the_sample_count():
    with pytest.raises(UserError) as exc:
        build_method(default_config("npid"), build_encoder("vit", **VIT), MethodContext())
    assert_one_line(exc, "num_samples")


# ---------------------------------------------------------------- k-means
def _blobs(per_blob=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0], [-10.0, -10.0]])
    x = (centres.repeat_interleave(per_blob, 0) + 0.5 * torch.randn(4 * per_blob, 2, generator=g))
    return x, torch.arange(4).repeat_interleave(per_blob), centres


def test_kmeans_finds_separable_blobs_and_is_deterministic():
    x, truth, centres = _blobs()
    cents, labels = kmeans(x, 4, iters=10, generator=torch.Generator().manual_seed(0))
    assert cents.shape == (4, 2) and labels.shape == (80,)
    for b in range(4):  # each blob is one cluster, and the clusters differ
        assert labels[truth == b].unique().numel() == 1
    assert labels.unique().numel() == 4
    for b in range(4):
        torch.testing.assert_close(cents[labels[truth == b][0]], x[truth == b].mean(0))
    again = kmeans(x, 4, iters=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], cents) and torch.equal(again[1], labels)


def test_reseed_empty_copies_a_big_cluster_with_a_perturbation():
    cents = torch.tensor([[1.0, 2.0, -3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    counts = torch.tensor([6, 0, 1])  # only cluster 0 can give points away
    new, new_counts = reseed_empty(cents, counts, torch.Generator().manual_seed(0), eps=0.01)
    assert new_counts.tolist() == [3, 3, 1]
    assert not torch.equal(new[1], cents[0]) and not torch.equal(new[0], cents[0])
    torch.testing.assert_close((new[1] - cents[0]).abs(), 0.01 * cents[0].abs())  # c * (1 + eps * sign)
    torch.testing.assert_close(new[0] + new[1], 2 * cents[0])  # the donor moves the other way
    assert torch.equal(new[2], cents[2])
    assert torch.equal(cents[1], torch.zeros(3))  # inputs untouched


def test_kmeans_reseeds_a_cluster_that_starts_empty():
    x, truth, centres = _blobs()
    init = torch.cat([centres[:3], torch.tensor([[1000.0, 1000.0]])])  # cluster 3 gets no point
    cents, labels = kmeans(x, 4, iters=10, generator=torch.Generator().manual_seed(0), init=init)
    assert torch.bincount(labels, minlength=4).min() > 0
    assert cents[3].abs().max() < 20


def test_pca_whiten_decorrelates():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g) @ torch.randn(6, 6, generator=g) + 3
    y = pca_whiten(x, 4)
    assert y.shape == (200, 4)
    torch.testing.assert_close(torch.cov(y.t()), torch.eye(4), atol=1e-4, rtol=1e-4)
    mean, projection = fit_pca_whitening(x, 4)  # the fit applies to other rows as well
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close((x[:3] - mean) @ projection, y[:3])


# ---------------------------------------------------------------- DeepCluster
def test_deepcluster_reassigns_exactly_at_epoch_boundaries():
    model, source = _method("deepcluster", n=20, batch_size=8, num_clusters=6, kmeans_iters=3)
    assert model.steps_per_epoch == math.ceil(20 / 8) == 3
    calls, original = [], model.reassign
    model.reassign = lambda: (calls.append(step), original())
    step = 0
    model.on_train_start()
    assert calls == [0] and int(model.assignments) == 1
    assert model.labels.max() < 6 and model.labels.unique().numel() == 6  # k-means filled every cluster
    for step in range(1, 10):
        loss, logs = model.training_step(source.sample(8, model.generator), step)
        loss.backward()
        model.after_step(step)
    assert calls == [0, 3, 6, 9] and int(model.assignments) == 4
    with torch.no_grad():  # the classifier is fresh after the last re-assignment
        model.classifier.weight.fill_(1.0)
        model.reassign()
    assert float(model.classifier.weight.detach().std()) == pytest.approx(0.01, rel=0.3) and not model.classifier.bias.any()


def test_deepcluster_labels_survive_a_checkpoint_round_trip(tmp_path):
    a, _ = _method("deepcluster", n=20, seed=0, num_clusters=5, kmeans_iters=3)
    a.on_train_start()
    torch.save(a.state_dict(), tmp_path / "ck.pt")
    b, _ = _method("deepcluster", n=20, seed=1, num_clusters=5, kmeans_iters=3)
    assert b.labels.eq(0).all()
    b.load_state_dict(torch.load(tmp_path / "ck.pt", weights_only=True))
    b.on_train_start()  # a resumed run keeps its labels: no re-clustering
    assert int(b.assignments) == 1
    assert torch.equal(b.labels, a.labels) and torch.equal(b.centroids, a.centroids)
    assert a.labels.unique().numel() > 1


def test_deepcluster_embedding_is_what_kmeans_clustered():
    """Right after a re-assignment, the embedding of the training images is k-means's input: the
    stored PCA-whitening of their features, L2-normalised; each label is its nearest centroid."""
    model, source = _method("deepcluster", n=20, num_clusters=5, kmeans_iters=3)
    model.on_train_start()
    model.eval()
    with torch.no_grad():
        x01 = torch.cat([b.images.float() / 255 for b in source.in_order(5)])
        z = model.embedding(x01)
        mean, projection = fit_pca_whitening(model.embed(x01), model.cluster_dim)
    torch.testing.assert_close(model.pca_mean, mean)
    torch.testing.assert_close(z, F.normalize((model.embed(x01) - mean) @ projection, dim=1))
    assert torch.equal(assign(z, model.centroids), model.labels)
    # the fit is a buffer: a batch is projected with it, not refitted
    torch.testing.assert_close(model.embedding(x01[:4]), z[:4])


def test_deepcluster_clips_k_to_the_sample_count():
    model, _ = _method("deepcluster", n=12, num_clusters=100)
    assert model.k == 12 and model.classifier.out_features == 12


# ---------------------------------------------------------------- CPC
def test_cpc_patch_grid_counts_and_positions():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    p = patch_grid(x, 16, 8)
    assert p.shape == (2, 3, 3, 3, 16, 16)  # 32 px -> 3 x 3 patches of 16 px
    for i in range(3):
        for j in range(3):
            assert torch.equal(p[:, i, j], x[:, :, 8 * i : 8 * i + 16, 8 * j : 8 * j + 16])
    assert patch_grid(torch.rand(1, 3, 64, 64), 16, 8).shape[1:3] == (7, 7)
    y = torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(1))
    q = patch_grid(y, 16, 8)  # 3 x 3 grid spans 32 px: centred, 2 px margin on each side
    assert q.shape[1:3] == (3, 3)
    assert torch.equal(q[0, 2, 1], y[0, :, 18:34, 10:26])
    with pytest.raises(UserError) as exc:
        patch_grid(torch.rand(1, 3, 20, 20), 16, 8)
    assert_one_line(exc, "patch_size")


def test_cpc_context_at_row_r_never_sees_lower_rows():
    torch.manual_seed(0)
    net = ContextNet(in_dim=6, dim=8, blocks=3)
    z = torch.randn(2, 6, 5, 4)
    c = net(z)
    for r in range(4):
        changed = z.clone()
        changed[:, :, r + 1 :] = torch.randn_like(changed[:, :, r + 1 :])
        c2 = net(changed)
        torch.testing.assert_close(c2[:, :, : r + 1], c[:, :, : r + 1], rtol=0, atol=0)
        assert not torch.allclose(c2[:, :, r + 1 :], c[:, :, r + 1 :])
    row = z.clone()
    row[:, :, 2] += 1.0  # the context at row r does see row r itself
    assert not torch.allclose(net(row)[:, :, 2], c[:, :, 2])


def test_cpc_predicts_the_rows_the_grid_has():
    model, source = _method("cpc", pred_steps=5)
    assert len(model.predictors) == 2  # a 3-row grid at 32 px: 1 and 2 rows below
    loss, _ = model.training_step(source.sample(4, torch.Generator().manual_seed(0)), 0)
    assert torch.isfinite(loss) and loss > 0


# ---------------------------------------------------------------- all three
@pytest.mark.parametrize("name", ["npid", "deepcluster", "cpc"])
def test_a_conv_backbone_trains(name):
    model, source = _method(name, arch="conv")
    loss, _ = model.training_step(source.sample(4, torch.Generator().manual_seed(0)), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


@pytest.mark.parametrize("name", ["npid", "deepcluster", "cpc"])
def test_pretrain_three_steps_writes_a_loadable_encoder(name, tiny_dataset, tmp_path):
    cfg = PretrainConfig(
        method=default_config(name, batch_size=8), data=DataConfig(path=str(tiny_dataset)), steps=3,
        backbone={"arch": "vit", **VIT}, progress=False, device="cpu", ckpt_every=3, log_every=1,
    )
    res = pretrain(cfg, tmp_path / name)
    assert res["steps"] == 3 and math.isfinite(res["final_train_loss"])
    enc = load_encoder(tmp_path / name / "encoder")
    assert enc.encode(_images(2)).shape == (2, enc.feature_dim)
