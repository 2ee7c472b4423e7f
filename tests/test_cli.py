"""The entry points as a user runs them: a tiny end-to-end pipeline and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssl4rl.encoders import encoder_meta

ROOT = Path(__file__).resolve().parent.parent
TINY_VIT = ["backbone.image_size=32", "backbone.embed_dim=32", "backbone.depth=1", "backbone.num_heads=2"]


def run(script: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, script, *args, "progress=false"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_tiny_end_to_end(tmp_path):
    data, pre, probe, sac = (tmp_path / n for n in ("data", "pre", "probe", "sac"))
    p = run("envs/collect.py", "env=dmc_cartpole", "episodes=3", "image_size=32", f"out={data}")
    assert "Warning" not in p.stderr and "DISPLAY" not in p.stderr and "Traceback" not in p.stderr
    assert len(list(data.glob("episode_*.npz"))) == 3
    run("pretrain/run.py", "method=mae", f"data.path={data}", "steps=4", "method.batch_size=8", "ckpt_every=2",
        f"out={pre}", *TINY_VIT)
    assert (pre / "encoder" / "encoder.safetensors").exists() and list(pre.glob("recon_step*.png"))
    p = run("pretrain/eval.py", f"encoder={pre}/encoder", f"data.path={data}", f"out={probe}")
    report = json.loads((probe / "probe.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["mae (vit)", "random init (vit)", "raw pixels 16x16"]
    assert "held-out R²" in (probe / "probe.md").read_text() and "raw pixels" in p.stdout
    run("pretrain/random_init.py", f"like={pre}/encoder", f"out={tmp_path / 'rand'}")
    assert encoder_meta(tmp_path / "rand" / "encoder")["method"] == "random"
    run("agents/train.py", "env=dmc_cartpole", f"encoder={pre}/encoder", "steps=320", "eval_every=0",
        "eval_episodes=1", "agent.learning_starts=10", "agent.batch_size=16", f"out={sac}")
    res = json.loads((sac / "results.json").read_text())
    assert res["env_steps"] == 320 and res["agent_steps"] == 40
    assert (sac / "curve.png").exists() and (sac / "eval.gif").exists()
    run("agents/train.py", "env=dmc_cartpole", f"encoder={tmp_path / 'rand'}/encoder", "steps=320", "eval_every=0",
        "eval_episodes=1", "agent.learning_starts=10", "agent.batch_size=16", "video=false", f"out={tmp_path / 'sac_rand'}")
    p = subprocess.run([sys.executable, "-m", "ssl4rl.report", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0
    mae_row = next(line for line in p.stdout.splitlines() if line.startswith("| mae (vit)"))
    cells = [c.strip() for c in mae_row.split("|")]
    assert cells[4] != "—" and "(n=1, no spread)" in mae_row  # the probe R² and the eval return stand in one row
    assert "±" not in mae_row  # one seed: no spread over seeds is shown
    assert any(line.startswith("| random (") and "(n=1, no spread)" in line for line in p.stdout.splitlines())
    verdict = next(line for line in p.stdout.splitlines() if line.startswith("mae vs random init:"))
    assert "cannot tell with fewer than 2 seeds per arm" in verdict and "n=1 and 1" in verdict


def test_pretrain_rerun_of_a_finished_run_is_refused(tmp_path, tiny_dataset):
    args = ["method=mae", f"data.path={tiny_dataset}", "method.batch_size=8", "ckpt_every=2", f"out={tmp_path / 'p'}", *TINY_VIT]
    run("pretrain/run.py", "steps=2", *args)
    before = (tmp_path / "p" / "results.json").read_bytes()
    p = run("pretrain/run.py", "steps=2", *args, ok=False)  # finished: refuse, keep results
    assert p.returncode == 2 and "finished run" in p.stderr
    p = run("pretrain/run.py", "steps=4", *args, ok=False)  # steps sets the LR schedule: not safe to change
    assert p.returncode == 2 and "steps (2 -> 4)" in p.stderr and p.stderr.count("\n") == 1
    assert (tmp_path / "p" / "results.json").read_bytes() == before


@pytest.mark.parametrize(
    "script,args,expect",
    [
        ("envs/collect.py", ["env=dmc_nope"], "dmc_cartpole, dmc_walker"),
        ("pretrain/run.py", ["method=mea", "data.path=x"], "valid names: barlow, byol"),
        ("agents/train.py", ["encoder=mvpp"], "mvp = the most recent MAE encoder"),
        ("agents/train.py", ["encoder=mvp", "runs_root=/nonexistent"], "python pretrain/run.py method=mae"),
        ("agents/train.py", ["env=cartpole"], "dmc_cartpole"),
        ("pretrain/run.py", ["data.path=/nonexistent/folder"], "/nonexistent/folder"),
        ("pretrain/run.py", [], "data.path"),
        ("envs/collect.py", ["episodez=3"], "episodes"),
    ],
)
def test_bad_input_gives_one_line(script, args, expect):
    p = run(script, *args, ok=False)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error:") and expect in lines[0]


def test_empty_dataset_and_wrong_encoder_file(tmp_path, tiny_dataset):
    (tmp_path / "empty").mkdir()
    p = run("pretrain/run.py", f"data.path={tmp_path / 'empty'}", ok=False)
    assert p.returncode == 2 and "no episode_" in p.stderr and str(tmp_path / "empty") in p.stderr
    p = run("pretrain/eval.py", f"encoder={tiny_dataset}", f"data.path={tiny_dataset}", ok=False)
    assert p.returncode == 2 and "encoder.json" in p.stderr and p.stderr.count("\n") == 1


def test_failed_run_never_overwrites(tmp_path):
    out = tmp_path / "d"
    run("envs/collect.py", "episodes=1", "image_size=32", f"out={out}")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    p = run("envs/collect.py", "episodes=2", "image_size=32", f"out={out}", ok=False)
    assert p.returncode == 2 and "already holds" in p.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_demo_pipeline_at_a_tiny_budget(tmp_path):
    """The demo driver end to end (its stages side by side), at a budget that only checks the plumbing."""
    out = tmp_path / "demo"
    args = ["--out", str(out), "--episodes", "2", "--pretrain-steps", "2", "--env-steps", "160"]
    p = subprocess.run([sys.executable, "-m", "ssl4rl.demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    assert "| rotation (vit) |" in summary and "| random (vit) |" in summary and "true state (oracle)" in summary
    assert "rotation vs random init:" in summary
    again = subprocess.run([sys.executable, "-m", "ssl4rl.demo", *args], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr
