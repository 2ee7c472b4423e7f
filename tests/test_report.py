"""ssl4rl.report: agent runs grouped by arm and task over seeds (sample std), learning-curve marks, rliable's IQM and
performance profile, and the verdict against random init."""

import json

import pytest
import torch
from scipy.stats import trim_mean

from ssl4rl import report
from ssl4rl.encoders import build_encoder, save_encoder
from ssl4rl.report import summary_table, write_report

VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
REPS = 200  # bootstrap resamples in tests (the command's default is 2000)


def _agent(folder, encoder, seed, returns, env="dmc_cartpole", env_steps=1000, evals=None, **keys):
    folder.mkdir(parents=True)
    mean = sum(returns) / len(returns)
    std = (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5
    (folder / "results.json").write_text(json.dumps({
        "env": env, "encoder": str(encoder), "encoder_path": None if encoder == "state" else str(encoder),
        "seed": seed, "env_steps": env_steps, "eval_return_mean": mean, "eval_return_std": std,
        "eval_returns": returns, "eval_episodes": len(returns), "rl_seconds": 60.0,
        "evals": evals if evals is not None else [[env_steps, mean, std]], **keys,
    }))


def _encoders(tmp_path):
    torch.manual_seed(0)
    ssl, rand = tmp_path / "ssl", tmp_path / "rand"
    save_encoder(build_encoder("vit", **VIT), ssl, method="rotation")
    save_encoder(build_encoder("vit", **VIT), rand, method="random")
    return ssl, rand


def _row(table, start):
    return next(line for line in table.splitlines() if line.startswith(start))


def test_seeds_are_grouped_and_the_verdict_uses_their_spread(tmp_path):
    ssl, rand = _encoders(tmp_path)
    for seed, (a, b) in enumerate([(190.0, 60.0), (210.0, 40.0)]):
        _agent(tmp_path / f"ssl_s{seed}", ssl, seed, [a, a + 2.0])
        _agent(tmp_path / f"rand_s{seed}", rand, seed, [b, b + 2.0])
    table = summary_table(tmp_path, reps=REPS)
    # sample stds (ddof=1) over the seeds' means 191, 211 and 61, 41: 14.1 each
    assert "201.0 ± 14.1 (n=2: 191, 211)" in table and "51.0 ± 14.1 (n=2: 61, 41)" in table
    assert "rotation vs random init: 201.0 - 51.0 = +150.0, seed stds added 14.1 + 14.1 = 28.3" in table
    assert "the rotation encoder helps" in table


def test_a_gap_inside_the_seed_spread_is_within_noise(tmp_path):
    ssl, rand = _encoders(tmp_path)
    for seed, (a, b) in enumerate([(100.0, 60.0), (200.0, 100.0)]):
        _agent(tmp_path / f"ssl_s{seed}", ssl, seed, [a, a])
        _agent(tmp_path / f"rand_s{seed}", rand, seed, [b, b])
    table = summary_table(tmp_path, reps=REPS)
    assert "150.0 - 80.0 = +70.0, seed stds added 70.7 + 28.3 = 99.0" in table
    assert "within noise" in table and "does not beat random init" in table


def test_one_seed_shows_no_spread_and_the_verdict_cannot_tell(tmp_path):
    ssl, rand = _encoders(tmp_path)
    _agent(tmp_path / "ssl_s0", ssl, 0, [100.0, 104.0])
    _agent(tmp_path / "rand_s0", rand, 0, [50.0, 50.0])
    table = summary_table(tmp_path, reps=REPS)
    assert "102.0 (n=1, no spread)" in table and "± 2.0" not in table  # never the episodes' std as the error bar
    line = next(line for line in table.splitlines() if line.startswith("rotation vs random init:"))
    assert "102.0 - 50.0 = +52.0" in line and "cannot tell with fewer than 2 seeds per arm" in line
    assert "helps" not in line


def test_sample_std_n_marks_and_steps_to_500(tmp_path):
    curves = {  # seed -> evals [env_steps, mean, std]; the run lasts 100k env steps
        0: [[20_000, 100.0, 1.0], [25_000, 300.0, 1.0], [50_000, 520.0, 1.0], [100_000, 700.0, 1.0]],
        1: [[20_000, 200.0, 1.0], [40_000, 400.0, 1.0], [80_000, 600.0, 1.0], [100_000, 800.0, 1.0]],
        2: [[20_000, 150.0, 1.0], [50_000, 450.0, 1.0], [100_000, 490.0, 1.0]],
    }
    for seed, evals in curves.items():
        _agent(tmp_path / f"s{seed}", "state", seed, [evals[-1][1]], env_steps=100_000, evals=evals)
    row = _row(summary_table(tmp_path, reps=REPS), "| true state (oracle) |")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "663.3 ± 158.2 (n=3: 700, 800, 490)"  # finals 700, 800, 490: sample std 158.2
    # @25k: the eval at 25k (300), else the last before it (20k: 200, 150); @50k: 520, 400 (the 40k eval), 450
    assert cells[6] == "216.7 ± 76.4" and cells[7] == "456.7 ± 60.3" and cells[8] == "663.3 ± 158.2"
    assert cells[9] == "median 65000 (2/3 reached)"  # 50k and 80k; seed 2 never reaches 500
    assert cells[10] == "100000"


def test_marks_after_the_end_of_a_run_are_empty_and_one_run_has_no_spread(tmp_path):
    _agent(tmp_path / "s0", "state", 0, [510.0], env_steps=30_000,
           evals=[[10_000, 200.0, 0.0], [20_000, 505.0, 0.0], [30_000, 510.0, 0.0]])
    row = _row(summary_table(tmp_path, reps=REPS), "| true state (oracle) |")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "510.0 (n=1, no spread)"
    assert cells[6:10] == ["505.0", "—", "—", "20000"]
    assert report.steps_to({"evals": [[10, 1.0, 0.0]]}) is None


def test_arms_group_by_agent_mode_and_aux_and_missing_keys_are_sac(tmp_path):
    _agent(tmp_path / "a0", "state", 0, [100.0])  # no agent key: sac
    _agent(tmp_path / "a1", "state", 1, [120.0], agent="sac")
    _agent(tmp_path / "b0", "state", 0, [300.0], agent="drq", encoder_mode="finetune", aux="curl", aux_positive="augment")
    table = summary_table(tmp_path, reps=REPS)
    assert "| true state (oracle) | sac | dmc_cartpole |" in table and "110.0 ± 14.1 (n=2: 100, 120)" in table
    assert "| true state (oracle) | drq finetune + curl (augment) | dmc_cartpole |" in table
    assert "300.0 (n=1, no spread)" in table


def test_iqm_across_tasks_with_interval_and_profile_png(tmp_path):
    for seed in range(3):
        _agent(tmp_path / f"c{seed}", "state", seed, [400.0 + 100 * seed], env="dmc_cartpole")
        _agent(tmp_path / f"w{seed}", "state", seed, [200.0 + 50 * seed], env="dmc_walker")
    _agent(tmp_path / "w3", "state", 3, [900.0], env="dmc_walker")  # a 4th walker seed: cut to 3 runs per task
    (tmp_path / "notes.png").write_bytes(b"not the report's")
    text, written = write_report(tmp_path, reps=REPS, seed=0)
    row = _row(text, "| true state (oracle), sac, 1000 env steps |")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "dmc_cartpole, dmc_walker" and cells[2] == "3 (cut from up to 4)"
    iqm, interval = cells[3].split(" [")
    low, high = (float(x) for x in interval.rstrip("]").split(", "))
    # scores / 1000: 0.4 0.5 0.6 (cartpole) and 0.2 0.25 0.3 (walker, seeds 0-2); the IQM is their 25% trimmed mean
    expected = trim_mean([0.4, 0.5, 0.6, 0.2, 0.25, 0.3], 0.25)
    assert float(iqm) == pytest.approx(expected, abs=1e-3) and low <= float(iqm) <= high and low < high
    assert "rliable, 200 resamples, seed 0" in text
    assert written == [tmp_path / "summary.md", tmp_path / "performance_profile.png"]
    png = (tmp_path / "performance_profile.png").read_bytes()
    assert png.startswith(b"\x89PNG") and (tmp_path / "summary.md").read_text() == text
    assert (tmp_path / "notes.png").read_bytes() == b"not the report's"
    assert not list(tmp_path.glob(".*.tmp"))
    assert write_report(tmp_path, reps=REPS, seed=0)[0] == text  # seeded: the same intervals again


def test_main_prints_and_writes(tmp_path, capsys):
    for seed in range(2):
        _agent(tmp_path / f"s{seed}", "state", seed, [300.0 + seed])
    assert report.main([str(tmp_path), "--reps", "50"]) == 0
    out = capsys.readouterr().out
    assert "300.5 ± 0.7 (n=2: 300, 301)" in out and "IQM" in out and "performance_profile.png" in out
    assert (tmp_path / "summary.md").exists() and (tmp_path / "performance_profile.png").exists()


def test_a_malformed_evals_row_is_one_line(tmp_path, capsys):
    _agent(tmp_path / "s0", "state", 0, [1.0], evals=[["x", 1.0, 0.0]])
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evals row" in err and "results.json" in err
