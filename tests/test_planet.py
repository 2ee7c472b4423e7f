"""The planet agent: a tiny end-to-end run (scratch pixels and a frozen encoder), bit-identical resume after an
interruption (in process) and after SIGKILL (through the CLI), and one-line refusals."""

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import assert_one_line
from ssl4rl.agents import planet
from ssl4rl.agents.planet import train_planet
from ssl4rl import config
from ssl4rl.config import PlanetConfig
from ssl4rl.encoders import build_encoder, load_encoder, save_encoder
from ssl4rl.errors import UserError
from ssl4rl.worldmodels import load_world_model

ROOT = Path(__file__).resolve().parent.parent
TINY_AGENT = dict(seed_episodes=1, updates_per_episode=5, batch_size=4, seq_len=8, deter=16, stoch=4, hidden=16, depth=4,
                  horizon=4, candidates=16, iterations=2, top_k=4, decoder_size=16)
# cartpole: 1000 env steps = 125 agent steps per episode; 3 episodes (1 random, 2 planned), checkpoints at 0, 1000, 2000
TINY_RUN = dict(env="dmc_cartpole", encoder="scratch", objective=None, steps=3000, seed=0, device="cpu", progress=False,
                ckpt_every=1000, eval_every=1000, eval_episodes=1, video=False, image_size=16, frame_stack=3, runs_root="runs")


def _cfg(agent=None, **over):
    return SimpleNamespace(**{**TINY_RUN, **over}, agent=PlanetConfig(**{**TINY_AGENT, **(agent or {})}))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_planet_run_on_pixels_writes_every_output(tmp_path):
    res = train_planet(_cfg(video=True), tmp_path / "run")
    out = tmp_path / "run"
    for name in ("results.json", "curve.png", "eval.gif", "prediction.gif", "worldmodel/model.json"):
        assert (out / name).exists(), name
    assert any((out / "tb").iterdir()) and not (out / "checkpoint").exists()
    assert res["objective"] == "recon" and res["env_steps"] == 3000 and res["agent_steps"] == 375
    assert res["episodes"] == 3 and res["updates"] == 10 and [e[0] for e in res["evals"]] == [1000, 2000, 3000]
    assert res["world_model"]["ks"] == [1, 5, 10] and len(res["world_model"]["psnr"]) == 3
    assert res["prediction_video"]["prediction"] == "decoded" and res["seconds_per_decision"] > 0
    assert json.loads((out / "results.json").read_text())["eval_returns"] == res["eval_returns"]
    model = load_world_model(out / "worldmodel", kind="rssm")
    assert model.objective == "recon" and model.image_size == 16 and not model.frozen


def test_planet_on_a_frozen_encoder_caches_features_and_keeps_the_encoder(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("vit", image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")
    save_encoder(enc, tmp_path / "enc", method="test")
    res = train_planet(_cfg(encoder=str(tmp_path / "enc"), image_size=None, steps=2000, video=True,
                            agent={"planner": "mppi", "top_k": 0}), tmp_path / "run")
    assert res["objective"] == "contrastive" and res["image_size"] == 32  # the encoder's own size
    assert res["prediction_video"]["prediction"].startswith("nearest of 126 real frames")
    model = load_world_model(tmp_path / "run" / "worldmodel")
    assert model.frozen and model.encoder.feature_dim == 16
    saved = load_encoder(tmp_path / "enc").state_dict()
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in saved.items())  # frozen: unchanged


def test_planet_interrupted_after_a_checkpoint_resumes_bit_identical(tmp_path, monkeypatch):
    whole = train_planet(_cfg(steps=2000), tmp_path / "whole")
    saves, real_save = [], planet._save_checkpoint

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:  # the checkpoint at 1000 env steps (the first is at 0)
            raise KeyboardInterrupt

    monkeypatch.setattr(planet, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_planet(_cfg(steps=2000), tmp_path / "cut")
    assert (tmp_path / "cut" / "checkpoint" / "replay.npz").exists()
    monkeypatch.setattr(planet, "_save_checkpoint", real_save)
    resumed = train_planet(_cfg(steps=2000), tmp_path / "cut")
    model = "worldmodel/model.safetensors"
    assert _sha(tmp_path / "cut" / model) == _sha(tmp_path / "whole" / model)
    assert resumed["evals"] == whole["evals"] and resumed["train_returns"] == whole["train_returns"]
    assert resumed["resumed_at_env_steps"] == [1000] and whole["resumed_at_env_steps"] == []
    assert not (tmp_path / "cut" / "checkpoint").exists()


def _cli(out: Path, **over) -> list[str]:
    agent = [f"agent.{k}={v}" for k, v in TINY_AGENT.items()]
    run = [f"{k}={v}" for k, v in {**TINY_RUN, **over}.items() if k not in ("objective", "runs_root")]
    return [sys.executable, str(ROOT / "agents" / "train.py"), "agent=planet", *run, *agent, f"out={out}"]


def test_planet_cli_killed_mid_run_resumes_bit_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = train_planet(_cfg(steps=2000), tmp_path / "whole")  # in process, also one thread (conftest)
    out = tmp_path / "cli"
    proc = subprocess.Popen(_cli(out, steps=2000), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill in the second episode (checkpoint at 0 or 1000)
        log = (out / "log.txt").read_text() if (out / "log.txt").exists() else ""
        if "eval at 1000" in log and (out / "checkpoint").exists():
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoint").exists() and not (out / "results.json").exists()
    rerun = subprocess.run(_cli(out, steps=2000), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["resumed_at_env_steps"] and resumed["evals"] == whole["evals"]
    assert _sha(out / "worldmodel/model.safetensors") == _sha(tmp_path / "whole/worldmodel/model.safetensors")


@pytest.mark.parametrize("over, needles", [
    ({"env": "shapes2d"}, ("env=shapes2d", "no rewards")),
    ({"objective": "pixels"}, ("'pixels'", "recon", "contrastive", "barlow")),
    ({"encoder": "state"}, ("encoder=state", "scratch")),
    ({"encoder": "no/such/folder"}, ("no/such/folder",)),
    ({"agent": {"planner": "random"}}, ("agent.planner", "cem, mppi")),
    ({"agent": {"candidates": 0}}, ("agent.candidates=0",)),
    ({"agent": {"top_k": 20}}, ("agent.top_k=20",)),
])
def test_bad_settings_are_refused_in_one_line_before_anything_runs(over, needles, tmp_path):
    with pytest.raises(UserError) as e:
        train_planet(_cfg(**over), tmp_path / "run")
    assert_one_line(e, *needles)
    assert not (tmp_path / "run").exists()


def test_planet_config_fields_are_documented():
    source = Path(config.__file__).read_text().split("class PlanetConfig")[1].split("\n\n\n")[0]
    for f in dataclasses.fields(PlanetConfig):
        line = next(ln for ln in source.splitlines() if ln.strip().startswith(f"{f.name}: "))
        assert "#" in line or f.name == "name", f.name
