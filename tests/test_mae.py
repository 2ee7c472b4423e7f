import json

import pytest
import torch
from safetensors.torch import load_file

from ssl4rl.encoders import build_encoder, load_encoder
from ssl4rl.errors import UserError
from ssl4rl.losses import masked_patch_mse
from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.methods import Batch, MethodContext, build_method, default_config
from ssl4rl.parts.patches import gather_tokens, patchify, random_token_mask, unpatchify
from ssl4rl.pretrain import pretrain as _pretrain

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
BACKBONE = {"arch": "vit", **VIT}
TINY = dict(ckpt_every=3, log_every=3, backbone=BACKBONE, progress=False, device="cpu")


def pretrain(data, out, steps, method="mae", batch_size=8, seed=0, **kw):
    """The loop with a tiny config (keyword overrides of PretrainConfig fields)."""
    cfg = PretrainConfig(method=default_config(method, batch_size=batch_size), data=DataConfig(path=str(data)),
                         steps=steps, seed=seed, **kw)
    return _pretrain(cfg, out)


def mae_model(enc, seed=None, **options):
    gen = torch.Generator().manual_seed(seed) if seed is not None else torch.Generator()
    return build_method(default_config("mae", **options), enc, MethodContext(generator=gen))


def _batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), torch.arange(n))


def _images(n=4, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- masking & patches
def test_random_token_mask():
    g = torch.Generator().manual_seed(0)
    keep, mask, restore = random_token_mask(n=4, length=64, mask_ratio=0.75, generator=g)
    assert keep.shape == (4, 16) and mask.shape == (4, 64) and restore.shape == (4, 64)
    assert mask.dtype == torch.bool
    assert (mask.sum(1) == 48).all()
    for i in range(4):
        visible = set(torch.nonzero(~mask[i]).flatten().tolist())
        assert set(keep[i].tolist()) == visible and len(keep[i].unique()) == 16
    # restore undoes the shuffle whose first n_keep entries are ``keep``
    shuffle = restore.argsort(1)
    assert torch.equal(shuffle[:, :16], keep)
    tokens = torch.arange(64.0).view(1, 64, 1).expand(4, 64, 3)
    assert torch.equal(gather_tokens(gather_tokens(tokens, shuffle), restore), tokens)
    assert torch.equal(gather_tokens(tokens, keep)[..., 0], keep.float())
    # masks differ between samples and are reproducible from the generator
    assert not torch.equal(mask[0], mask[1])
    keep2, mask2, restore2 = random_token_mask(4, 64, 0.75, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, keep2) and torch.equal(mask, mask2) and torch.equal(restore, restore2)


def test_patchify_unpatchify_round_trip():
    x = _images(n=2, size=32)
    p = patchify(x, 8)
    assert p.shape == (2, 16, 8 * 8 * 3)
    assert torch.equal(unpatchify(p, 8), x)
    # patch 1 is the second patch of the first row
    assert torch.equal(p[:, 1].view(2, 8, 8, 3), x[:, :, :8, 8:16].permute(0, 2, 3, 1))
    q = torch.randn(3, 64, 4 * 4 * 3)
    assert torch.equal(patchify(unpatchify(q, 4), 4), q)


# ---------------------------------------------------------------- the MAE model
def test_mae_forward_encoder_sees_only_visible_tokens():
    torch.manual_seed(0)
    enc = build_encoder("vit", **{**VIT, "patch_size": 4})  # 64 patches
    mae = mae_model(enc, seed=0)
    seen = []
    enc.vit.blocks.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    dec_in = []
    mae.decoder.register_forward_hook(lambda m, inp, out: dec_in.append(inp[0].detach()))
    emb_out = []
    mae.decoder_embed.register_forward_hook(lambda m, inp, out: emb_out.append(out.detach()))

    images = _images(n=3)
    loss, pred, mask = mae(images)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    assert pred.shape == (3, 64, 4 * 4 * 3)
    assert mask.shape == (3, 64) and (mask.sum(1) == 48).all()
    assert seen == [torch.Size([3, 1 + 16, 32])]  # CLS + 16 visible tokens only

    # decoder input: mask tokens exactly at hidden positions, encoded tokens at visible ones
    x = dec_in[0][:, 1:]
    pos = mae.decoder_pos[0, 1:]
    hidden_expected = (mae.mask_token[0, 0] + pos).detach()
    for i in range(3):
        hid = torch.nonzero(mask[i]).flatten()
        vis = torch.nonzero(~mask[i]).flatten()
        torch.testing.assert_close(x[i, hid], hidden_expected[hid])
        # visible tokens are the encoded ones, put back at their own positions
        latent = emb_out[0][i, 1:]  # in keep order
        got = x[i, vis] - pos[vis]
        assert torch.allclose(torch.sort(got, 0).values, torch.sort(latent, 0).values, atol=1e-5)

    loss.backward()
    assert enc.vit.patch_embed.proj.weight.grad is not None
    assert enc.vit.patch_embed.proj.weight.grad.abs().sum() > 0


def test_mae_training_step_and_figures(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("vit", **VIT)
    mae = mae_model(enc, seed=0, decoder_depth=1)
    loss, logs = mae.training_step(_batch(n=2), 0)
    assert float(logs["loss"]) == pytest.approx(loss.item())
    assert float(logs["mask_ratio"]) == pytest.approx(0.75)
    assert mae.hparams()["decoder_depth"] == 1
    masked, recon = mae.reconstruct(_images(n=2))
    assert masked.shape == recon.shape == (2, 3, 32, 32)
    paths = mae.save_figures(_batch(n=2), tmp_path, step=5)
    assert [p.name for p in paths] == ["recon_step0000005.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mae_reduces_loss_on_fixed_batch():
    torch.manual_seed(0)
    enc = build_encoder("vit", **VIT)
    mae = mae_model(enc, decoder_depth=1, decoder_dim=32, shift_pad=0)
    images = _batch(n=4)
    opt = torch.optim.Adam(mae.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        mae.generator = torch.Generator().manual_seed(1)  # same masks every step
        loss, _ = mae.training_step(images, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


# ---------------------------------------------------------------- the loss
def test_masked_patch_mse_only_counts_hidden_patches():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 16, 12, generator=g)
    pred = torch.randn(2, 16, 12, generator=g)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [1, 5, 9]] = True
    mask[1, [0, 2]] = True
    for norm_pix in (True, False):
        base = masked_patch_mse(pred, target, mask, norm_pix=norm_pix)
        p2 = pred.clone()
        p2[~mask] += 100.0  # visible patches: ignored
        assert torch.equal(masked_patch_mse(p2, target, mask, norm_pix=norm_pix), base)
        p3 = pred.clone()
        p3[0, 5] += 1.0  # one hidden patch: counted
        assert masked_patch_mse(p3, target, mask, norm_pix=norm_pix) != base

    # averaged over hidden patches: per-patch mse mean over the 5 hidden patches
    expected = (pred - target).pow(2).mean(-1)[mask].mean()
    torch.testing.assert_close(masked_patch_mse(pred, target, mask, norm_pix=False), expected)


def test_masked_patch_mse_norm_pix_target():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 16, 48, generator=g) * 5 + 3
    mask = torch.ones(2, 16, dtype=torch.bool)
    mean, std = target.mean(-1, keepdim=True), target.std(-1, keepdim=True)
    normed = (target - mean) / std
    assert masked_patch_mse(normed, target, mask, norm_pix=True) < 1e-6
    assert masked_patch_mse(normed, target, mask, norm_pix=False) > 1.0
    # per-patch affine changes of the target do not change the normalised loss
    pred = torch.randn(2, 16, 48, generator=g)
    scale = torch.rand(2, 16, 1, generator=g) + 0.5
    shift = torch.randn(2, 16, 1, generator=g)
    torch.testing.assert_close(
        masked_patch_mse(pred, target * scale + shift, mask), masked_patch_mse(pred, target, mask), rtol=1e-4, atol=1e-4
    )


def test_build_method_errors():
    with pytest.raises(UserError) as exc:
        default_config("nope")
    msg = str(exc.value)
    assert "\n" not in msg and "nope" in msg and "mae" in msg
    with pytest.raises(UserError) as exc:
        mae_model(build_encoder("conv", image_size=32))
    msg = str(exc.value)
    assert "\n" not in msg and "vit" in msg and "conv" in msg
    with pytest.raises(UserError) as exc:
        default_config("mae", mask_ratioo=0.5)
    assert "mask_ratioo" in str(exc.value)


# ---------------------------------------------------------------- pretraining
def _weights(folder):
    return load_file(str(folder / "encoder" / "encoder.safetensors"))


def test_pretrain_writes_outputs_and_resumes(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    res = pretrain(tiny_dataset, out, steps=6, **TINY)
    assert res["steps"] == 6 and res["method"] == "mae" and res["arch"] == "vit"
    assert res["final_train_loss"] > 0 and res["final_val_loss"] > 0
    assert json.loads((out / "results.json").read_text()) == res
    assert (out / "checkpoint.pt").is_file()
    assert sorted(p.name for p in out.glob("recon_step*.png")) == ["recon_step0000003.png", "recon_step0000006.png"]
    assert not list(out.rglob("*.tmp"))
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 6

    enc = load_encoder(out / "encoder")
    meta = json.loads((out / "encoder" / "encoder.json").read_text())
    assert meta["method"] == "mae" and meta["steps"] == 6 and meta["env"] == "dmc_cartpole"
    # normalisation was fitted to the data, not left at the defaults
    assert meta["normalization"]["mean"] != pytest.approx([0.5, 0.5, 0.5])
    feats = enc.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert feats.shape == (2, enc.feature_dim)
    weights6 = _weights(out)
    first_png = out / "recon_step0000003.png"
    first_png_mtime = first_png.stat().st_mtime_ns

    # a resume takes the settings the run started with: more steps (the LR schedule's horizon) are refused, in one
    # line naming the key, as on the command line
    (out / "results.json").unlink()
    with pytest.raises(UserError) as e:
        pretrain(tiny_dataset, out, steps=9, **TINY)
    assert "steps (6 -> 9)" in str(e.value) and "\n" not in str(e.value)
    assert _weights(out).keys() == weights6.keys() and all(torch.equal(_weights(out)[k], weights6[k]) for k in weights6)
    res6 = pretrain(tiny_dataset, out, steps=6, **TINY)  # the same settings resume (here: at the end)
    assert res6["steps"] == 6 and "at step 6" in (out / "log.txt").read_text()
    assert first_png.stat().st_mtime_ns == first_png_mtime  # step 3 was not redone


def test_pretrain_resume_at_end_restores_same_encoder(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_dataset, out, steps=3, **TINY)
    before = _weights(out)
    (out / "results.json").unlink()
    res = pretrain(tiny_dataset, out, steps=3, **TINY)  # nothing left to do
    assert res["steps"] == 3
    after = _weights(out)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_pretrain_is_deterministic(tiny_dataset, tmp_path):
    a = pretrain(tiny_dataset, tmp_path / "a", steps=3, seed=1, **TINY)
    b = pretrain(tiny_dataset, tmp_path / "b", steps=3, seed=1, **TINY)
    assert a["final_train_loss"] == b["final_train_loss"]
    assert a["final_val_loss"] == b["final_val_loss"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(load_encoder(tmp_path / "a" / "encoder").encode(x), load_encoder(tmp_path / "b" / "encoder").encode(x))

    c = pretrain(tiny_dataset, tmp_path / "c", steps=3, seed=2, **TINY)
    wc = _weights(tmp_path / "c")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert c["final_train_loss"] != a["final_train_loss"]


def test_pretrain_errors(tiny_dataset, tmp_path):
    with pytest.raises(UserError) as exc:
        pretrain(tmp_path / "no_data", tmp_path / "out", steps=1, **TINY)
    assert str(tmp_path / "no_data") in str(exc.value)
    with pytest.raises(UserError):
        pretrain(tiny_dataset, tmp_path / "out2", steps=1, method="nope", **TINY)
    with pytest.raises(UserError) as exc:
        pretrain(tiny_dataset, tmp_path / "out4", steps=1, batch_size=100000, **TINY)
    assert "batch_size" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(UserError):
        pretrain(tiny_dataset, tmp_path / "out3", steps=1, **{**TINY, "backbone": {"arch": "conv", "image_size": 32}})


def test_pretrain_resume_matches_uninterrupted_run(tiny_dataset, tmp_path, monkeypatch):
    import ssl4rl.pretrain

    full = pretrain(tiny_dataset, tmp_path / "full", steps=6, **TINY)
    save = ssl4rl.pretrain._save_checkpoint

    def save_then_stop(path, model, opt, sched, gen, step):  # a kill right after the step-3 checkpoint
        save(path, model, opt, sched, gen, step)
        raise KeyboardInterrupt

    monkeypatch.setattr(ssl4rl.pretrain, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_dataset, tmp_path / "split", steps=6, **TINY)
    monkeypatch.setattr(ssl4rl.pretrain, "_save_checkpoint", save)
    assert not (tmp_path / "split" / "results.json").exists()
    split = pretrain(tiny_dataset, tmp_path / "split", steps=6, **TINY)
    assert "resumed from" in (tmp_path / "split" / "log.txt").read_text()
    assert split["final_train_loss"] == full["final_train_loss"]
    assert split["final_val_loss"] == full["final_val_loss"]
    wa, wb = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_pretrain_does_not_depend_on_ckpt_every(tiny_dataset, tmp_path):
    a = pretrain(tiny_dataset, tmp_path / "a", steps=4, **{**TINY, "ckpt_every": 2})
    b = pretrain(tiny_dataset, tmp_path / "b", steps=4, **{**TINY, "ckpt_every": 4})
    assert a["final_train_loss"] == b["final_train_loss"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
