"""Every encoder architecture: feature and map shapes, crops, gradients, save/load, errors."""

from pathlib import Path

import pytest
import torch
from helpers import assert_one_line
from omegaconf import OmegaConf

import ssl4rl.worldmodels  # noqa: F401  (registers the world models' encoders, e.g. 'cswm')
from ssl4rl.encoders import ARCHS, build_encoder, load_encoder, save_encoder
from ssl4rl.encoders.vit import sincos_pos_embed
from ssl4rl.errors import UserError

TINY_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
# name: (arch, kwargs at 32 px, feature_dim, map_dim, map side at 32 px, map side at 16 px or None if fixed-size)
CASES = {
    "conv": ("conv", {"channels": 8, "feature_dim": 16, "layers": 2}, 16, 8, 13, None),
    "vit": ("vit", TINY_VIT, 5 * 32, 32, 4, 2),
    "resnet": ("resnet", {"depth": 18}, 512, 512, 4, 2),
    "timm-conv": ("timm", {"model_name": "resnet18"}, 512, 512, 1, 1),
    "timm-vit": (
        "timm",
        {"model_name": "vit_tiny_patch16_224", "model_kwargs": {"img_size": 32, **TINY_VIT}},
        32, 32, 4, 2,
    ),
    "cswm": ("cswm", {"num_slots": 5, "embedding_dim": 2, "hidden_dim": 16}, 10, 5, 3, None),  # C-SWM's object encoder
}
DYNAMIC = [name for name, case in CASES.items() if case[5] is not None]
BACKBONE_CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "backbone").glob("*.yaml"))


def _build(name: str, **over):
    arch, kwargs = CASES[name][:2]
    torch.manual_seed(0)
    return build_encoder(arch, image_size=32, **{**kwargs, **over})


def _images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Float images in [0, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_every_arch_is_tested():
    assert {case[0] for case in CASES.values()} == set(ARCHS)


@pytest.mark.parametrize("name", CASES)
def test_feature_and_map_shapes(name):
    _, _, feature_dim, map_dim, side, side16 = CASES[name]
    enc = _build(name).eval()
    assert (enc.feature_dim, enc.map_dim, enc.dynamic_size) == (feature_dim, map_dim, side16 is not None)
    x = enc.normalize(_images())
    with torch.no_grad():
        feats, fmap = enc.forward_features(x), enc.forward_map(x)
        frames = enc(torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8))
    assert feats.shape == (2, feature_dim) and torch.isfinite(feats).all()
    assert fmap.shape == (2, map_dim, side, side) and torch.isfinite(fmap).all()
    assert not torch.allclose(feats[0], feats[1])
    assert frames.shape == (3, feature_dim)


@pytest.mark.parametrize("name", DYNAMIC)
def test_small_crop_on_dynamic_encoders(name):
    _, _, feature_dim, map_dim, _, side16 = CASES[name]
    enc = _build(name).eval()
    crop = enc.normalize(_images(size=16))
    with torch.no_grad():
        fmap, feats = enc.forward_map(crop), enc.forward_features(crop)
    assert fmap.shape == (2, map_dim, side16, side16)
    assert feats.shape == (2, feature_dim) and torch.isfinite(feats).all()


@pytest.mark.parametrize("name", CASES)
def test_gradients_reach_every_parameter(name):
    enc = _build(name).train()
    x = enc.normalize(_images())
    (enc.forward_features(x).square().mean() + enc.forward_map(x).square().mean()).backward()
    trainable = {k: p for k, p in enc.named_parameters() if p.requires_grad}
    assert trainable
    missing = [k for k, p in trainable.items() if p.grad is None]
    assert not missing, missing
    first = next(iter(trainable.values()))
    assert first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", CASES)
def test_save_load_round_trip(name, tmp_path):
    enc = _build(name).eval()
    enc.set_normalization([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])
    loaded = load_encoder(save_encoder(enc, tmp_path / "enc"))
    assert type(loaded) is type(enc) and loaded.config() == enc.config()
    assert loaded.dynamic_size == enc.dynamic_size
    theirs = loaded.state_dict()
    assert list(theirs) == list(enc.state_dict())
    assert all(torch.equal(v, theirs[k]) for k, v in enc.state_dict().items())
    frames = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    x = enc.normalize(_images())
    with torch.no_grad():
        assert torch.equal(loaded(frames), enc(frames))
        assert torch.equal(loaded.forward_map(x), enc.forward_map(x))


