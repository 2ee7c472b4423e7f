"""Hostile input: every entry point and the public API refuse bad values with one line, never change
what was already saved, and never unpickle.

CLI cases assert exit status 2, at most 3 lines on stderr, a message naming the bad value, and
unchanged checksums of a folder of earlier results. Config cases run in-process (Hydra compose, as
the entry points do before anything runs); cases that need files or a running task use a subprocess.
API cases assert one ``UserError`` (a ``ValueError``) with a one-line message naming the value.
"""

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import ssl4rl.utils
from ssl4rl import _gl
from ssl4rl.augment import ViewAug
from ssl4rl.cli import _guard, _prevalidate, prevalidate
from ssl4rl.data import FrameDataset, PairDataset, SequenceDataset, collect, load_episode
from ssl4rl.data.episodes import KEYS, Episode
from ssl4rl.data.images import load_cifar10, open_images
from ssl4rl.data.sources import MemorySource
from ssl4rl.encoders import ARCHS, ViTEncoder, build_encoder, check_backbone, load_encoder, random_like, save_encoder
from ssl4rl.encoders.base import EncoderConfig
from ssl4rl.encoders.timm_any import create_timm_model
from ssl4rl.envs import make_env
from ssl4rl.errors import UserError
from ssl4rl.fields import field_names, validate
from ssl4rl.methods import METHODS, MethodConfig, default_config
from ssl4rl.parts.multicrop import MultiCrop

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
TINY_VIT = dict(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")


class Payload:
    """Unpickling this writes a marker file: proof that something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


def _checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` but run-folder locks (``.lock`` names the pid that last held it)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Earlier results that no refused run may touch: a dataset, an encoder, a finished run folder."""
    root = tmp_path_factory.mktemp("saved")
    collect("dmc_cartpole", episodes=2, out=root / "data", seed=0, image_size=32, progress=False)
    torch.manual_seed(0)
    save_encoder(build_encoder("vit", **TINY_VIT), root / "encoder", method="test")
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text(json.dumps({"done": True}))
    return root


@pytest.fixture
def unchanged(saved):
    before = _checksums(saved)
    yield saved
    assert _checksums(saved) == before, "a refused run changed earlier results"


def _one_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3, err
    for n in needles:
        assert n in err, err
    return err


# --- configuration values, in-process (what each entry point does before anything runs) ------------

CONFIG_CASES = [
    ("collect", ["env=dmc_nope"], "dmc_nope"),
    ("collect", ["episodes=0"], "episodes=0"),
    ("collect", ["episodes=-3"], "episodes=-3"),
    ("collect", ["episodes=abc"], "abc"),
    ("collect", ["steps=0"], "steps=0"),
    ("collect", ["image_size=8"], "image_size=8"),
    ("collect", ["image_size=big"], "big"),
    ("collect", ["camera=-2"], "camera=-2"),
    ("collect", ["seed=-1"], "seed=-1"),
    ("collect", ["fast_render=maybe"], "maybe"),
    ("collect", ["episodez=3"], "episodez"),
    ("collect", ["episodes"], "episodes"),
    ("train", ["steps=abc"], "abc"),
    ("train", ["steps=0"], "steps=0"),
    ("train", ["n_envs=0"], "n_envs=0"),
    ("train", ["frame_stack=0"], "frame_stack=0"),
    ("train", ["eval_every=-5"], "eval_every=-5"),
    ("train", ["ckpt_every=0"], "ckpt_every=0"),
    ("train", ["eval_episodes=0"], "eval_episodes=0"),
    ("train", ["image_size=8"], "image_size=8"),
    ("train", ["agent.batch_size=0"], "agent.batch_size=0"),
    ("train", ["agent.gamma=1.5"], "agent.gamma=1.5"),
    ("train", ["agent.tau=-0.1"], "agent.tau=-0.1"),
    ("train", ["agent.learning_rate=0"], "agent.learning_rate=0"),
    ("train", ["agent.learning_rate=nan"], "nan"),
    ("train", ["agent.buffer_size=0"], "agent.buffer_size=0"),
    ("train", ["agent.net_arch=abc"], "abc"),
    ("train", ["agent.lr=0.1"], "agent.lr"),
    ("train", ["agent=td3"], "td3"),
    ("train", ["seed=abc"], "abc"),
    ("train", ["video=sometimes"], "sometimes"),
    ("train", ["device=tpu"], "tpu"),
    ("train", ["vec_env=threads"], "threads"),
    ("pretrain", ["data.path=x", "steps=abc"], "abc"),
    ("pretrain", ["data.path=x", "steps=0"], "steps=0"),
    ("pretrain", ["data.path=x", "method.batch_size=0"], "method.batch_size=0"),
    ("pretrain", ["data.path=x", "method.lr=-1"], "method.lr=-1"),
    ("pretrain", ["data.path=x", "ckpt_every=0"], "ckpt_every=0"),
    ("pretrain", ["data.path=x", "log_every=-1"], "log_every=-1"),
    ("pretrain", ["data.path=x", "data.holdout=1.5"], "data.holdout=1.5"),
    ("pretrain", ["data.path=x", "data.k=0"], "data.k=0"),
    ("pretrain", ["data.path=x", "method=mea"], "mea"),
    ("pretrain", ["data.path=x", "backbone=nope"], "nope"),
    ("pretrain", ["data.path=x", "method.momentum=fast"], "fast"),
    ("pretrain", [], "data.path"),
    ("eval", ["data.path=x", "n_bins=1"], "n_bins=1"),
    ("eval", ["data.path=x", "batch_size=0"], "batch_size=0"),
    ("eval", ["data.path=x", "knn_k=[0]"], "knn_k=[0]"),
    ("eval", ["data.path=x", "knn_k=[abc]"], "abc"),
    ("eval", ["data.path=x", "label_fractions=[2.0]"], "label_fractions=[2.0]"),
    ("eval", ["data.path=x", "knn_temperature=0"], "knn_temperature=0"),
    ("eval", ["data.path=x", "finetune_epochs=0"], "finetune_epochs=0"),
    ("eval", [], "data.path"),
    ("random_init", [], "like"),
    ("random_init", ["like=x", "seed=-1"], "seed=-1"),
    ("train", ["agent=planet", "objective=pixels"], "pixels"),
    ("train", ["agent=planet", "agent.planner=random"], "random"),
    ("train", ["agent=worldmodels", "agent.train_in=gym"], "gym"),
    ("train", ["agent=dreamer"], "dreamer"),
    ("pretrain", ["data.path=x", "method=cswm", "method.objective=pixels"], "pixels"),
    ("plan_goal", [], "worldmodel"),
    ("plan_goal", ["worldmodel=x", "goals=0"], "goals=0"),
    ("plan_goal", ["worldmodel=x", "planner=greedy"], "greedy"),
    ("plan_goal", ["worldmodel=x", "env=dmc_nope"], "dmc_nope"),
    ("plan_goal", ["worldmodel=x", "horizon=0"], "horizon=0"),
    # validation never switches off: -m sweeps (every job checked before any runs) and hydra.* overrides
    ("train", ["-m", "agent.learning_rate=nan"], "agent.learning_rate=nan"),
    ("train", ["--multirun", "seed=0,1,-1"], "seed=-1"),
    ("train", ["-m", "agent=sac,planet", "agent.top_k=5000"], "agent.top_k"),
    ("train", ["hydra.run.dir=.", "agent.learning_rate=nan"], "nan"),
    ("train", ["hydra.job.chdir=false", "-m", "seed=0,1", "eval_episodes=0"], "eval_episodes=0"),
    ("eval", ["data.path=x", "hydra.verbose=false", "knn_temperature=0"], "knn_temperature=0"),
    ("plan_goal", ["worldmodel=x", "-m", "goals=1,0"], "goals=0"),
    ("train", ["hydra.nope=1"], "hydra.nope"),
    # seeds: 0 .. 2**31 - 1 everywhere
    ("train", ["seed=-1"], "seed=-1"),
    ("train", ["seed=4294967296"], "seed=4294967296"),
    ("pretrain", ["data.path=x", "seed=-1"], "seed=-1"),
    ("eval", ["data.path=x", "seed=2147483648"], "seed=2147483648"),
    ("plan_goal", ["worldmodel=x", "seed=-5"], "seed=-5"),
    # fields beyond the common ones, each with its declared range
    ("train", ["agent.ent_coef=-1"], "agent.ent_coef=-1"),
    ("train", ["agent.ent_coef=banana"], "banana"),
    ("train", ["agent.ent_coef=auto_0"], "auto_0"),
    ("train", ["agent.net_arch=[0]"], "agent.net_arch=[0]"),
    ("train", ["agent.net_arch=[-5]"], "agent.net_arch=[-5]"),
    ("train", ["frame_stack=1000"], "frame_stack=1000"),
    ("train", ["agent=planet", "agent.free_nats=inf"], "agent.free_nats=inf"),
    ("train", ["agent=planet", "agent.top_k=500"], "agent.top_k=500"),
    ("train", ["agent=planet", "agent.decoder_size=8"], "agent.decoder_size=8"),
    ("train", ["agent=worldmodels", "agent.popsize=2"], "agent.popsize=2"),
    ("train", ["agent=worldmodels", "agent.holdout=0.9"], "agent.holdout=0.9"),
    ("collect", ["steps=-1"], "steps=-1"),
    ("eval", ["data.path=x", "pixels_size=100000"], "pixels_size=100000"),
    ("plan_goal", ["worldmodel=x", "goal_steps_min=9", "goal_steps_max=3"], "goal_steps_min=9"),
    ("pretrain", ["data.path=x", "data.workers=-1"], "data.workers=-1"),
    ("pretrain", ["data.path=x", "method=mae", "method.mask_ratio=1.0"], "method.mask_ratio=1.0"),
    ("pretrain", ["data.path=x", "method=simclr", "method.aug.jitter=-1"], "method.aug.jitter=-1"),
    ("pretrain", ["data.path=x", "method=moco", "method.queue_size=-1"], "method.queue_size=-1"),
    ("pretrain", ["data.path=x", "method=swav", "method.n_prototypes=0"], "method.n_prototypes=0"),
    ("pretrain", ["data.path=x", "backbone.embed_dim=-4"], "backbone.embed_dim=-4"),
    ("pretrain", ["data.path=x", "backbone.patch_size=0"], "backbone.patch_size=0"),
    ("pretrain", ["data.path=x", "method.optimizer=adam"], "adam"),
    # an unquoted non-ASCII value: Hydra's lexer refuses it; the line says to quote it
    ("train", ["out=/tmp/dé"], "quote"),
]


@pytest.mark.parametrize("entry,argv,needle", CONFIG_CASES, ids=[f"{e}:{' '.join(a)}" for e, a, _ in CONFIG_CASES])
def test_bad_setting_is_refused_in_one_line(entry, argv, needle, unchanged, capsys):
    with pytest.raises(SystemExit) as e:
        _guard(lambda: prevalidate(CONFIGS, entry, argv))
    assert e.value.code == 2
    _one_line(capsys.readouterr().err, "error:", needle)


# --- entry points on bad files and bad runtime values (subprocess: exit status and stderr) ----------


def _bad_episode(folder: Path, saved: Path, **change) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    src = sorted((saved / "data").glob("episode_*.npz"))[0]
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in KEYS}
    for k, fn in change.items():
        arrays[k] = fn(arrays[k])
    with open(folder / "episode_000000.npz", "wb") as f:
        np.savez(f, **arrays)
    return folder


