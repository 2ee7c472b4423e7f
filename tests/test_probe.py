"""The state-regression probe on cases with a known answer."""

import numpy as np
import pytest
import torch

from ssl4rl.eval import Ridge, pixel_featurizer, probe_features, r2_per_dim, ridge_probe


def test_r2_known_values():
    y = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    np.testing.assert_allclose(r2_per_dim(y, y)[0], 1.0)
    np.testing.assert_allclose(r2_per_dim(y, np.full_like(y, 2.0))[0], 0.0)  # predicting the mean
    assert np.isnan(r2_per_dim(y, y)[1])  # constant target: undefined


def test_linear_features_give_r2_one_and_noise_gives_zero():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(2000, 3))
    mixing = rng.normal(size=(3, 20))
    feats = states @ mixing + 1e-3 * rng.normal(size=(2000, 20))
    groups = np.arange(2000) // 100
    res = ridge_probe(feats[:1500], states[:1500], feats[1500:], states[1500:], groups=groups[:1500])
    assert res["r2"] > 0.999
    assert len(res["r2_per_dim"]) == 3
    noise = rng.normal(size=(2000, 20))
    res = ridge_probe(noise[:1500], states[:1500], noise[1500:], states[1500:], groups=groups[:1500])
    assert abs(res["r2"]) < 0.05


def test_ridge_matches_closed_form():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 2))
    r = Ridge(x, y).fit(3.0)
    xs = (x - x.mean(0)) / (x.std(0) + 1e-8)
    w = np.linalg.solve(xs.T @ xs + 3.0 * np.eye(5), xs.T @ (y - y.mean(0)))
    np.testing.assert_allclose(r.coef, w, rtol=1e-6, atol=1e-8)


def test_probe_on_real_frames_recovers_cart_position(tiny_dataset):
    from ssl4rl.data import load_split

    train, test = load_split(tiny_dataset, holdout=0.34, seed=0)
    res = probe_features(pixel_featurizer(16), train, test)
    assert res["feature_dim"] == 16 * 16 * 3
    # cart position (first state dim of cartpole) is visible in the pixels
    assert res["r2_per_dim"][0] > 0.3


def test_pixel_featurizer_shape():
    f = pixel_featurizer(8)(torch.zeros(4, 3, 32, 32, dtype=torch.uint8))
    assert f.shape == (4, 192)


@pytest.mark.parametrize("bad", [0, -1])
def test_ridge_alpha_grid_handles_degenerate_groups(bad):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 1))
    res = ridge_probe(x, y, x, y, groups=np.zeros(50) + bad)  # one group only
    assert np.isfinite(res["r2"])