def test_unknown_timm_model_is_one_line_error():
    with pytest.raises(UserError) as exc:
        build_encoder("timm", image_size=32, model_name="no_such_net_v9")
    assert_one_line(exc, "no_such_net_v9", "timm.list_models")


def test_timm_refuses_pretrained_and_bad_kwargs():
    with pytest.raises(UserError) as exc:
        build_encoder("timm", image_size=32, model_name="resnet18", model_kwargs={"pretrained": True})
    assert_one_line(exc, "pretrained")
    with pytest.raises(UserError) as exc:
        build_encoder("timm", image_size=32, model_name="resnet18", model_kwargs={"no_such_kwarg": 1})
    assert_one_line(exc, "resnet18", "no_such_kwarg")


def test_timm_vit_non_square_tokens_is_one_line_error():
    enc = _build("timm-vit").eval()
    with pytest.raises(UserError) as exc, torch.no_grad():
        enc.forward_map(enc.normalize(torch.rand(1, 3, 32, 16)))
    assert_one_line(exc, "square")


def test_vit_size_not_multiple_of_patch_is_one_line_error():
    with pytest.raises(UserError) as exc:
        build_encoder("vit", image_size=36, **TINY_VIT)
    assert_one_line(exc, "36", "8")
    enc = _build("vit")
    with pytest.raises(UserError) as exc:
        enc.forward_map(enc.normalize(_images(size=20)))
    assert_one_line(exc, "20x20", "patch_size 8")


def test_vit_tokens_and_positions():
    enc = _build("vit").eval()
    d = 32
    x = enc.normalize(_images())
    with torch.no_grad():
        tokens = enc.forward_tokens(x)
        assert tokens.shape == (2, 1 + 16, d)
        torch.testing.assert_close(enc.forward_map(x), tokens[:, 1:].transpose(1, 2).reshape(2, d, 4, 4))
        torch.testing.assert_close(enc.forward_features(x)[:, :d], tokens[:, 0])
        # default grid: the stored sin-cos table; a 2x2 crop grid: sin-cos at the centres of the
        # 2x2 cells of the default 4x4 grid (positions 0.5 and 2.5), computed exactly
        crop = enc.normalize(_images(size=16))
        for img, pos in ((x, enc.vit.pos_embed[0, 1:]), (crop, sincos_pos_embed(d, 2, span=4))):
            patches = enc.vit.patch_embed(img).flatten(1, 2)
            torch.testing.assert_close(enc.embed(img) - patches, pos.expand_as(patches))
    torch.testing.assert_close(enc.vit.pos_embed[0, 1:], sincos_pos_embed(d, 4))
    torch.testing.assert_close(sincos_pos_embed(d, 4, span=4), sincos_pos_embed(d, 4))
    assert not torch.allclose(sincos_pos_embed(d, 2, span=4), sincos_pos_embed(d, 2))


def test_small_stem_gives_larger_map():
    small, standard = _build("resnet", small_stem=True).eval(), _build("resnet", small_stem=False).eval()
    x = small.normalize(_images())
    with torch.no_grad():
        assert small.forward_map(x).shape[-2:] == (4, 4)
        assert standard.forward_map(x).shape[-2:] == (1, 1)
    assert small.model.conv1.kernel_size == (3, 3) and small.model.conv1.stride == (1, 1)
    assert standard.model.conv1.kernel_size == (7, 7)


def test_resnet_bad_depth_is_one_line_error():
    with pytest.raises(UserError) as exc:
        build_encoder("resnet", image_size=32, depth=101)
    assert_one_line(exc, "101", "18, 34, 50")


@pytest.mark.parametrize("path", BACKBONE_CONFIGS, ids=lambda p: p.stem)
def test_backbone_configs_build_and_rebuild(path):
    assert path.read_text().startswith("# ")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    enc = build_encoder(cfg.pop("arch"), **cfg)
    assert all(enc.config()[k] == v for k, v in cfg.items())
    assert build_encoder(enc.arch, **enc.config()).config() == enc.config()