def _huge_header_npz(path: Path, name: str = "frames") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z, z.open(f"{name}.npy", "w") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 3, 64, 64)})
    return path


def _object_npz(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, frames=np.array([Payload(marker)], dtype=object))
    return path


def _encoder_with(folder: Path, saved: Path, **meta_change) -> Path:
    folder.mkdir(parents=True)
    meta = json.loads((saved / "encoder" / "encoder.json").read_text())
    for k, v in meta_change.items():
        if k.startswith("kwargs."):
            meta["kwargs"][k[7:]] = v
        else:
            meta[k] = v
    (folder / "encoder.json").write_text(json.dumps(meta))
    (folder / "encoder.safetensors").write_bytes((saved / "encoder" / "encoder.safetensors").read_bytes())
    return folder


def _pickle_file(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"step": 1, "payload": Payload(marker)}, f)
    return path


AGENT_ARGS = ["steps=160", "eval_every=0", "ckpt_every=80", "eval_episodes=1", "video=false",
              "agent.learning_starts=5", "agent.batch_size=8", "agent.net_arch=[8]", "agent.proj_dim=4", "device=cpu"]


@pytest.fixture(scope="module")
def killed_agent(saved, tmp_path_factory):
    """A run folder as an agent run killed after its first checkpoint leaves it (config.yaml, log, checkpoint/)."""
    from hydra import compose, initialize_config_dir

    from ssl4rl.agents import checkpoint, train_agent
    from ssl4rl.cli import to_yaml
    from ssl4rl.config import AgentConfig, TrainConfig, register_configs

    out = tmp_path_factory.mktemp("killed") / "run"
    args = [f"encoder={saved / 'encoder'}", *AGENT_ARGS, f"out={out}", "progress=false"]
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose("train", overrides=args)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(to_yaml(cfg))
    real = checkpoint.save

    def save_then_die(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    checkpoint.save = save_then_die
    try:
        train_agent(TrainConfig(env="dmc_cartpole", encoder=str(saved / "encoder"), out=str(out), steps=160, eval_every=0,
                                ckpt_every=80, eval_episodes=1, video=False, device="cpu", progress=False,
                                agent=AgentConfig(learning_starts=5, batch_size=8, net_arch=[8], proj_dim=4)))
    except KeyboardInterrupt:
        pass
    finally:
        checkpoint.save = real
    assert (out / "checkpoint" / "state.pt").exists()
    return out, args


def _agent_copy(killed, dst: Path, marker: Path, where: str) -> list[str]:
    out, args = killed
    for p in out.rglob("*"):
        if p.is_file():
            (dst / p.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            (dst / p.relative_to(out)).write_bytes(p.read_bytes())
    if where == "state.pt":
        _pickle_file(dst / "checkpoint" / "state.pt", marker)
    else:
        _object_npz(dst / "checkpoint" / "replay.npz", marker)
    return ["agents/train.py", *[a for a in args if not a.startswith("out=")], f"out={dst}"]


HUGE = {"kwargs.embed_dim": 8192, "kwargs.depth": 64}  # each number plausible, the model 400 billion parameters
PRETRAIN_ARGS = ["method=simclr", "backbone.image_size=32", "backbone.embed_dim=16", "backbone.depth=1",
                 "backbone.num_heads=2", "method.batch_size=4", "steps=4", "ckpt_every=1", "device=cpu"]


@pytest.fixture(scope="module")
def killed_pretrain(saved, tmp_path_factory):
    """A pretraining run folder as SIGKILL after its first checkpoint leaves it."""
    out = tmp_path_factory.mktemp("killed_pretrain") / "run"
    args = ["pretrain/run.py", f"data.path={saved / 'data'}", *PRETRAIN_ARGS, f"out={out}", "progress=false"]
    p = subprocess.run([sys.executable, "tests/kill_at.py", "1", *args], cwd=ROOT, capture_output=True)
    assert p.returncode != 0 and (out / "checkpoint.pt").exists()
    return out, args


def _pretrain_copy(killed, dst: Path, marker: Path) -> list[str]:
    out, args = killed
    for p in out.rglob("*"):
        if p.is_file():
            (dst / p.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            (dst / p.relative_to(out)).write_bytes(p.read_bytes())
    _pickle_file(dst / "checkpoint.pt", marker)
    return [*[a for a in args if not a.startswith(("out=", "progress="))], f"out={dst}"]


def _case(name: str, tmp: Path, saved: Path, killed, killed_pretrain, marker: Path) -> tuple[list[str], str]:
    """(argv after `python`, a string the one-line error must contain) of case ``name``; its files made now."""
    enc = saved / "encoder"
    data = saved / "data"
    tiny = ["backbone.image_size=32", "backbone.embed_dim=16", "backbone.depth=1", "backbone.num_heads=2",
            "method.batch_size=4", "steps=2"]
    cases = {
        "collect: unknown camera": lambda: (["envs/collect.py", "camera=9", "episodes=1", f"out={tmp / 'c'}"], "camera=9"),
        "collect: image larger than the renderer": lambda: (["envs/collect.py", "image_size=5000", "episodes=1",
                                                      f"out={tmp / 'c'}"], "image_size=5000"),
        "collect: out= holds results": lambda: (["envs/collect.py", "episodes=1", f"out={saved / 'run'}"], "already holds"),
        "collect: out= where no folder can be made": lambda: (["envs/collect.py", "episodes=1", "out=/proc/ssl4rl/run"],
                                                              "/proc/ssl4rl"),
        "train: planet on an env without rewards": lambda: (["agents/train.py", "agent=planet", "env=shapes2d",
                                                      f"out={tmp / 't'}"], "rewards"),
        "plan_goal: goal image of the wrong size": lambda: (["agents/plan_goal.py", f"worldmodel={_tiny_cswm(tmp / 'wm')}",
                                                      f"goal_image={_png(tmp / 'goal.png', 64)}", f"out={tmp / 'g'}"],
                                                     "50x50"),
        "plan_goal: an encoder folder as the world model": lambda: (["agents/plan_goal.py", f"worldmodel={enc}",
                                                             f"out={tmp / 'g'}"], "world model"),
        "pretrain: missing data folder": lambda: (["pretrain/run.py", "data.path=/nonexistent/frames", f"out={tmp / 'p'}"],
                                          "/nonexistent/frames"),
        "pretrain: unknown data.kind": lambda: (
            ["pretrain/run.py", f"data.path={data}", "data.kind=nope", f"out={tmp / 'p'}"], "nope"),
        "pretrain: patch size does not divide": lambda: (["pretrain/run.py", f"data.path={data}", *tiny, "backbone.patch_size=7",
                                                  f"out={tmp / 'p'}"], "7"),
        "pretrain: fewer images than the batch": lambda: (["pretrain/run.py", f"data.path={data}", *tiny[:-2],
                                                   "method.batch_size=4096", f"out={tmp / 'p'}"], "4096"),
        "pretrain: frame pairs on an ImageFolder": lambda: (["pretrain/run.py", f"data.path={tmp}", "data.kind=imagefolder",
                                                     "data.positive=temporal", f"out={tmp / 'p'}"], "temporal"),
        "pretrain: NaN in an episode's states": lambda: (
            ["pretrain/run.py", f"data.path={_bad_episode(tmp / 'nan', saved, states=lambda a: a * np.nan)}", *tiny,
             f"out={tmp / 'p'}"], "NaN"),
        "pretrain: inf reward": lambda: (
            ["pretrain/run.py", f"data.path={_bad_episode(tmp / 'inf', saved, rewards=lambda a: a + np.inf)}", *tiny,
             f"out={tmp / 'p'}"], "inf"),
        "pretrain: episode claiming a huge array": lambda: (
            ["pretrain/run.py", f"data.path={_huge_header_npz(tmp / 'huge' / 'episode_000000.npz').parent}", *tiny,
             f"out={tmp / 'p'}"], "larger than any episode"),
        "pretrain: pickle payload in an episode": lambda: (
            ["pretrain/run.py", f"data.path={_object_npz(tmp / 'obj' / 'episode_000000.npz', marker).parent}", *tiny,
             f"out={tmp / 'p'}"], "Python objects"),
        "pretrain: pickle payload as checkpoint.pt": lambda: (_pretrain_copy(killed_pretrain, tmp / "pk", marker),
                                                              "checkpoint.pt"),
        "eval: corrupt meta.json": lambda: (
            ["pretrain/eval.py", f"encoder={enc}", f"data.path={_copy_with(data, tmp / 'meta', 'meta.json', b'{oops')}",
             f"out={tmp / 'e'}"], "meta.json"),
        "eval: encoder.json with a huge model": lambda: (
            ["pretrain/eval.py", f"encoder={_encoder_with(tmp / 'big', saved, **HUGE)}",
             f"data.path={data}", f"out={tmp / 'e'}"], "parameters"),
        "eval: encoder.json with an absurd size": lambda: (
            ["pretrain/eval.py", f"encoder={_encoder_with(tmp / 'absurd', saved, **{'kwargs.embed_dim': 10**9})}",
             f"data.path={data}", f"out={tmp / 'e'}"], "kwargs.embed_dim=1000000000"),
        "eval: encoder.json of the wrong type": lambda: (
            ["pretrain/eval.py", f"encoder={_encoder_with(tmp / 'badtype', saved, kwargs='vit')}", f"data.path={data}",
             f"out={tmp / 'e'}"], "kwargs"),
        "eval: unknown encoder architecture": lambda: (
            ["pretrain/eval.py", f"encoder={_encoder_with(tmp / 'arch', saved, arch='transformer9000')}", f"data.path={data}",
             f"out={tmp / 'e'}"], "transformer9000"),
        "eval: pickle payload as encoder weights": lambda: (
            ["pretrain/eval.py", f"encoder={_pickled_weights(tmp / 'pw', saved, marker)}", f"data.path={data}",
             f"out={tmp / 'e'}"], "encoder.safetensors"),
        "eval: mixed frame sizes": lambda: (
            ["pretrain/eval.py", f"encoder={enc}", f"data.path={_mixed_sizes(tmp / 'mixed', saved)}", f"out={tmp / 'e'}"],
            "shape"),
        "train: encoder folder without weights": lambda: (
            ["agents/train.py", f"encoder={_without_weights(tmp / 'nw', saved)}", "steps=80", f"out={tmp / 't'}"],
            "encoder.safetensors"),
        "train: unknown vec_env": lambda: (
            ["agents/train.py", f"encoder={enc}", "vec_env=threads", "steps=80", f"out={tmp / 't'}"], "threads"),
        "train: pickle payload in the agent checkpoint": lambda: (_agent_copy(killed, tmp / "ap", marker, "state.pt"),
                                                                  "state.pt"),
        "train: pickle payload in the replay buffer": lambda: (_agent_copy(killed, tmp / "rp", marker, "replay.npz"),
                                                               "replay.npz"),
        "random_init: like= a dataset folder": lambda: (
            ["pretrain/random_init.py", f"like={data}", f"out={tmp / 'r'}"], "encoder.json"),
        "demo: unknown method": lambda: (["-m", "ssl4rl.demo", "--out", str(tmp / "d"), "--method", "rotaton"], "rotaton"),
        "demo: zero seeds": lambda: (["-m", "ssl4rl.demo", "--out", str(tmp / "d"), "--seeds", "0"], "--seeds 0"),
        "demo: non-numeric env steps": lambda: (["-m", "ssl4rl.demo", "--out", str(tmp / "d"), "--env-steps", "lots"], "lots"),
        "demo: out= holds results": lambda: (["-m", "ssl4rl.demo", "--out", str(saved / "run")], "already exists"),
        "report: missing folder": lambda: (["-m", "ssl4rl.report", str(tmp / "nope")], "nope"),
        "report: malformed results.json": lambda: (
            ["-m", "ssl4rl.report", str(_copy_with(saved / "run", tmp / "rep", "results.json", b"{not json"))],
            "results.json"),
    }
    return cases[name]()


def _tiny_cswm(folder: Path) -> Path:
    """An untrained C-SWM world model for 50 px block frames (20 one-hot actions)."""
    from ssl4rl.worldmodels import encoder_spec, save_world_model
    from ssl4rl.worldmodels.cswm import CSWM, CSWMEncoder

    enc = CSWMEncoder(image_size=50, num_slots=5, embedding_dim=2, hidden_dim=16)
    return save_world_model(CSWM(encoder_spec(enc), {"num_slots": 5, "embedding_dim": 2, "hidden_dim": 16}), folder)


def _png(path: Path, size: int) -> Path:
    import imageio.v3 as iio

    iio.imwrite(path, np.zeros((size, size, 3), np.uint8))
    return path


def _copy_with(src: Path, dst: Path, name: str, content: bytes) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    (dst / name).write_bytes(content)
    return dst


def _pickled_weights(folder: Path, saved: Path, marker: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "encoder.json").write_bytes((saved / "encoder" / "encoder.json").read_bytes())
    _pickle_file(folder / "encoder.safetensors", marker)
    return folder


def _without_weights(folder: Path, saved: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "encoder.json").write_bytes((saved / "encoder" / "encoder.json").read_bytes())
    return folder


def _mixed_sizes(folder: Path, saved: Path) -> Path:
    _bad_episode(folder, saved)
    src = sorted((saved / "data").glob("episode_*.npz"))[1]
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in KEYS}
    arrays["frames"] = np.ascontiguousarray(arrays["frames"][:, :, :16, :16])
    with open(folder / "episode_000001.npz", "wb") as f:
        np.savez(f, **arrays)
    (folder / "meta.json").write_bytes((saved / "data" / "meta.json").read_bytes())
    return folder


CASE_NAMES = [
    "collect: unknown camera", "collect: image larger than the renderer", "collect: out= holds results",
    "collect: out= where no folder can be made",
    "pretrain: missing data folder", "pretrain: unknown data.kind", "pretrain: patch size does not divide",
    "pretrain: fewer images than the batch", "pretrain: frame pairs on an ImageFolder",
    "pretrain: NaN in an episode's states", "pretrain: inf reward", "pretrain: episode claiming a huge array",
    "pretrain: pickle payload in an episode", "pretrain: pickle payload as checkpoint.pt", "eval: corrupt meta.json",
    "eval: encoder.json with a huge model", "eval: encoder.json with an absurd size",
    "eval: encoder.json of the wrong type", "eval: unknown encoder architecture",
    "eval: pickle payload as encoder weights", "eval: mixed frame sizes", "train: encoder folder without weights",
    "train: unknown vec_env", "train: pickle payload in the agent checkpoint", "train: pickle payload in the replay buffer",
    "random_init: like= a dataset folder", "demo: unknown method", "demo: zero seeds", "demo: non-numeric env steps",
    "demo: out= holds results", "report: missing folder", "report: malformed results.json",
    "train: planet on an env without rewards", "plan_goal: goal image of the wrong size",
    "plan_goal: an encoder folder as the world model",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_entry_point_refuses_bad_file_or_value(name, tmp_path, unchanged, killed_agent, killed_pretrain):
    marker = tmp_path / "UNPICKLED"
    argv, needle = _case(name, tmp_path, unchanged, killed_agent, killed_pretrain, marker)
    before = _checksums(tmp_path)
    p = subprocess.run([sys.executable, *argv, *([] if argv[0] == "-m" else ["progress=false"])], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2, p.stderr[-2000:]
    _one_line(p.stderr, "error:", needle)
    assert not marker.exists(), "a pickle payload was executed"
    after = _checksums(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a refused run changed a file it was given"


# --- the public Python API: one UserError (a ValueError), one line ---------------------------------


def _episodes(saved: Path):
    return [load_episode(p) for p in sorted((saved / "data").glob("episode_*.npz"))]


API_CASES = {
    "make_env: unknown env": (lambda s: make_env("dmc_nope"), "dmc_nope"),
    "make_env: image_size=0": (lambda s: make_env("dmc_cartpole", image_size=0), "image_size=0"),
    "make_env: image_size=5000": (lambda s: make_env("dmc_cartpole", image_size=5000), "image_size=5000"),
    "make_env: camera=9": (lambda s: make_env("dmc_cartpole", camera=9), "camera=9"),
    "make_env: camera='top'": (lambda s: make_env("dmc_cartpole", camera="top"), "top"),
    "make_env: frame_stack=0": (lambda s: make_env("dmc_cartpole", frame_stack=0), "frame_stack=0"),
    "make_env: unknown option": (lambda s: make_env("dmc_cartpole", colour="red"), "colour"),
    "FrameDataset: no episodes": (lambda s: FrameDataset([]), "no episodes"),
    "FrameDataset: image_size=4": (lambda s: FrameDataset(_episodes(s), image_size=4), "image_size=4"),
    "SequenceDataset: length=1": (lambda s: SequenceDataset(_episodes(s), length=1), "length"),
    "PairDataset: k=0": (lambda s: PairDataset(_episodes(s), k=0), "k >= 1"),
    "load_episode: missing file": (lambda s: load_episode(s / "nope.npz"), "nope.npz"),
    "load_encoder: missing folder": (lambda s: load_encoder(s / "nope"), "nope"),
    "collect: episodes=0": (lambda s: collect("dmc_cartpole", episodes=0, out=s / "never"), "episodes=0"),
    "collect: episodes='3'": (lambda s: collect("dmc_cartpole", episodes="3", out=s / "never"), "episodes='3'"),
    "collect: seed=-1": (lambda s: collect("dmc_cartpole", episodes=1, seed=-1, out=s / "never"), "seed=-1"),
    "make_env: seed=-1": (lambda s: make_env("dmc_cartpole", seed=-1), "seed=-1"),
    "make_env: seed=2**32": (lambda s: make_env("dmc_cartpole", seed=2**32), "seed=4294967296"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_public_api_raises_one_user_error(name, unchanged):
    fn, needle = API_CASES[name]
    with pytest.raises(UserError) as e:
        fn(unchanged)
    assert isinstance(e.value, ValueError)
    assert "\n" not in str(e.value) and needle in str(e.value), str(e.value)


@pytest.mark.parametrize("kwargs,needle", [
    ({"steps": 0}, "steps=0"), ({"n_envs": 0}, "n_envs=0"), ({"frame_stack": 0}, "frame_stack=0"),
    ({"vec_env": "threads"}, "threads"), ({"eval_every": -1}, "eval_every=-1"), ({"ckpt_every": 0}, "ckpt_every=0"),
    ({"eval_episodes": 0}, "eval_episodes=0"), ({"agent": {"batch_size": 0}}, "batch_size=0"),
])
def test_train_agent_validates_its_arguments(kwargs, needle, unchanged, tmp_path):
    from ssl4rl.agents import train_agent
    from ssl4rl.config import AgentConfig, TrainConfig

    kwargs = {**kwargs, "agent": AgentConfig(**kwargs["agent"])} if "agent" in kwargs else kwargs
    with pytest.raises(UserError) as e:
        train_agent(TrainConfig(env="dmc_cartpole", encoder=str(unchanged / "encoder"), out=str(tmp_path / "run"), **kwargs))
    assert "\n" not in str(e.value) and needle in str(e.value), str(e.value)
    assert not (tmp_path / "run").exists()


# --- one way to claim a run folder, for the command line and the Python API alike --------------------


def test_api_calls_into_a_finished_run_refuse(unchanged, tmp_path):
    from ssl4rl.agents import train_agent
    from ssl4rl.config import DataConfig, PretrainConfig, TrainConfig
    from ssl4rl.methods import default_config
    from ssl4rl.pretrain import pretrain

    with pytest.raises(UserError) as e:
        train_agent(TrainConfig(env="dmc_cartpole", encoder=str(unchanged / "encoder"), out=str(unchanged / "run"), steps=160,
                                device="cpu", progress=False))
    assert "already holds an earlier run" in str(e.value) and "\n" not in str(e.value)
    cfg = PretrainConfig(method=default_config("simclr", batch_size=4), data=DataConfig(path=str(unchanged / "data")),
                         backbone={"arch": "vit", **TINY_VIT}, steps=2, device="cpu", progress=False)
    with pytest.raises(UserError) as e:
        pretrain(cfg, unchanged / "run")
    assert "already holds an earlier run" in str(e.value)


@pytest.mark.parametrize("change,needle", [
    ({"lr": float("nan")}, "method.lr=nan"), ({"temperature": 0.0}, "method.temperature=0.0"),
    ({"batch_size": -1}, "method.batch_size=-1"),
])
def test_pretrain_api_validates_like_the_command_line(change, needle, unchanged, tmp_path):
    from ssl4rl.config import DataConfig, PretrainConfig
    from ssl4rl.methods import default_config
    from ssl4rl.pretrain import pretrain

    cfg = PretrainConfig(method=default_config("simclr", **change), data=DataConfig(path=str(unchanged / "data")),
                         backbone={"arch": "vit", **TINY_VIT}, steps=2, device="cpu", progress=False)
    with pytest.raises(UserError) as e:
        pretrain(cfg, tmp_path / "p")
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "p").exists()


def test_a_second_process_on_the_same_out_refuses_naming_the_holder(unchanged, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "envs/collect.py", "episodes=50", "image_size=16", f"out={out}", "progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(600):  # the first run has claimed out= once its lock names it
            if (out / ".lock").exists() and (out / ".lock").read_text().strip() == str(first.pid):
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    finally:
        _, first_err = first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    _one_line(second.stderr, "error:", "in use", f"pid {first.pid}")
    assert first.returncode == 0, first_err[-2000:]
    assert len(list(out.glob("episode_*.npz"))) == 50 and (out / "meta.json").exists()
    assert "error" not in (out / "log.txt").read_text()


def test_claims_are_exclusive_across_processes_and_released_by_the_api(tmp_path):
    from ssl4rl.runs import claim_run_dir, claimed_run_dir, release_run_dir

    out = tmp_path / "held"
    with claimed_run_dir(out, "a: 1\n") as (folder, resuming):
        assert folder == out and not resuming
        assert claim_run_dir(out, "a: 1\n") == (out, False)  # this process again: the same claim
        p = subprocess.run([sys.executable, "-c", f"from ssl4rl.runs import claim_run_dir; claim_run_dir({str(out)!r})"],
                           cwd=ROOT, capture_output=True, text=True)
        assert p.returncode != 0 and f"pid {os.getpid()}" in p.stderr and "in use" in p.stderr
    claim_run_dir(out, "a: 1\n")  # released at the end of the with block
    release_run_dir(out)


# --- OS faults at out=: one line naming the fix ------------------------------------------------------


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount a small tmpfs (read-only or tiny) at a folder; skipped where mounting is not allowed."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()[:100]})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


def _collect_into(out: Path, *extra: str, user: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(user or []), sys.executable, "envs/collect.py", "episodes=2", "image_size=64", f"out={out}",
                           "progress=false", *extra], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HOME": "/tmp"})


def test_out_on_a_read_only_disk_is_one_line(mount_tmpfs, unchanged):
    p = _collect_into(mount_tmpfs("ro", "ro,size=64k") / "run")
    assert p.returncode == 2, p.stderr[-2000:]
    _one_line(p.stderr, "error:", "read-only", "out=")


def test_a_full_disk_is_one_line(mount_tmpfs, unchanged):
    out = mount_tmpfs("full", "size=64k") / "run"
    p = _collect_into(out)
    assert p.returncode == 2, p.stderr[-2000:]
    _one_line(p.stderr, "error:", "no space left", "out=")
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))  # no partial file left behind


def test_a_disk_that_fills_up_during_pretraining_is_one_line(mount_tmpfs, unchanged):
    """torch.save reports a full disk as a RuntimeError: it is named as the full disk it is."""
    out = mount_tmpfs("full_pretrain", "size=64k") / "run"
    p = subprocess.run([sys.executable, "pretrain/run.py", f"data.path={unchanged / 'data'}", *PRETRAIN_ARGS, f"out={out}",
                        "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2, p.stderr[-2000:]
    _one_line(p.stderr, "error:", "no space left", "checkpoint.pt")


def test_hydra_flags_may_sit_between_overrides():
    from ssl4rl.cli import _flags_first

    assert _flags_first(["episodes=1", "--config-dir=/x", "out=a", "-m", "seed=0,1"]) == [
        "--config-dir=/x", "-m", "episodes=1", "out=a", "seed=0,1"]
    assert _flags_first(["seed=1", "-cd", "/x", "out=a"]) == ["-cd", "/x", "seed=1", "out=a"]


def test_out_without_permission_is_one_line(tmp_path, unchanged):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    user = None
    if os.geteuid() == 0:  # root ignores permission bits: run as nobody, who cannot enter tmp_path
        if not Path("/usr/bin/setpriv").exists():
            pytest.skip("running as root without setpriv")
        user = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    p = _collect_into(locked / "run", user=user)
    assert p.returncode == 2, p.stderr[-2000:]
    _one_line(p.stderr, "error:", "permission denied")


# === the declared range of every method, augmentation and backbone field; encoder.json kwargs and the timm allowlist ===

BACKBONES = sorted((CONFIGS / "backbone").glob("*.yaml"))
PRETRAIN = ["data.path=x"]



# --- the command line (in-process, as each entry point does before anything runs) -------------------

CLI_CASES = [
    (["method=mae", "method.mask_ratio=1.0"], "method.mask_ratio=1.0"),
    (["method=mae", "method.mask_ratio=0"], "method.mask_ratio=0"),
    (["method=simclr", "method.aug.jitter=-1"], "method.aug.jitter=-1"),
    (["method=simclr", "method.aug.hue=0.7"], "method.aug.hue=0.7"),
    (["method=moco", "method.queue_size=-1"], "method.queue_size=-1"),
    (["method=swav", "method.n_prototypes=0"], "method.n_prototypes=0"),
    (["method=simclr", "method.temperature=0"], "method.temperature=0"),
    (["method=simclr", "method.optimizer=adam"], "adam"),
    (["method=simclr", "method.momentum=1.5"], "method.momentum=1.5"),
    (["method=simclr", "method.batch_size=10000000"], "method.batch_size=10000000"),
    (["method=simclr", "method.proj_dim=1000000"], "method.proj_dim=1000000"),
    (["method=simclr", "method.aug.crop_scale=[0.9,0.2]"], "method.aug.crop_scale=[0.9,0.2]"),
    (["method=dino", "method.crops.local_scale=[0.5,1.0]"], "method.crops.local_scale"),
    (["method=dino", "method.teacher_temp_start=0.09"], "method.teacher_temp_start=0.09"),
    (["method=cpc", "method.patch_stride=32"], "method.patch_stride=32"),
    (["method=deepcluster", "method.num_clusters=1"], "method.num_clusters=1"),
    (["method=inpainting", "method.mask=ring"], "ring"),
    (["method=cswm", "method.extractor=huge"], "huge"),
    (["backbone.embed_dim=-4"], "backbone.embed_dim=-4"),
    (["backbone.patch_size=0"], "backbone.patch_size=0"),
    (["backbone.patch_size=7"], "backbone.patch_size=7"),
    (["backbone.pool=max"], "max"),
    (["backbone=timm", "+backbone.model_kwargs.checkpoint_path=/etc/passwd"], "checkpoint_path"),
]


@pytest.mark.parametrize("argv,needle", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_bad_method_or_backbone_setting_is_refused_in_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        _guard(lambda: _prevalidate(CONFIGS, "pretrain", [*PRETRAIN, *argv]))
    assert e.value.code == 2
    _one_line(capsys.readouterr().err, "error:", needle)


# --- the Python API: validate() on the config, check_backbone() and the constructors ------------------

FIELD_API_CASES = {
    "mae mask_ratio=1.0": (lambda: validate(default_config("mae", mask_ratio=1.0), "method."), "method.mask_ratio=1.0"),
    "ViewAug jitter=-1": (lambda: validate(ViewAug(jitter=-1)), "jitter=-1"),
    "ViewAug size=4": (lambda: validate(ViewAug(size=4)), "size=4"),
    "moco queue_size=-1": (lambda: validate(default_config("moco", queue_size=-1), "method."), "method.queue_size=-1"),
    "swav n_prototypes=0": (lambda: validate(default_config("swav", n_prototypes=0), "method."), "method.n_prototypes=0"),
    "simclr temperature=0": (lambda: validate(default_config("simclr", temperature=0), "method."), "method.temperature=0"),
    "optimizer=adam": (lambda: validate(default_config("byol", optimizer="adam"), "method."), "method.optimizer=adam"),
    "crop_scale lo > hi": (lambda: validate(default_config("simclr", aug=ViewAug(crop_scale=(0.9, 0.2))), "method."),
                           "method.aug.crop_scale=[0.9,0.2]"),
    "MultiCrop local above global": (lambda: validate(MultiCrop(local_scale=(0.5, 1.0))), "local_scale"),
    "dino teacher_temp above student_temp": (lambda: validate(default_config("dino", teacher_temp=0.2), "method."),
                                             "method.teacher_temp=0.2"),
    "mae decoder_dim/heads": (lambda: validate(default_config("mae", decoder_dim=66), "method."), "method.decoder_dim=66"),
    "build_method validates": (lambda: _build_method("mae", mask_ratio=1.0), "method.mask_ratio=1.0"),
    "vit embed_dim=-4": (lambda: check_backbone("vit", {"embed_dim": -4}), "backbone.embed_dim=-4"),
    "vit patch_size=0": (lambda: check_backbone("vit", {"patch_size": 0}), "backbone.patch_size=0"),
    "vit patch_size=7 at 64 px": (lambda: check_backbone("vit", {"image_size": 64, "patch_size": 7}), "backbone.patch_size=7"),
    "vit too many tokens": (lambda: check_backbone("vit", {"image_size": 1024, "patch_size": 2}), "262144"),
    "vit std=0": (lambda: check_backbone("vit", {"std": [0.2, 0.0, 0.2]}), "backbone.std"),
    "vit mean of 2 numbers": (lambda: check_backbone("vit", {"mean": [0.5, 0.5]}), "backbone.mean"),
    "ViTEncoder(patch_size=0)": (lambda: ViTEncoder(image_size=32, patch_size=0), "patch_size=0"),
    "build_encoder embed_dim=-4": (lambda: build_encoder("vit", **{**TINY_VIT, "embed_dim": -4}), "embed_dim=-4"),
    "unknown arch": (lambda: check_backbone("transformer9000", {}), "transformer9000"),
    "unknown kwarg": (lambda: check_backbone("vit", {"colour": "red"}), "backbone.colour"),
    "conv too deep": (lambda: check_backbone("conv", {"image_size": 16, "layers": 8}), "backbone.layers=8"),
    "resnet depth=101": (lambda: check_backbone("resnet", {"depth": 101}), "backbone.depth=101"),
    "timm checkpoint_path": (lambda: check_backbone("timm", {"model_kwargs": {"checkpoint_path": "/etc/passwd"}}),
                             "checkpoint_path"),
    "timm pretrained_cfg_overlay": (
        lambda: check_backbone("timm", {"model_kwargs": {"pretrained_cfg_overlay": {"file": "/x"}}}), "pretrained_cfg_overlay"),
    "timm in_chans": (lambda: check_backbone("timm", {"model_kwargs": {"in_chans": 1}}), "in_chans"),
    "timm drop_path_rate=2": (lambda: check_backbone("timm", {"model_kwargs": {"drop_path_rate": 2.0}}),
                              "backbone.model_kwargs.drop_path_rate=2.0"),
    "build_encoder timm cache_dir": (lambda: build_encoder("timm", image_size=32, model_kwargs={"cache_dir": "/tmp"}),
                                     "cache_dir"),
    "create_timm_model checkpoint_path": (lambda: create_timm_model("resnet18", {"checkpoint_path": "/etc/passwd"}),
                                          "checkpoint_path"),
}


def _build_method(name: str, **options):
    from ssl4rl.methods import MethodContext, build_method

    return build_method(default_config(name, **options), build_encoder("vit", **TINY_VIT), MethodContext())


@pytest.mark.parametrize("name", list(FIELD_API_CASES))
def test_bad_value_is_one_user_error(name):
    fn, needle = FIELD_API_CASES[name]
    with pytest.raises(UserError) as e:
        fn()
    assert isinstance(e.value, ValueError)
    assert "\n" not in str(e.value) and needle in str(e.value), str(e.value)


def test_timm_allowed_options_still_build():
    enc = build_encoder("timm", image_size=32, model_name="vit_tiny_patch16_224",
                        model_kwargs={"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2,
                                      "drop_path_rate": 0.1})
    assert enc.feature_dim == 32


# --- encoder.json ---------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_encoder(build_encoder("vit", **TINY_VIT), tmp_path_factory.mktemp("enc") / "encoder", method="test")


def _encoder_changed(folder: Path, saved_encoder: Path, change) -> Path:
    folder.mkdir(parents=True)
    meta = json.loads((saved_encoder / "encoder.json").read_text())
    change(meta)
    (folder / "encoder.json").write_text(json.dumps(meta))
    (folder / "encoder.safetensors").write_bytes((saved_encoder / "encoder.safetensors").read_bytes())
    return folder


def _timm_reading(marker: Path, checkpoint: Path):
    def change(meta):
        with open(checkpoint, "wb") as f:
            pickle.dump({"state_dict": Payload(marker)}, f)
        meta["arch"] = "timm"
        meta["kwargs"] = {"image_size": 32, "mean": meta["kwargs"]["mean"], "std": meta["kwargs"]["std"],
                          "model_name": "resnet18", "model_kwargs": {"checkpoint_path": str(checkpoint)}}
    return change


META_CASES = {
    "no normalization": (lambda meta: meta.pop("normalization"), "normalization"),
    "normalization not a mapping": (lambda meta: meta.update(normalization="imagenet"), "normalization"),
    "normalization without std": (lambda meta: meta["normalization"].pop("std"), "normalization.std"),
    "std of 0": (lambda meta: meta["normalization"].update(std=[0.25, 0.0, 0.25]), "normalization.std"),
    "mean of 2 numbers": (lambda meta: meta["normalization"].update(mean=[0.5, 0.5]), "normalization.mean"),
    "mean of strings": (lambda meta: meta["normalization"].update(mean=["a", "b", "c"]), "normalization.mean"),
    "kwargs.embed_dim=-4": (lambda meta: meta["kwargs"].update(embed_dim=-4), "kwargs.embed_dim=-4"),
    "kwargs.patch_size=0": (lambda meta: meta["kwargs"].update(patch_size=0), "kwargs.patch_size=0"),
    "kwargs.patch_size=7": (lambda meta: meta["kwargs"].update(patch_size=7), "kwargs.patch_size=7"),
    "unknown kwarg": (lambda meta: meta["kwargs"].update(colour="red"), "kwargs.colour"),
}


@pytest.mark.parametrize("name", list(META_CASES))
@pytest.mark.parametrize("loader", [load_encoder, random_like], ids=["load_encoder", "random_like"])
def test_bad_encoder_json_is_one_line_naming_the_file(name, loader, saved_encoder, tmp_path):
    change, needle = META_CASES[name]
    folder = _encoder_changed(tmp_path / "enc", saved_encoder, change)
    with pytest.raises(UserError) as e:
        loader(folder)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and str(folder / "encoder.json") in msg, msg


def test_encoder_json_cannot_make_timm_read_a_file(saved_encoder, tmp_path):
    marker = tmp_path / "marker"
    folder = _encoder_changed(tmp_path / "enc", saved_encoder, _timm_reading(marker, tmp_path / "evil.pth"))
    for loader in (load_encoder, random_like):
        with pytest.raises(UserError) as e:
            loader(folder)
        msg = str(e.value)
        assert "\n" not in msg and "checkpoint_path" in msg and str(folder / "encoder.json") in msg, msg
    assert not marker.exists()


def test_saved_encoders_still_load(saved_encoder):
    assert load_encoder(saved_encoder).config() == build_encoder("vit", **TINY_VIT).config()


# --- every default is valid, every field declares its range ---------------------------------------


def _configs() -> list[type]:
    return [*(cls.Config for cls in METHODS.values()), ViewAug, MultiCrop,
            *(cls.Config for cls in ARCHS.values() if cls.Config is not None)]


def test_every_default_validates_and_every_backbone_yaml_passes():
    for name in METHODS:
        validate(default_config(name), "method.")
    validate(ViewAug())
    validate(MultiCrop())
    for path in BACKBONES:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        check_backbone(cfg.pop("arch"), cfg, f"{path.name}: ")


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_field_declares_its_range(cls):
    """Each field but switches and nested configs has a declaration; a method's own default for a field it
    inherits keeps the parent's range."""
    for f in dataclasses.fields(cls):
        nested = f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())
        if f.type in ("bool", bool) or nested:
            continue
        assert "rule" in f.metadata, f"{cls.__name__}.{f.name} declares no range"
        for base in cls.__mro__[1:]:
            if issubclass(base, MethodConfig) and f.name in field_names(base):
                inherited = next(g for g in dataclasses.fields(base) if g.name == f.name)
                assert f.metadata["rule"] == inherited.metadata["rule"], f"{cls.__name__}.{f.name} changes its range"


@pytest.mark.parametrize("arch,kwargs", [("vit", TINY_VIT), ("conv", {"image_size": 32}), ("resnet", {"image_size": 32}),
                                         ("timm", {"image_size": 32})])
def test_arch_config_lists_exactly_the_saved_kwargs(arch, kwargs):
    enc = build_encoder(arch, **kwargs)
    assert issubclass(ARCHS[arch].Config, EncoderConfig)
    assert set(field_names(ARCHS[arch].Config)) == set(enc.config())
    check_backbone(arch, enc.config())


# === bounded reads: array headers, JSON size and depth, allocations derived from settings ============

DEEP = "[" * 200_000 + "]" * 200_000


def _raises_one_line(fn, *needles: str) -> str:
    with pytest.raises(UserError) as e:
        fn()
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def _huge_header_npy(path: Path) -> Path:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 3, 10**6)})
    return path


def _replay_claiming(path: Path, observations: tuple[int, ...]) -> Path:
    """A replay.npz of headers only (order, pos, full and observations of the given shape)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, (descr, shape) in {"order": ("<i8", (10,)), "pos": ("<i8", ()), "full": ("|b1", ()),
                                     "observations": ("<f4", observations)}.items():
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array_header_2_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return path


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv, "progress=false"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from ssl4rl.encoders import build_encoder, save_encoder

    torch.manual_seed(0)
    return save_encoder(build_encoder("vit", **TINY_VIT), tmp_path_factory.mktemp("enc") / "encoder", method="test")


def _dataset_with_meta(src: Path, dst: Path, meta: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "meta.json").write_text(meta)
    return dst


# --- array files: headers are checked against memory before anything is allocated ---------------------


def test_replay_buffer_claiming_a_huge_array_is_refused_when_the_checkpoint_is_read(tmp_path):
    from ssl4rl.agents import checkpoint

    ck = tmp_path / "run" / checkpoint.CHECKPOINT
    ck.mkdir(parents=True)
    torch.save({"log": {}}, ck / "state.pt")
    _replay_claiming(ck / "replay.npz", (10**9, 3, 84, 84))
    _raises_one_line(lambda: checkpoint.read(tmp_path / "run"), "replay.npz", "TiB", "choose a new out=")


def test_replay_buffer_array_fitting_the_rows_but_not_memory_is_refused(tmp_path):
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    from ssl4rl.agents import checkpoint

    space = spaces.Box(-1, 1, (4,), np.float32)
    path = _replay_claiming(tmp_path / "replay.npz", (10, 10**12))
    _raises_one_line(lambda: checkpoint._unpack_buffer(path, ReplayBuffer(10, space, space, n_envs=1)),
                     "replay.npz", "needs", "choose a new out=")


def test_goal_npy_claiming_a_huge_array_is_refused(tmp_path):
    from ssl4rl.agents.goal import load_goal_image

    path = _huge_header_npy(tmp_path / "goal.npy")
    _raises_one_line(lambda: load_goal_image(path, 50), "goal.npy", "TiB")


def test_goal_npy_of_python_objects_is_refused_unread(tmp_path):
    from ssl4rl.agents.goal import load_goal_image

    path = tmp_path / "goal.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _raises_one_line(lambda: load_goal_image(path, 50), "goal.npy", "Python objects")


def test_goal_png_of_the_wrong_size_is_refused_before_decoding(tmp_path):
    from PIL import Image

    from ssl4rl.agents.goal import load_goal_image

    Image.new("RGB", (64, 64)).save(tmp_path / "goal.png")
    _raises_one_line(lambda: load_goal_image(tmp_path / "goal.png", 50), "goal.png", "64x64", "50x50")
    Image.new("RGB", (50, 50), (255, 0, 0)).save(tmp_path / "ok.png")
    assert load_goal_image(tmp_path / "ok.png", 50).shape == (3, 50, 50)


def test_checked_np_load_checks_expected_arrays(tmp_path):
    from ssl4rl.utils import checked_np_load

    np.savez(tmp_path / "a.npz", x=np.zeros(3, np.float64))
    _raises_one_line(lambda: checked_np_load(tmp_path / "a.npz", "thing", "fix it", {"x": None, "y": None}),
                     "a.npz", "missing y", "fix it")
    _raises_one_line(lambda: checked_np_load(tmp_path / "a.npz", "thing", "fix it", {"x": np.float32}),
                     "a.npz", "float64", "float32")
    with checked_np_load(tmp_path / "a.npz", "thing", "fix it", {"x": np.float64}) as z:
        assert z["x"].shape == (3,)


# --- JSON: size-capped, depth-safe, objects only ---------------------------------------------------


def _deep_encoder(folder: Path, encoder: Path) -> Path:
    shutil.copytree(encoder, folder)
    (folder / "encoder.json").write_text(DEEP)
    return folder


def test_deeply_nested_json_is_one_line_wherever_it_is_read(tmp_path, encoder, tiny_dataset):
    from ssl4rl.data import dataset_meta
    from ssl4rl.encoders import encoder_meta
    from ssl4rl.report import summary_table
    from ssl4rl.worldmodels import load_world_model

    enc = _deep_encoder(tmp_path / "enc", encoder)
    _raises_one_line(lambda: encoder_meta(enc), "encoder.json", "nested too deeply")
    data = _dataset_with_meta(tiny_dataset, tmp_path / "data", DEEP)
    _raises_one_line(lambda: dataset_meta(data), "meta.json", "nested too deeply")
    wm = _tiny_cswm(tmp_path / "wm")
    (wm / "model.json").write_text(DEEP)
    _raises_one_line(lambda: load_world_model(wm), "model.json", "nested too deeply")
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "results.json").write_text(DEEP)
    _raises_one_line(lambda: summary_table(tmp_path / "runs"), "results.json", "nested too deeply")


def test_json_over_the_cap_is_refused_before_parsing(tmp_path, monkeypatch):
    from ssl4rl.utils import read_json

    monkeypatch.setattr(ssl4rl.utils, "MAX_JSON_BYTES", 100)
    (tmp_path / "results.json").write_text(json.dumps({"x": "y" * 200}))
    _raises_one_line(lambda: read_json(tmp_path / "results.json"), "results.json", "100 B")


def test_dataset_meta_that_is_not_an_object_is_refused(tmp_path, tiny_dataset):
    from ssl4rl.data import dataset_meta

    for i, (meta, needle) in enumerate([("[1, 2]", "list"), ("3", "number"), ('{"state_names": 5}', "state_names")]):
        data = _dataset_with_meta(tiny_dataset, tmp_path / f"d{i}", meta)
        _raises_one_line(lambda d=data: dataset_meta(d), str(data / "meta.json"), needle)
    from ssl4rl.eval.harness import load_frame_sets

    data = _dataset_with_meta(tiny_dataset, tmp_path / "short", '{"state_names": ["x"]}')
    _raises_one_line(lambda: load_frame_sets([data]), str(data / "meta.json"), "1 state_names")


# --- settings whose allocations would not fit in memory ---------------------------------------------


def test_eval_pixels_size_too_large_for_memory_is_refused(tmp_path, encoder, tiny_dataset, monkeypatch):
    from ssl4rl.eval.harness import evaluate

    before = _checksums(tiny_dataset)
    _raises_one_line(lambda: evaluate([encoder], tiny_dataset, pixels_size=100_000, device="cpu", progress=False),
                     "pixels_size=100000", "<= 256")  # the declared range first
    monkeypatch.setattr(ssl4rl.utils, "available_memory", lambda: 64 << 20)  # a machine with 64 MiB free
    _raises_one_line(lambda: evaluate([encoder], tiny_dataset, out=tmp_path / "e", pixels_size=256, device="cpu",
                                      progress=False), "pixels_size=256", "raw-pixel baseline", "pixels_size=16")
    assert _checksums(tiny_dataset) == before and not list((tmp_path / "e").glob("eval*"))


class _Task:
    discrete, action_dim, budget = False, 2, 5


class _WideModel:
    """A latent model with a million-value state."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(frames), 10**6)

    def step(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return z


def test_goal_planning_candidates_too_large_for_memory_are_refused(monkeypatch):
    from ssl4rl.agents.goal import GoalPlanner

    monkeypatch.setattr(ssl4rl.utils, "available_memory", lambda: 1 << 30)
    _raises_one_line(lambda: GoalPlanner(_WideModel(), _Task(), horizon=10, candidates=10**9, iterations=1, top_k=1),
                     "candidates=1000000000", "horizon=10", "fewer candidates")
    planner = GoalPlanner(_WideModel(), _Task(), horizon=10, candidates=300, iterations=1, top_k=1)
    frame = np.zeros((3, 8, 8), np.uint8)
    _raises_one_line(lambda: planner.act(frame, torch.zeros(1, 10**6), torch.Generator()),
                     "candidates=300", "1000000 latent values", "fewer candidates")


# --- entry points: exit status 2, one error line, inputs untouched ---------------------------------


def _refused(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p.stderr[-2000:]
    _one_line(p.stderr, "error:", *needles)


def test_eval_cli_refuses_a_meta_json_list_and_a_huge_pixels_size(tmp_path, encoder, tiny_dataset):
    data = _dataset_with_meta(tiny_dataset, tmp_path / "data", "[]")
    before = _checksums(tmp_path)
    _refused(_cli("pretrain/eval.py", f"encoder={encoder}", f"data.path={data}", f"out={tmp_path / 'e1'}"), "meta.json")
    _refused(_cli("pretrain/eval.py", f"encoder={encoder}", f"data.path={tiny_dataset}", "pixels_size=100000",
                  f"out={tmp_path / 'e2'}"), "pixels_size=100000")
    assert {k: v for k, v in _checksums(tmp_path).items() if k in before} == before


def test_plan_goal_cli_refuses_a_deep_model_json_and_a_huge_goal_npy(tmp_path):
    wm = _tiny_cswm(tmp_path / "wm")
    deep = tmp_path / "deep"
    shutil.copytree(wm, deep)
    (deep / "model.json").write_text(DEEP)
    goal = _huge_header_npy(tmp_path / "goal.npy")
    before = _checksums(tmp_path)
    _refused(_cli("agents/plan_goal.py", f"worldmodel={deep}", f"out={tmp_path / 'g1'}"), "model.json")
    _refused(_cli("agents/plan_goal.py", f"worldmodel={wm}", f"goal_image={goal}", f"out={tmp_path / 'g2'}"), "goal.npy")
    assert {k: v for k, v in _checksums(tmp_path).items() if k in before} == before


# === GL backend faults, CIFAR-10's pickled version, transitions of mixed action sizes ================

def _run(args: list[str], **env_change: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", *env_change)}
    env.update({k: v for k, v in env_change.items() if v is not None})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


# --- MUJOCO_GL ----------------------------------------------------------------------------------------

GL_CASES = {"glx without an X display": ("glx", "DISPLAY is unset"), "misspelt backend": ("eggl", "not a rendering backend")}


@pytest.mark.parametrize("name", GL_CASES)
def test_collect_refuses_an_unusable_gl_backend_in_one_line(name, tmp_path):
    value, needle = GL_CASES[name]
    out = tmp_path / "c"
    proc = _run(["envs/collect.py", "episodes=1", f"out={out}", "image_size=32", "progress=false"],
                MUJOCO_GL=value, DISPLAY=None)
    assert proc.returncode == 2, proc.stderr
    _one_line(proc.stderr, "error:", f"MUJOCO_GL={value}", needle, "use MUJOCO_GL=")
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not [p.name for p in out.iterdir() if p.suffix == ".npz" or p.name == "meta.json"]


API_CODE = textwrap.dedent(
    """
    import ssl4rl
    from ssl4rl.envs import make_env
    from ssl4rl.errors import UserError

    for name, options in (("dmc_cartpole", {}), ("cubes3d", {}), ("dmc_cartpole", {"obs_type": "state"})):
        try:
            make_env(name, **options).reset(seed=0)
            print(name, "ok")
        except UserError as e:
            print(name, "refused:", e)
    """
)


def test_rendering_disabled_refuses_pixel_envs_and_keeps_state_envs():
    lines = _run(["-c", API_CODE], MUJOCO_GL="disabled").stdout.splitlines()
    assert len(lines) == 3 and lines[2] == "dmc_cartpole ok", lines
    for line in lines[:2]:
        _one_line(line, "refused: MUJOCO_GL=disabled switches rendering off", "use MUJOCO_GL=")


@pytest.fixture
def installed(monkeypatch):
    """Sets which GL libraries 'are installed' (``installed('EGL')``); ``ssl4rl._gl``'s state and the GL variables
    are restored afterwards."""
    monkeypatch.setattr(_gl, "_asked", _gl._asked)
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    return lambda *libs: monkeypatch.setattr(_gl, "_has_lib", lambda lib: lib in libs)


def test_gl_problem_names_the_missing_library_or_display(installed, monkeypatch):
    installed("EGL")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    _gl.select_gl_backend()
    assert _gl.gl_problem(render=False) == ("MUJOCO_GL=osmesa needs libOSMesa, which is not installed: "
                                            "apt-get install libosmesa6, or use MUJOCO_GL=egl (or unset MUJOCO_GL)")
    installed("OSMesa")
    monkeypatch.setenv("MUJOCO_GL", "egl")
    _gl.select_gl_backend()
    assert _gl.gl_problem(render=False) == ("MUJOCO_GL=egl needs libEGL, which is not installed: "
                                            "apt-get install libegl1, or use MUJOCO_GL=osmesa")
    installed()
    monkeypatch.delenv("MUJOCO_GL")
    assert _gl.select_gl_backend() == "egl"
    assert _gl.gl_problem(render=True).startswith("no headless OpenGL library found (libEGL, libOSMesa); install")
    installed("EGL")
    monkeypatch.setenv("MUJOCO_GL", "glx")
    assert _gl.select_gl_backend() == "glfw"  # dm_control's name for it
    assert _gl.gl_problem(render=False) is None
    assert _gl.gl_problem(render=True).startswith("MUJOCO_GL=glx opens an X display, but DISPLAY is unset")
    monkeypatch.setenv("DISPLAY", ":0")
    assert _gl.gl_problem(render=True) is None


# --- CIFAR-10's python version ------------------------------------------------------------------------


def test_cifar10_python_version_is_refused_unread(tmp_path):
    marker = tmp_path / "unpickled.txt"
    py = tmp_path / "cifar" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "test_batch", "batches.meta"):
        (py / name).write_bytes(pickle.dumps(Payload(marker)))
    for load in (lambda: open_images("cifar10", py.parent, 32), lambda: open_images("cifar10", py, 32, train=False),
                 lambda: load_cifar10(py.parent)):
        with pytest.raises(UserError) as e:
            load()
        _one_line(str(e.value), "python version", "never unpickles", "binary version", "cifar-10-batches-bin")
    assert not marker.exists()


# --- transitions of tasks with different action sizes -------------------------------------------------


def _episode(folder: str, action_size: int) -> Episode:
    t = 4
    return Episode(np.zeros((t + 1, 3, 8, 8), np.uint8), np.zeros((t, action_size), np.float32),
                   np.zeros(t, np.float32), np.ones(t, np.float32), np.zeros((t + 1, 2), np.float32),
                   source=f"{folder}/episode_000000.npz")


def test_transitions_of_mixed_action_sizes_name_the_sizes_and_folders():
    eps = [_episode("/d/swingup", 1), _episode("/d/balance", 1), _episode("/d/walker", 6)]
    with pytest.raises(UserError) as e:
        MemorySource.from_episodes(eps, 8, positive="temporal", k=1).action_space()
    _one_line(str(e.value), "1 in /d/balance, /d/swingup; 6 in /d/walker", "one env's episodes")
    assert MemorySource.from_episodes(eps, 8, positive="temporal", k=2).action_space() == (0, False)


def test_demo_refuses_a_transition_method_before_collecting(tmp_path):
    out = tmp_path / "demo"
    proc = _run(["-m", "ssl4rl.demo", "--out", str(out), "--method", "cswm"])
    assert proc.returncode == 2, proc.stderr
    _one_line(proc.stderr, "error:", "--method cswm", "dmc_walker 6", "--method rotation")
    assert not out.exists()
