import json

import pytest
import torch

from ssl4rl.encoders import build_encoder, encoder_meta, load_encoder, random_like, save_encoder
from ssl4rl.encoders.vit import POOLS
from ssl4rl.errors import UserError
from helpers import assert_one_line

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
CONV = dict(image_size=32)


def _frames(n=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)



@pytest.mark.parametrize("arch,kwargs", [("conv", CONV), ("vit", VIT)])
def test_encoder_contract_and_save_load(arch, kwargs, tmp_path):
    torch.manual_seed(0)
    enc = build_encoder(arch, **kwargs).eval()
    assert enc.arch == arch
    x = _frames()
    with torch.no_grad():
        feats = enc(x)
    assert feats.shape == (5, enc.feature_dim) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    assert not torch.allclose(feats[0], feats[1])  # different frames, different features

    enc.set_normalization([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])
    with torch.no_grad():
        feats = enc(x)
    folder = save_encoder(enc, tmp_path / "enc", method="test-method", note="hi")
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.json", "encoder.safetensors"]

    meta = json.loads((folder / "encoder.json").read_text())
    assert meta["arch"] == arch
    assert meta["image_size"] == 32
    assert meta["method"] == "test-method"
    assert meta["note"] == "hi"
    assert meta["feature_dim"] == enc.feature_dim
    assert meta["normalization"]["mean"] == pytest.approx([0.4, 0.5, 0.6])
    assert meta["normalization"]["std"] == pytest.approx([0.2, 0.3, 0.25])
    assert meta["normalization"]["scale"] == pytest.approx(1 / 255)
    assert encoder_meta(folder) == meta

    for where in (folder, folder / "encoder.json", folder / "encoder.safetensors", str(folder)):
        loaded = load_encoder(where)
        assert type(loaded) is type(enc) and not loaded.training
        with torch.no_grad():
            assert torch.equal(loaded(x), feats)
    # batched encode: same features up to float reassociation across batch sizes
    torch.testing.assert_close(load_encoder(folder, arch=arch).encode(x, batch_size=2), feats)

    # any input size is resized to image_size
    big = _frames(n=3, size=40, seed=1)
    with torch.no_grad():
        out = loaded(big)
    assert out.shape == (3, enc.feature_dim) and torch.isfinite(out).all()


def test_resize_matches_pre_resized_input():
    enc = build_encoder("conv", image_size=32).eval()
    x = _frames(n=2, size=64)
    small = torch.nn.functional.interpolate(x.float() / 255, size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        a = enc(x)
        b = enc.forward_features((small - enc.mean) / enc.std)
    torch.testing.assert_close(a, b)


def test_encode_batches_match_forward():
    enc = build_encoder("vit", **VIT).train()
    x = _frames(n=7)
    out = enc.encode(x, batch_size=3)
    assert enc.training  # restored
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, enc(x))
    assert enc.encode(x[:0]).shape == (0, enc.feature_dim)


def test_load_with_wrong_arch(tmp_path):
    folder = save_encoder(build_encoder("vit", **VIT), tmp_path / "vit_enc")
    with pytest.raises(UserError) as exc:
        load_encoder(folder, arch="conv")
    assert_one_line(exc, folder / "encoder.json", "vit", "conv")


def test_weights_do_not_fit(tmp_path):
    folder = save_encoder(build_encoder("vit", **VIT), tmp_path / "vit_enc")
    meta_path = folder / "encoder.json"
    meta = json.loads(meta_path.read_text())
    meta["kwargs"]["embed_dim"] = 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError) as exc:
        load_encoder(folder)
    assert_one_line(exc, folder / "encoder.safetensors")


def test_corrupt_weights_file(tmp_path):
    folder = save_encoder(build_encoder("conv", **CONV), tmp_path / "enc")
    w = folder / "encoder.safetensors"
    w.write_bytes(w.read_bytes()[:50])
    with pytest.raises(UserError) as exc:
        load_encoder(folder)
    assert_one_line(exc, w)


def test_missing_weights_and_metadata(tmp_path):
    folder = save_encoder(build_encoder("conv", **CONV), tmp_path / "enc")
    (folder / "encoder.safetensors").unlink()
    with pytest.raises(UserError) as exc:
        load_encoder(folder)
    assert_one_line(exc, folder / "encoder.safetensors")

    (folder / "encoder.json").write_text("{not json")
    with pytest.raises(UserError) as exc:
        load_encoder(folder)
    assert_one_line(exc, folder / "encoder.json")

    (folder / "encoder.json").write_text('{"format": "something-else"}')
    with pytest.raises(UserError) as exc:
        load_encoder(folder)
    assert_one_line(exc, folder / "encoder.json")


