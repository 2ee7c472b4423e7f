"""-m sweeps: jobs side by side on the joblib launcher, each in its own out=, one line per failed job, and the
report over the sweep's seeds."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

from ssl4rl.cli import Sweep, _job_folder, prevalidate

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
# SAC on the true state for 20 agent steps (160 env steps of cartpole), one evaluation episode: seconds per job
TINY_SAC = ["env=dmc_cartpole", "agent=sac", "encoder=state", "steps=160", "eval_every=0", "eval_episodes=1",
            "video=false", "agent.learning_starts=10", "agent.batch_size=16", "agent.net_arch=[32,32]", "progress=false"]


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "agents/train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_a_sweep_names_each_job_by_what_varies_and_uses_one_thread_per_core():
    sweep = prevalidate(CONFIGS, "train", ["-m", *TINY_SAC, "seed=0,1"])
    assert isinstance(sweep, Sweep) and [job[-1] for job in sweep.jobs] == ["seed=0", "seed=1"]
    extra = sweep.argv[-1]
    assert extra.startswith("hydra.job.config.override_dirname.exclude_keys=[") and "'steps'" in extra
    assert "'seed'" not in extra and sweep.threads == 1  # joblib, n_jobs -1: as many jobs as cores
    assert prevalidate(CONFIGS, "train", TINY_SAC) is None  # a single run: no sweep
    assert _job_folder("runs/multirun/t", 3, "encoder=/a/../b,seed=1") == "runs/multirun/t/3_encoder=_a_.._b,seed=1"
    assert _job_folder("runs/multirun/t", 0, "") == "runs/multirun/t/0"


def test_joblib_sweep_of_two_seeds_then_the_report_aggregates_them(tmp_path):
    sweep = tmp_path / "sweep"
    p = _train("-m", *TINY_SAC, "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert p.returncode == 0, p.stderr[-3000:]
    runs = sorted(sweep.glob("*/results.json"))
    assert [r.parent.name for r in runs] == ["0_seed=0", "1_seed=1"]  # distinct out= per job, named by the seed
    results = [json.loads(r.read_text()) for r in runs]
    assert [r["seed"] for r in results] == [0, 1]
    assert (sweep / "multirun.yaml").exists() and not (sweep / "0").exists()  # no empty Hydra job folders
    p = subprocess.run([sys.executable, "-m", "ssl4rl.report", str(sweep), "--reps", "100"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| true state (oracle) |")]
    assert len(rows) == 1  # both seeds in one row
    finals = [r["eval_return_mean"] for r in results]
    mean, std = statistics.mean(finals), statistics.stdev(finals)  # sample std over the seeds
    assert f"{mean:.1f} ± {std:.1f} (n=2: {finals[0]:.0f}, {finals[1]:.0f})" in rows[0]
    assert (sweep / "summary.md").exists() and (sweep / "performance_profile.png").exists()


def test_one_out_for_every_job_is_refused_in_one_line(tmp_path):
    p = _train("-m", *TINY_SAC, "seed=0,1", f"out={tmp_path / 'same'}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "out= must differ per job" in lines[0], p.stderr
    assert "seed\\${seed}" in lines[0] and "no job was run" in lines[0]
    assert not (tmp_path / "same").exists() and not (tmp_path / "sweep").exists()


def test_failed_jobs_print_one_line_each_and_the_sweep_fails(tmp_path):
    for seed in (0, 1):  # both out= folders hold an earlier run: each job is refused as it claims its folder
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "results.json").write_text("{}")
    p = _train("-m", *TINY_SAC, "seed=0,1", f"out={tmp_path}/s${{seed}}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert "Traceback" not in p.stderr and len(lines) == 3, p.stderr
    for seed in (0, 1):
        line = next(line for line in lines if line.startswith(f"error: sweep job #{seed} (seed={seed}):"))
        assert "already holds an earlier run" in line
    assert lines[-1].startswith("error: one or more sweep jobs failed")
