"""Every method pretrains from an ImageFolder as well as from env frames, through the one loop,
and writes a loadable encoder; the pretraining CLI runs on both sources and refuses bad input
with one line."""

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.encoders import load_encoder
from ssl4rl.errors import UserError
from ssl4rl.methods import METHODS, default_config
from ssl4rl.pretrain import pretrain

ROOT = Path(__file__).resolve().parent.parent
VIT = {"arch": "vit", "image_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """3 classes x 12 PNG images (40 px): a coloured square on noise, one colour per class."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        (root / f"class{c}").mkdir()
        for i in range(12):
            img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            r, q = rng.integers(0, 28, 2)
            img[r : r + 12, q : q + 12] = colour
            iio.imwrite(root / f"class{c}" / f"{i}.png", img)
    return root


def _cfg(path, method, kind="frames", steps=2, batch_size=8, **data):
    return PretrainConfig(method=default_config(method, batch_size=batch_size), backbone=dict(VIT),
                          data=DataConfig(path=str(path), kind=kind, **data), steps=steps, ckpt_every=steps,
                          log_every=1, progress=False, device="cpu")


# transition methods (C-SWM) refuse an image folder (tests/test_cswm.py)
@pytest.mark.parametrize("name", sorted(n for n in METHODS if not METHODS[n].needs_transitions))
def test_every_method_pretrains_on_an_image_folder(name, image_folder, tmp_path):
    res = pretrain(_cfg(image_folder, name, kind="imagefolder"), tmp_path / "run")
    enc = load_encoder(res["encoder"])
    assert enc.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, enc.feature_dim)
    assert np.isfinite(res["final_val_loss"])


def test_temporal_positives_on_frames(tiny_dataset, tmp_path):
    res = pretrain(_cfg(tiny_dataset, "simclr", positive="temporal", k=2), tmp_path / "run")
    assert np.isfinite(res["final_train_loss"])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "simclr", "kind": "imagefolder", "positive": "temporal"}, "data.positive=temporal"),
        ({"method": "simclr", "kind": "imagefolder", "batch_size": 1000}, "batch_size"),
        ({"method": "simclr", "kind": "nope"}, "data.kind"),
    ],
)
def test_bad_sources_are_one_line_errors(image_folder, tmp_path, kwargs, needle):
    kwargs = dict(kwargs)
    method, kind = kwargs.pop("method"), kwargs.pop("kind")
    batch = kwargs.pop("batch_size", 8)
    with pytest.raises(UserError) as exc:
        pretrain(_cfg(image_folder, method, kind=kind, batch_size=batch, **kwargs), tmp_path / "run")
    assert "\n" not in str(exc.value) and needle in str(exc.value)


def _cli(*args):
    return subprocess.run([sys.executable, "pretrain/run.py", *args, "progress=false", "device=cpu"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": ""})


TINY_CLI = ["backbone.image_size=32", "backbone.embed_dim=32", "backbone.depth=1", "backbone.num_heads=2",
            "method.batch_size=8", "steps=2", "ckpt_every=2"]


def test_cli_smoke_image_folder(image_folder, tmp_path):
    p = _cli("method=byol", "data.kind=imagefolder", f"data.path={image_folder}", *TINY_CLI, f"out={tmp_path / 'r'}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert load_encoder(tmp_path / "r" / "encoder").feature_dim > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["method=nope"], "unknown method 'nope'"),
        (["backbone=nope"], "unknown backbone 'nope'"),
        (["steps=abc"], "steps"),
        (["backbone.image_size=36"], "36"),
        (["method=simclr", "data.kind=imagefolder", "data.positive=temporal"], "data.positive=temporal"),
        (["method=simclr", "method.batch_size=4096"], "batch_size"),
    ],
)
def test_cli_bad_input_one_line(image_folder, tiny_dataset, tmp_path, args, needle):
    path = image_folder if "data.kind=imagefolder" in args else tiny_dataset
    base = [a for a in TINY_CLI if not any(a.startswith(x.split("=")[0] + "=") for x in args)]
    p = _cli(f"data.path={path}", *base, *args, f"out={tmp_path / 'r'}")
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], p.stderr


def test_resume_refuses_changed_settings_and_corrupt_checkpoints(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    pretrain(_cfg(tiny_dataset, "simclr", steps=2), out)
    (out / "results.json").unlink()
    cfg = _cfg(tiny_dataset, "simclr", steps=4)
    cfg.method.temperature = 0.5
    with pytest.raises(UserError) as exc:
        pretrain(cfg, out)
    assert "method.temperature" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(UserError) as exc:  # steps set the LR schedule's horizon: a resume keeps them
        pretrain(_cfg(tiny_dataset, "simclr", steps=4), out)
    assert "steps (2 -> 4)" in str(exc.value) and "\n" not in str(exc.value)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as exc:
        pretrain(_cfg(tiny_dataset, "simclr", steps=2), out)
    assert "checkpoint" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("option", [{"lr": -1.0}, {"lr": 0.0}, {"momentum": 1.5}])
def test_bad_optimiser_values_are_one_line(tiny_dataset, tmp_path, option):
    key, value = next(iter(option.items()))
    cfg = _cfg(tiny_dataset, "simclr")
    for k, v in option.items():
        setattr(cfg.method, k, v)
    with pytest.raises(UserError) as exc:
        pretrain(cfg, tmp_path / "run")
    assert f"method.{key}={value}" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "run").exists()


def test_memory_bank_keeps_the_last_of_repeated_indices():
    from ssl4rl.parts.momentum import MemoryBank

    bank = MemoryBank(num_samples=4, dim=3, momentum=0.0)
    x = torch.eye(3)
    bank.update(torch.tensor([1, 1, 2]), x)
    torch.testing.assert_close(bank.bank[1], x[1])
    torch.testing.assert_close(bank.bank[2], x[2])
