"""The evaluation harness: kNN, linear probe, label fractions, pose/velocity probe, and the whole run."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl4rl.data import dataset_meta, load_split
from ssl4rl.encoders import build_encoder, save_encoder
from ssl4rl.errors import UserError
from ssl4rl.eval import (
    evaluate,
    finetune,
    frame_windows,
    knn_accuracy,
    knn_predict,
    knn_votes,
    linear_probe,
    pixel_featurizer,
    probe_features,
    quantile_bin_labels,
    state_probe,
    stratified_split,
    velocity_dims,
)
from ssl4rl.eval.report import eval_markdown, main_metrics, markdown_table, metric_intervals
from tests.helpers import assert_one_line

ROOT = Path(__file__).resolve().parent.parent
TINY_VIT = {"image_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def blobs(n_per_class: int, num_classes: int, dim: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters around random unit centres (scaled by 1/spread)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=g), dim=1)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_knn_separable_is_perfect_and_random_labels_are_chance():
    x, y = blobs(60, 4, 16, 0.05, seed=0)
    xt, yt = blobs(30, 4, 16, 0.05, seed=0)  # same centres (same seed), new noise below
    xt = xt + 0.05 * torch.randn(xt.shape, generator=torch.Generator().manual_seed(1))
    for k in (20, 200):
        assert knn_accuracy(x, y, xt, yt, k=k, num_classes=4) == 1.0
    g = torch.Generator().manual_seed(2)
    xr, yr = torch.randn(3000, 16, generator=g), torch.randint(4, (3000,), generator=g)
    acc = knn_accuracy(xr[:2000], yr[:2000], xr[2000:], yr[2000:], k=20, num_classes=4)
    assert abs(acc - 0.25) < 0.06


def test_knn_votes_match_hand_computation():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1.0, 0.2]])
    sims = [float(torch.nn.functional.cosine_similarity(test, t[None])) for t in train]
    for temperature in (0.07, 0.5, 10.0):
        w = [math.exp(s / temperature) for s in sims]
        expect = torch.tensor([[w[0], w[1] + w[2]]]) / sum(w)
        got = knn_votes(train, labels, test, k=3, temperature=temperature, num_classes=2)
        torch.testing.assert_close(got, expect.float(), rtol=1e-5, atol=1e-6)
    # a sharp temperature trusts the nearest point (class 0), a flat one counts heads (class 1)
    assert int(knn_predict(train, labels, test, k=3, temperature=0.07)) == 0
    assert int(knn_predict(train, labels, test, k=3, temperature=10.0)) == 1
    # k larger than the train set is clipped; k=1 is the nearest neighbour
    assert int(knn_predict(train, labels, test, k=1000, temperature=10.0)) == 1
    assert int(knn_predict(train, labels, test, k=1)) == 0


def test_chunked_knn_equals_unchunked():
    g = torch.Generator().manual_seed(3)
    x, y, xt = torch.randn(300, 8, generator=g), torch.randint(5, (300,), generator=g), torch.randn(101, 8, generator=g)
    whole = knn_votes(x, y, xt, k=20, num_classes=5, chunk_size=10_000)
    chunked = knn_votes(x, y, xt, k=20, num_classes=5, chunk_size=7)
    torch.testing.assert_close(chunked, whole)
    assert torch.equal(knn_predict(x, y, xt, chunk_size=7), knn_predict(x, y, xt, chunk_size=10_000))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adamw"])
def test_linear_probe_separable(optimizer):
    x, y = blobs(80, 3, 16, 0.2, seed=4)
    xt, yt = blobs(40, 3, 16, 0.2, seed=4)
    xt = xt + 0.1 * torch.randn(xt.shape, generator=torch.Generator().manual_seed(5))
    res = linear_probe(x, y, xt, yt, num_classes=3, optimizer=optimizer, generator=torch.Generator().manual_seed(0))
    assert res["top1"] > 0.95
    assert set(res["val_top1"]) == {str(wd) for wd in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)}
    again = linear_probe(x, y, xt, yt, num_classes=3, optimizer=optimizer, generator=torch.Generator().manual_seed(0))
    assert again == res  # seeded: repeats exactly


def test_label_fractions_keep_every_class():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([1, 5, 40, 300])])
    for fraction in (0.01, 0.1):
        chosen, rest = stratified_split(labels, fraction, torch.Generator().manual_seed(0))
        counts = torch.bincount(labels[chosen], minlength=4).tolist()
        assert counts == [max(1, round(fraction * n)) for n in (1, 5, 40, 300)]
        assert sorted(torch.cat([chosen, rest]).tolist()) == list(range(len(labels)))  # a partition
    # the linear probe copes with one label per class (no validation split possible)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([1, 5, 40, 60])])
    x = torch.eye(4)[labels] + 0.01 * torch.randn(len(labels), 4, generator=torch.Generator().manual_seed(0))
    chosen, _ = stratified_split(labels, 0.01, torch.Generator().manual_seed(0))
    res = linear_probe(x[chosen], labels[chosen], x, labels, num_classes=4)
    assert res["top1"] == 1.0 and res["val_top1"] == {}


def test_frame_windows_never_cross_episodes():
    lengths = [5, 2, 4, 3]
    w = frame_windows(lengths)
    episode = np.repeat(np.arange(len(lengths)), lengths)
    assert w.shape == (3 + 0 + 2 + 1, 3)
    assert (episode[w] == episode[w][:, :1]).all()  # all three frames in one episode
    assert (np.diff(w, axis=1) == 1).all()  # consecutive: t-2, t-1, t
    assert w[:, -1].tolist() == [2, 3, 4, 9, 10, 13]


def test_velocity_probe_uses_three_frame_features():
    """Velocity = x_t - x_{t-1} is linear in the 3-frame features, and invisible in one frame."""
    rng = np.random.default_rng(0)
    lengths = [60] * 10
    pos = np.concatenate([np.cumsum(rng.normal(size=n)) for n in lengths])
    vel = np.concatenate([np.diff(p, prepend=p[0]) for p in np.split(pos, np.cumsum(lengths)[:-1])])
    states = np.stack([pos, vel], 1)
    feats = np.stack([pos, rng.normal(size=len(pos))], 1)  # one frame shows the position only
    res = state_probe(feats[:480], states[:480], lengths[:8], feats[480:], states[480:], lengths[8:],
                      ["position", "velocity"])
    assert res["pose"]["dims"] == ["position"] and res["pose"]["frames"] == 1
    assert res["velocity"]["dims"] == ["velocity"] and res["velocity"]["frames"] == 3
    assert res["pose"]["r2"] > 0.99 and res["velocity"]["r2"] > 0.99
    assert res["feature_dim"] == 2 and len(res["r2_per_dim"]) == 2
    # the same target from single frames: near zero
    single = state_probe(feats[:480], states[:480], lengths[:8], feats[480:], states[480:], lengths[8:],
                         ["position", "speed"])
    assert single["velocity"] is None and single["r2_per_dim"][1] < 0.2


def test_pose_velocity_split_on_cartpole(tiny_dataset):
    names = dataset_meta(tiny_dataset)["state_names"]
    assert velocity_dims(names) == [3, 4]
    train, test = load_split(tiny_dataset, holdout=0.34, seed=0)
    res = probe_features(pixel_featurizer(8), train, test, names)
    assert res["pose"]["dims"] == ["position[0]", "position[1]", "position[2]"]
    assert res["velocity"]["dims"] == ["velocity[0]", "velocity[1]"] and res["velocity"]["frames"] == 3
    assert len(res["r2_per_dim"]) == 5 and res["r2_per_dim"][0] > 0.3  # cart position is visible


def test_quantile_bins_are_balanced():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(400, generator=g)
    y_tr, y_te, edges = quantile_bin_labels(values, torch.tensor([-10.0, 10.0]), 4)
    assert torch.bincount(y_tr).tolist() == [100, 100, 100, 100] and len(edges) == 3
    assert y_te.tolist() == [0, 3]


def _tiny_encoders(root: Path) -> list[Path]:
    paths = []
    for i in range(2):
        torch.manual_seed(10 + i)
        enc = build_encoder("vit", **TINY_VIT)
        paths.append(save_encoder(enc, root / f"run{i}" / "encoder", method="mae", val_metrics={"rotation_acc": 0.5}))
    return paths


def test_harness_on_frames_writes_all_outputs(tmp_path, tiny_dataset):
    encoders = _tiny_encoders(tmp_path)
    res = evaluate(encoders, tiny_dataset, out=tmp_path / "out", holdout=0.34, device="cpu", progress=False)
    names = [r["name"] for r in res["rows"]]
    assert names == ["mae (vit) (run0)", "mae (vit) (run1)", "random init (vit)", "raw pixels 16x16"]
    for name in ("eval.json", "eval.md", "eval_bars.png", "eval_projection.png", "probe.json", "probe.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["classes"][0].startswith("position[0] in") and len(saved["classes"]) == 4
    row = saved["rows"][0]
    assert row["pretext"] == {"rotation_acc": 0.5} and set(row["knn"]) == {"k=20", "k=200"}
    assert set(row["fractions"]) == {"0.01", "0.1"} and row["fractions"]["0.01"]["train_labels"] >= 4
    state = row["state"]["dmc_cartpole"]
    assert state["velocity"]["dims"] == ["velocity[0]", "velocity[1]"]
    assert set(state["velocity"]["kernel"]) >= {"r2", "r2_per_dim", "r2_ci", "alpha", "bandwidth", "landmarks"}
    ceiling = saved["datasets"][0]["ceiling"]
    assert ceiling["inputs"] == ["position[0]", "position[1]", "position[2]"] and ceiling["kernel"]["r2"] is not None
    assert {"pose R²", "velocity R²", "pose R² (kernel)", "velocity R² (kernel)"} <= set(main_metrics(row))
    table = (tmp_path / "out" / "eval.md").read_text()
    assert "rotation_acc 0.500" in table and "velocity R² (kernel)" in table and table.count("\n| ") == 6
    assert "| true pose t-2..t (velocity ceiling) |" in table
    probe = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert [r["name"] for r in probe["rows"]] == names and probe["encoder"] == str(encoders[0])
    assert "velocity[0] (3 frames)" in (tmp_path / "out" / "probe.md").read_text()


def _colour_folder(root: Path, per_class: int = 10) -> Path:
    """An ImageFolder of 16 px images: reddish vs bluish noise."""
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for name in ("blue", "red"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 120, size=(16, 16, 3), dtype=np.uint8)
            img[..., 0 if name == "red" else 2] += 120
            iio.imwrite(root / name / f"{i}.png", img)
    return root


def test_harness_on_image_folder_with_finetune(tmp_path):
    encoders = _tiny_encoders(tmp_path)[:1]
    res = evaluate(encoders, _colour_folder(tmp_path / "images"), kind="imagefolder", out=tmp_path / "out",
                   finetune=True, finetune_epochs=1, device="cpu", progress=False)
    assert res["classes"] == ["blue", "red"] and res["train_samples"] == 16 and res["test_samples"] == 4
    pixels = res["rows"][-1]
    assert pixels["name"] == "raw pixels 16x16" and "finetune" not in pixels
    assert pixels["knn"]["k=20"] == 1.0 and pixels["linear"]["top1"] == 1.0
    for row in res["rows"][:2]:  # the encoder and its random init (trained from scratch)
        assert 0.0 <= row["finetune"]["top1"] <= 1.0 and row["finetune"]["epochs"] == 1
    assert "state" not in pixels and not (tmp_path / "out" / "probe.json").exists()
    assert "fine-tune top-1" in (tmp_path / "out" / "eval.md").read_text()


def test_finetune_trains_a_copy_and_repeats():
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(24) % 2
    enc = build_encoder("vit", **TINY_VIT)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    runs = [finetune(enc, images, labels, images, labels, 2, epochs=1, batch_size=8,
                     generator=torch.Generator().manual_seed(0), progress=False) for _ in range(2)]
    assert runs[0] == runs[1] and np.isfinite(runs[0]["train_loss"])
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # the caller's encoder is untouched


def test_harness_bad_input(tmp_path, tiny_dataset):
    encoders = _tiny_encoders(tmp_path)[:1]
    for kwargs, needle in [
        ({"kind": "mnist"}, "frames, imagefolder"),
        ({"knn_k": [0]}, "knn_k=[0]: every item must be >= 1"),
        ({"label_fractions": [1.5]}, "label_fractions=[1.5]: every item must be > 0 and < 1"),
        ({"label_state": "nope"}, "position[0]"),
    ]:
        with pytest.raises(UserError) as e:
            evaluate(encoders, tiny_dataset, device="cpu", progress=False, **kwargs)
        assert_one_line(e, needle)


def test_cli_takes_comma_lists(tmp_path, tiny_dataset):
    a, b = _tiny_encoders(tmp_path)
    out = tmp_path / "cli"
    args = [f"encoders={a},{b}", f"data.path={tiny_dataset}", "knn_k=5,50", "label_fractions=[0.1]",
            "data.holdout=0.34", f"out={out}", "progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread, as in the in-process tests
    p = subprocess.run([sys.executable, "pretrain/eval.py", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, check=False, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((out / "eval.json").read_text())
    assert len(res["rows"]) == 4 and set(res["rows"][0]["knn"]) == {"k=5", "k=50"}
    assert "raw pixels" in p.stdout and "velocity R²" in p.stdout


def _state(r2: float, ci: list[float] | None, kernel: float | None = None) -> dict:
    """A state-probe result of one frame dataset (one pose and one velocity dim)."""
    part = lambda dim: {"r2": r2, "r2_per_dim": [r2], "r2_ci": ci, "alpha": 1.0, "dims": [dim], "frames": 1,
                        **({} if kernel is None else {"kernel": {"r2": kernel, "r2_per_dim": [kernel], "r2_ci": ci}})}
    return {"r2": r2, "r2_per_dim": [r2, r2], "feature_dim": 8, "pose": part("position"), "velocity": part("velocity")}


def test_tables_rank_representations_only_where_intervals_separate_them():
    states = [_state(0.80, [0.75, 0.85], 0.9), _state(0.70, [0.60, 0.78], 0.8), _state(0.30, [0.20, 0.40], 0.5)]
    ceiling = {**_state(0.76, [0.70, 0.80], 0.99)["velocity"], "inputs": ["position"]}
    report = {"env": "toy", "train_episodes": 8, "test_episodes": 4, "test_frames": 100, "state_names": ["position", "velocity"],
              "ceiling": ceiling, "rows": [{"name": n, **s} for n, s in zip("abc", states, strict=True)]}
    table = markdown_table(report)
    # a and b overlap: tied at 1, never ordered; c is below both
    assert "| a | 8 | 0.800 | 0.800 [0.750, 0.850] #1= |" in table and "| b | 8 | 0.700 | 0.700 [0.600, 0.780] #1= |" in table
    assert "0.300 [0.200, 0.400] #3 |" in table and "#k=: tied" in table
    assert "| true pose t-2..t (velocity ceiling) | 1 per frame | — | — | — | 0.760 [0.700, 0.800] | 0.990 [0.700, 0.800] |" \
        in table
    assert "| velocity (3 frames) | 0.800 / 0.900 | 0.700 / 0.800 | 0.300 / 0.500 | 0.760 / 0.990 |" in table  # linear / kernel
    row = {"state": {"toy": states[0]}, "knn": {}, "linear": {"top1": 0.5}, "fractions": {}}
    assert metric_intervals(row)["velocity R² (kernel)"] == [0.75, 0.85]
    assert metric_intervals({**row, "state": {"toy": states[0], "other": states[1]}})["pose R²"] is None  # no joint interval


def test_eval_json_from_before_the_kernel_probe_still_reads():
    old = _state(0.6, None)
    for part in ("pose", "velocity"):
        del old[part]["r2_ci"], old[part]["r2_per_dim"]
    row = {"name": "enc", "feature_dim": 8, "pretext": None, "state": {"toy": old}, "knn": {"k=20": 0.5},
           "linear": {"top1": 0.5}, "fractions": {"0.1": {"knn": {"k=20": 0.4}, "linear": {"top1": 0.4}}}}
    assert main_metrics(row) == {"pose R²": 0.6, "velocity R²": 0.6, "kNN k=20": 0.5, "linear top-1": 0.5,
                                 "linear 10%": 0.4}
    result = {"kind": "frames", "data": ["d"], "train_samples": 1, "test_samples": 1, "labels": "x", "classes": ["a"],
              "knn": {"k": [20], "temperature": 0.07}, "datasets": [{"name": "toy"}], "rows": [row]}
    assert "| enc | 8 | — | 0.600 | 0.600 | 0.500 |" in eval_markdown(result)