def test_missing_folder(tmp_path):
    missing = tmp_path / "no_encoder_here"
    with pytest.raises(UserError) as exc:
        load_encoder(missing)
    assert_one_line(exc, missing)


def test_unknown_arch_and_bad_options():
    with pytest.raises(UserError) as exc:
        build_encoder("resnet9000", image_size=32)
    assert_one_line(exc, "resnet9000", "conv", "vit")
    with pytest.raises(UserError) as exc:
        build_encoder("vit", image_size=32, no_such_option=1)
    assert_one_line(exc, "no_such_option")
    with pytest.raises(UserError) as exc:
        build_encoder("vit", image_size=30, patch_size=8)
    assert_one_line(exc, "30", "8")
    with pytest.raises(UserError) as exc:
        build_encoder("vit", **{**VIT, "pool": "max"})
    assert_one_line(exc, "max", *POOLS)


@pytest.mark.parametrize(
    "pool,grid,dim",
    [("cls", 2, 32), ("mean", 2, 32), ("cls+mean", 2, 64), ("cls+grid", 2, 5 * 32), ("cls+grid", 4, 17 * 32),
     ("cls+grid", 1, 2 * 32)],
)
def test_vit_pool_feature_dim(pool, grid, dim, tmp_path):
    enc = build_encoder("vit", **{**VIT, "pool": pool, "grid": grid}).eval()
    assert enc.feature_dim == dim
    x = _frames(n=2)
    with torch.no_grad():
        feats = enc(x)
    assert feats.shape == (2, dim)
    loaded = load_encoder(save_encoder(enc, tmp_path / "e"))
    assert loaded.pool == pool and loaded.feature_dim == dim
    with torch.no_grad():
        assert torch.equal(loaded(x), feats)


def test_vit_pool_semantics():
    torch.manual_seed(0)
    cls_enc = build_encoder("vit", **{**VIT, "pool": "cls"}).eval()
    state = cls_enc.state_dict()
    encs = {}
    for pool in POOLS:
        e = build_encoder("vit", **{**VIT, "pool": pool}).eval()
        e.load_state_dict(state)
        encs[pool] = e
    x = _frames(n=2)
    with torch.no_grad():
        f = {p: e(x) for p, e in encs.items()}
        tokens = encs["cls"].blocks(encs["cls"].embed(encs["cls"].preprocess(x)))
    d = 32
    torch.testing.assert_close(f["cls"], tokens[:, 0])
    torch.testing.assert_close(f["mean"], tokens[:, 1:].mean(1))
    torch.testing.assert_close(f["cls+mean"], torch.cat([f["cls"], f["mean"]], 1))
    torch.testing.assert_close(f["cls+grid"][:, :d], f["cls"])
    # grid cell (0,0) of a 2x2 grid over 4x4 tokens averages tokens (0,0),(0,1),(1,0),(1,1)
    grid = f["cls+grid"][:, d:].view(2, d, 2, 2)
    patches = tokens[:, 1:].view(2, 4, 4, d)
    torch.testing.assert_close(grid[:, :, 0, 0], patches[:, :2, :2].mean((1, 2)))
    torch.testing.assert_close(grid[:, :, 1, 0], patches[:, 2:, :2].mean((1, 2)))


@pytest.mark.parametrize("kw", [dict(embed_dim=34, num_heads=2), dict(embed_dim=32, num_heads=3)])
def test_vit_bad_dims_give_user_error(kw):
    with pytest.raises(UserError):
        build_encoder("vit", image_size=32, patch_size=8, depth=1, **kw)


def test_encoder_does_not_modify_float_input():
    enc = build_encoder("conv", **CONV).eval()
    x = torch.full((2, 3, 32, 32), 200.0)
    with torch.no_grad():
        enc(x)
    assert x.max().item() == 200.0


def test_random_like_keeps_architecture_and_normalisation(tmp_path):
    torch.manual_seed(5)
    trained = build_encoder("vit", **VIT)
    trained.set_normalization([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    save_encoder(trained, tmp_path / "enc", method="mae")
    a, b = random_like(tmp_path / "enc", seed=1), random_like(tmp_path / "enc", seed=1)
    assert a.config() == trained.config() and torch.equal(a.mean, trained.mean) and torch.equal(a.std, trained.std)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())  # seeded
    weights = [k for k in a.state_dict() if k not in ("mean", "std")]
    assert any(not torch.equal(a.state_dict()[k], trained.state_dict()[k]) for k in weights)  # untrained
