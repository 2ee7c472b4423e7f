"""ssl4rl.report: agent runs grouped by encoder over seeds, and the verdict against random init."""

import json

import torch

from ssl4rl.encoders import build_encoder, save_encoder
from ssl4rl.report import summary_table

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)


def _agent(folder, encoder, seed, returns):
    folder.mkdir(parents=True)
    mean = sum(returns) / len(returns)
    std = (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5
    (folder / "results.json").write_text(json.dumps({
        "env": "dmc_cartpole", "encoder": str(encoder), "encoder_path": str(encoder), "seed": seed, "env_steps": 1000,
        "eval_return_mean": mean, "eval_return_std": std, "eval_returns": returns, "eval_episodes": len(returns),
        "rl_seconds": 60.0,
    }))


def _encoders(tmp_path):
    torch.manual_seed(0)
    ssl, rand = tmp_path / "ssl", tmp_path / "rand"
    save_encoder(build_encoder("vit", **VIT), ssl, method="rotation")
    save_encoder(build_encoder("vit", **VIT), rand, method="random")
    return ssl, rand


def test_seeds_are_grouped_and_the_verdict_uses_their_spread(tmp_path):
    ssl, rand = _encoders(tmp_path)
    for seed, (a, b) in enumerate([(190.0, 60.0), (210.0, 40.0)]):
        _agent(tmp_path / f"ssl_s{seed}", ssl, seed, [a, a + 2.0])
        _agent(tmp_path / f"rand_s{seed}", rand, seed, [b, b + 2.0])
    table = summary_table(tmp_path)
    assert "201.0 ± 10.0 (2 seeds: 191, 211)" in table and "51.0 ± 10.0 (2 seeds: 61, 41)" in table
    assert "rotation vs random init: 201.0 - 51.0 = +150.0, stds (over agent seeds) added 20.0" in table
    assert "the rotation encoder helps" in table


def test_a_gap_inside_the_seed_spread_does_not_help(tmp_path):
    ssl, rand = _encoders(tmp_path)
    for seed, (a, b) in enumerate([(100.0, 60.0), (200.0, 100.0)]):
        _agent(tmp_path / f"ssl_s{seed}", ssl, seed, [a, a])
        _agent(tmp_path / f"rand_s{seed}", rand, seed, [b, b])
    table = summary_table(tmp_path)
    assert "150.0 - 80.0 = +70.0, stds (over agent seeds) added 70.0" in table and "does not beat random init" in table


def test_one_seed_uses_the_evaluation_episodes_spread(tmp_path):
    ssl, rand = _encoders(tmp_path)
    _agent(tmp_path / "ssl_s0", ssl, 0, [100.0, 104.0])
    _agent(tmp_path / "rand_s0", rand, 0, [50.0, 50.0])
    table = summary_table(tmp_path)
    assert "102.0 ± 2.0 (2 ep)" in table
    assert "stds (over evaluation episodes of one seed) added 2.0: the rotation encoder helps" in table
