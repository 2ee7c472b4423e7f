"""The state-regression probe on cases with a known answer."""

import numpy as np
import pytest
import torch

from ssl4rl.eval import Ridge, pixel_featurizer, probe_features, r2_per_dim, ridge_probe
from ssl4rl.eval.probe import bootstrap_r2, kernel_probe, pose_ceiling, state_probe
from ssl4rl.eval.report import tied_ranks


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


def test_kernel_probe_fits_a_nonlinear_target_the_linear_probe_cannot():
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, size=(1200, 4))
    y = np.stack([np.sin(2 * x[:, 0]) * np.cos(x[:, 1]), x[:, 2] ** 2], 1)  # no linear trend at all
    groups = np.arange(1200) // 50
    tr, te = slice(0, 1000), slice(1000, None)
    lin = ridge_probe(x[tr], y[tr], x[te], y[te], groups=groups[tr])
    ker = kernel_probe(x[tr], y[tr], x[te], y[te], groups=groups[tr], landmarks=300)
    assert lin["r2"] < 0.1 and ker["r2"] > 0.9, (lin["r2"], ker["r2"])
    assert len(ker["alpha"]) == len(ker["bandwidth"]) == 2 and ker["landmarks"] == 300  # chosen per output dim
    assert kernel_probe(x[tr], y[tr], x[te], y[te], groups=groups[tr], landmarks=300) == ker  # seeded: repeatable


def _pendulum(episodes: int, steps: int = 40, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """States (cos, sin, angular velocity) of a pendulum whose angle winds all the way round."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        omega = np.cumsum(rng.normal(0, 0.05, steps)) + rng.normal(0, 0.3)
        theta = rng.uniform(-np.pi, np.pi) + np.cumsum(omega)
        out.append(np.stack([np.cos(theta), np.sin(theta), omega], 1))
    return np.concatenate(out), [steps] * episodes


def test_perfect_pose_ceiling_needs_the_kernel_probe_on_a_pendulum():
    states, lengths = _pendulum(30)
    names = ["position[0]", "position[1]", "velocity[0]"]
    cut = 24 * 40
    ceil = pose_ceiling(states[:cut], lengths[:24], states[cut:], lengths[24:], names)
    assert ceil["inputs"] == ["position[0]", "position[1]"] and ceil["dims"] == ["velocity[0]"] and ceil["frames"] == 3
    assert ceil["kernel"]["r2"] > 0.9 and ceil["kernel"]["r2"] > ceil["r2"] + 0.2, (ceil["r2"], ceil["kernel"]["r2"])
    lo, hi = ceil["kernel"]["r2_ci"]
    assert lo <= ceil["kernel"]["r2"] <= hi
    assert pose_ceiling(states[:cut], lengths[:24], states[cut:], lengths[24:], ["a", "b", "c"]) is None  # no velocity


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_more_episodes():
    rng = np.random.default_rng(4)
    widths = []
    for episodes in (6, 60):
        ep = np.repeat(np.arange(episodes), 30)
        y = rng.normal(size=(len(ep), 2)) + rng.normal(size=(episodes, 1))[ep]  # episodes differ
        y_hat = y + rng.normal(0, 0.7, size=y.shape)
        point = float(np.nanmean(r2_per_dim(y, y_hat)))
        lo, hi = bootstrap_r2(y, y_hat, ep, seed=0)
        assert lo <= point <= hi
        widths.append(hi - lo)
        assert bootstrap_r2(y, y_hat, ep, seed=0) == [lo, hi]  # seeded
    assert widths[1] < 0.5 * widths[0]
    assert bootstrap_r2(y[:30], y_hat[:30], np.zeros(30)) is None  # one episode: nothing to resample


def test_overlapping_intervals_rank_as_ties():
    ranks = tied_ranks([[0.5, 0.6], [0.55, 0.7], None, [0.8, 0.9], [0.1, 0.2], [0.65, 0.75]])
    # [0.5, 0.6] and [0.65, 0.75] do not overlap, but both overlap [0.55, 0.7]: one group, never ordered
    assert ranks == [(2, True), (2, True), None, (1, False), (5, False), (2, True)]
    assert tied_ranks([[0.1, 0.2], [0.3, 0.4]]) == [(2, False), (1, False)]
    assert tied_ranks([[0.1, 0.3], [0.3, 0.4]]) == [(1, True), (1, True)]  # touching counts as overlapping


def test_state_probe_reports_both_probes_with_intervals():
    states, lengths = _pendulum(12, seed=1)
    feats = np.concatenate([states[:, :2], np.random.default_rng(5).normal(size=(len(states), 3))], 1)
    cut = 8 * 40
    res = state_probe(feats[:cut], states[:cut], lengths[:8], feats[cut:], states[cut:], lengths[8:],
                      ["position[0]", "position[1]", "velocity[0]"])
    assert res["bootstrap"] == {"resamples": 1000, "level": 0.95, "episodes": 4}
    for part in ("pose", "velocity"):
        for probe in (res[part], res[part]["kernel"]):
            lo, hi = probe["r2_ci"]
            assert lo <= hi and len(probe["r2_per_dim"]) == len(res[part]["dims"])
    assert res["pose"]["r2"] > 0.99 and res["velocity"]["kernel"]["r2"] > res["velocity"]["r2"]
