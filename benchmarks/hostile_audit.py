"""Hostile-input audit: every entry point and the public API against bad values, bad files and OS faults.

    python benchmarks/hostile_audit.py            # resumes: cases already in results.jsonl are skipped
    python benchmarks/hostile_audit.py --fresh    # start over (fixtures too)
    python benchmarks/hostile_audit.py --only pickle   # rerun the cases whose name contains 'pickle'

Seven categories (1 API into finished runs and bad values, 2 validation on every path, 3 sizes, 4 OS/GL,
5 every declared field, generated from ``ssl4rl.fields.rule_of``, 6 pickle payloads, 7 messages) plus valid
inputs that must run. Config-only cases run in-process through ``ssl4rl.cli.prevalidate`` (what each entry
point does before anything runs); file, OS and run cases are real processes; API cases run in a child process.
Outcomes: refused | misleading | traceback | accepted | killed | pickle_ran | changed, and ok | refused_valid.
``changed``: a case altered a folder of earlier results (``fixtures/saved``) or a file it was given.
One JSON line per case goes to ``runs/hostile_audit/results.jsonl``; a summary table ends the run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
AUDIT = ROOT / "runs" / "hostile_audit"
RESULTS, CASES, FIX = AUDIT / "results.jsonl", AUDIT / "cases", AUDIT / "fixtures"
SAVED, KILLED = FIX / "saved", FIX / "killed"  # earlier results no case may change; killed runs, copied per case
DATA, ENC, PRE_DONE, SAC_DONE, WM = (SAVED / n for n in ("data", "encoder", "pretrain_done", "sac_done", "wm"))
BIG_JSON = FIX / "big.json"  # one byte over ssl4rl.utils.MAX_JSON_BYTES, hard-linked where a case needs it
DEEP = "[" * 200_000 + "]" * 200_000
TIMEOUT = 120
SCRIPTS = {"collect": "envs/collect.py", "train": "agents/train.py", "pretrain": "pretrain/run.py",
           "eval": "pretrain/eval.py", "random_init": "pretrain/random_init.py", "plan_goal": "agents/plan_goal.py"}
TINY_VIT = dict(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")
TINY_PRE = ["method=simclr", "backbone.image_size=32", "backbone.embed_dim=16", "backbone.depth=1", "backbone.num_heads=2",
            "method.batch_size=4", "device=cpu"]
SAC = ["eval_every=0", "eval_episodes=1", "video=false", "agent.learning_starts=5", "agent.batch_size=8",
       "agent.net_arch=[8]", "agent.proj_dim=4", "device=cpu"]
PLANET = ["agent=planet", "agent.seed_episodes=1", "agent.updates_per_episode=1", "agent.batch_size=2", "agent.seq_len=4",
          "agent.deter=8", "agent.stoch=4", "agent.hidden=8", "agent.depth=4", "agent.candidates=8", "agent.iterations=1",
          "agent.top_k=2", "agent.horizon=2", "eval_every=0", "eval_episodes=1", "video=false", "device=cpu"]
VMC = ["agent=worldmodels", "steps=2000", "agent.vae_steps=2", "agent.m_steps=2", "agent.ckpt_updates=1", "agent.z_dim=4",
       "agent.hidden=8", "agent.mixtures=1", "agent.vae_batch=4", "agent.m_batch=2", "agent.seq_len=4", "agent.popsize=4",
       "agent.rollouts=1", "agent.generations=100000", "agent.dream_horizon=5", "agent.dream_eval=1", "eval_episodes=1",
       "video=false", "device=cpu"]
KILLS = {  # a run SIGKILLed once this file exists (a complete checkpoint): argv without out=, the file
    "sac": (["agents/train.py", f"encoder={ENC}", "steps=2000", "ckpt_every=80", *SAC], "checkpoint/state.pt"),
    "pretrain": (["pretrain/run.py", f"data.path={DATA}", *TINY_PRE, "steps=200", "ckpt_every=1"], "checkpoint.pt"),
    "planet": (["agents/train.py", *PLANET, "steps=100000"], "checkpoint/state.pt"),
    "vmc": (["agents/train.py", *VMC], "checkpoint/cma_trained_m.pt"),
    "goal": (["agents/plan_goal.py", f"worldmodel={WM}", "goals=100000", "videos=0", "random_control=false", "device=cpu"],
             "checkpoint.json"),
}


@dataclasses.dataclass
class Case:
    """One hostile (or, with ``valid``, legitimate) input and what its refusal must mention."""

    cat: str
    name: str
    kind: str  # config (in-process prevalidate) | cli (a process) | api (a child process)
    make: Any  # config: (entry, argv); cli: tmp -> argv after `python`; api: tmp -> anything
    needles: tuple[str, ...] = ()
    valid: bool = False
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    check: Callable[[Path], str | None] | None = None  # a problem with what the run left behind
    runner: Callable[[Case, Path], tuple[int | None, str, str | None]] | None = None  # instead of one process


def K(cat: str, entry: str, argv: list[str], *needles: str) -> Case:
    return Case(cat, f"{entry}: {' '.join(argv)}", "config", (entry, argv), needles)


def S(cat: str, name: str, make: Callable[[Path], list[str]], *needles: str, **kw: Any) -> Case:
    return Case(cat, name, "cli", make, needles, **kw)


def A(cat: str, name: str, fn: Callable[[Path], Any], *needles: str, valid: bool = False) -> Case:
    return Case(cat, "api: " + name, "api", fn, needles, valid)


# --- crafted files ---------------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this writes a marker file: proof that something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled!"))


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` but run-folder locks (they name the last holder's pid)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != ".lock"}


def pickled(path: Path, tmp: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"step": 1, "payload": Payload(tmp / "UNPICKLED")}))
    return path


def object_npz(path: Path, tmp: Path, key: str = "frames") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **{key: np.array([Payload(tmp / "UNPICKLED")], dtype=object)})
    return path


def headers_npz(path: Path, arrays: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    """An .npz of array headers only, claiming whatever shapes it is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, (descr, shape) in arrays.items():
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array_header_2_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return path


def huge_npy(path: Path) -> Path:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 3, 10**6)})
    return path


def copy(src: Path, dst: Path, **files: Any) -> Path:
    """A copy of folder ``src`` with ``files`` (name -> str, bytes or a Path to hard-link) replaced."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    for name, content in files.items():
        p = dst / name.replace("__", "/")
        p.unlink(missing_ok=True)
        if isinstance(content, Path):
            os.link(content, p)
        else:
            p.write_bytes(content.encode() if isinstance(content, str) else content)
    return dst


def encoder_with(dst: Path, change: Callable[[dict], Any]) -> Path:
    """A copy of the saved encoder whose encoder.json ``change`` edited."""
    copy(ENC, dst)
    meta = json.loads((dst / "encoder.json").read_text())
    change(meta)
    (dst / "encoder.json").write_text(json.dumps(meta))
    return dst


def timm_reading(tmp: Path) -> Callable[[dict], Any]:
    """encoder.json edit: a timm model whose model_kwargs would load a pickled checkpoint."""
    def change(meta: dict) -> None:
        pickled(tmp / "evil.pth", tmp)
        meta.update(arch="timm", kwargs={"image_size": 32, "mean": meta["kwargs"]["mean"], "std": meta["kwargs"]["std"],
                                         "model_name": "resnet18", "model_kwargs": {"checkpoint_path": str(tmp / "evil.pth")}})
    return change


def episode_folder(dst: Path, tmp: Path, how: str) -> Path:
    """A frame folder whose one episode is a pickle payload ('object') or claims a huge array ('huge')."""
    if how == "object":
        object_npz(dst / "episode_000000.npz", tmp)
    else:
        headers_npz(dst / "episode_000000.npz", {"frames": ("|u1", (10**9, 3, 64, 64))})
    shutil.copy(DATA / "meta.json", dst / "meta.json")
    return dst


def cifar_py(tmp: Path) -> Path:
    """A CIFAR-10 'python version' folder whose batches are pickle payloads."""
    py = tmp / "cifar" / "cifar-10-batches-py"
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"):
        pickled(py / name, tmp)
    return py.parent


def resume(name: str, tmp: Path, change: Callable[[Path], Any] = lambda ck: None) -> list[str]:
    """argv rerunning killed run ``name`` on a copy of its folder that ``change`` edited."""
    run = copy(KILLED / name, tmp / "run")
    change(run)
    return [*KILLS[name][0], f"out={run}"]


def vmc_stage(stage_file: str, done: list[str]) -> Callable[[Path], Any]:
    """Edit of a killed V-M-C run: ``stage_file`` a pickle payload, the stages before it marked done."""
    def change(run: Path) -> None:
        book = json.loads((run / "checkpoint/progress.json").read_text())
        (run / "checkpoint/progress.json").write_text(json.dumps({**book, "done": done}))
        pickled(run / "checkpoint" / stage_file, run.parent)
    return change


# --- the Python API (run in a child process) -------------------------------------------------------------------------


def _pretrain(out: Path, backbone: dict | None = None, data: str | None = None, **kw: Any) -> Any:
    from ssl4rl.config import DataConfig, PretrainConfig
    from ssl4rl.methods import default_config
    from ssl4rl.pretrain import pretrain

    top = {k: kw.pop(k) for k in ("seed", "steps") if k in kw}
    cfg = PretrainConfig(method=default_config("simclr", **{"batch_size": 4, **kw}), data=DataConfig(path=data or str(DATA)),
                         backbone=backbone or {"arch": "vit", **TINY_VIT}, device="cpu", progress=False,
                         **{"steps": 2, "ckpt_every": 1, **top})
    return pretrain(cfg, out)


def _train(out: Path, **kw: Any) -> Any:
    from ssl4rl.agents import train_agent

    agent = {"learning_starts": 5, "batch_size": 8, "net_arch": [8], "proj_dim": 4, **kw.pop("agent", {})}
    args = {"env": "dmc_cartpole", "encoder": str(ENC), "steps": 160, "eval_every": 0, "ckpt_every": 80, "eval_episodes": 1,
            "video": False, "device": "cpu", "progress": False, **kw}
    return train_agent(out=out, agent=agent, **args)


def _collect(out: Path, **kw: Any) -> Any:
    from ssl4rl.data import collect

    return collect(**{"env": "dmc_cartpole", "episodes": 1, "image_size": 16, "progress": False, "episode_steps": 5, **kw},
                   out=out)


def _evaluate(out: Path | None, **kw: Any) -> Any:
    from ssl4rl.eval.harness import evaluate

    args = {"encoders": [str(ENC)], "data": str(DATA), "device": "cpu", "progress": False, "knn_k": (5,),
            "label_fractions": (), "batch_size": 32, **kw}
    return evaluate(out=out, **args)


def _env(name: str = "dmc_cartpole", **kw: Any) -> None:
    from ssl4rl.envs import make_env

    env = make_env(name, **kw)
    env.reset(seed=0)
    env.close()


def _call(module: str, fn: str, *args: Any, **kw: Any) -> Any:
    import importlib

    return getattr(importlib.import_module(module), fn)(*args, **kw)


ENC_M, WM_M, EP_M = "ssl4rl.encoders", "ssl4rl.worldmodels", "ssl4rl.data"


def api_cases() -> list[Case]:
    c = "1 api"
    p = lambda t: t / "p"
    nan = float("nan")
    cases = [
        A(c, "pretrain(cfg, out) into a finished run, same settings", lambda t: _pretrain(PRE_DONE), "finished run"),
        A(c, "pretrain(cfg, out) into a finished run, other lr", lambda t: _pretrain(PRE_DONE, lr=0.01), "method.lr"),
        A(c, "train_agent into a finished agent run", lambda t: _train(SAC_DONE), "already holds"),
        A(c, "train_agent into a finished pretraining run", lambda t: _train(PRE_DONE), "already holds"),
        A(c, "collect into a finished dataset", lambda t: _collect(DATA), "already holds"),
        A(c, "evaluate into a finished run", lambda t: _evaluate(PRE_DONE), "already holds"),
        A(c, "pretrain lr=nan", lambda t: _pretrain(p(t), lr=nan), "method.lr=nan"),
        A(c, "pretrain temperature=0", lambda t: _pretrain(p(t), temperature=0.0), "method.temperature=0"),
        A(c, "pretrain batch_size=-1", lambda t: _pretrain(p(t), batch_size=-1), "method.batch_size=-1"),
        A(c, "pretrain batch_size='4'", lambda t: _pretrain(p(t), batch_size="4"), "method.batch_size=4"),
        A(c, "pretrain seed=-1", lambda t: _pretrain(p(t), seed=-1), "seed=-1"),
        A(c, "pretrain steps=0", lambda t: _pretrain(p(t), steps=0), "steps=0"),
        A(c, "pretrain missing data", lambda t: _pretrain(p(t), data="/nonexistent/frames"), "/nonexistent/frames"),
        A(c, "pretrain backbone embed_dim='big'", lambda t: _pretrain(p(t), {"arch": "vit", "embed_dim": "big"}), "big"),
        A(c, "pretrain backbone 8192 x 64", lambda t: _pretrain(p(t), {"arch": "vit", "embed_dim": 8192, "depth": 64}),
          "parameters"),
        A(c, "train_agent steps=0", lambda t: _train(p(t), steps=0), "steps=0"),
        A(c, "train_agent steps='160'", lambda t: _train(p(t), steps="160"), "steps"),
        A(c, "train_agent buffer_size=10**9", lambda t: _train(p(t), steps=10**9, agent={"buffer_size": 10**9}),
          "agent.buffer_size"),
        A(c, "train_agent learning_rate=nan", lambda t: _train(p(t), agent={"learning_rate": nan}), "nan"),
        A(c, "train_agent ent_coef=banana", lambda t: _train(p(t), agent={"ent_coef": "banana"}), "banana"),
        A(c, "train_agent unknown agent key", lambda t: _train(p(t), agent={"lr": 0.1}), "agent.lr"),
        A(c, "train_agent seed=2**32", lambda t: _train(p(t), seed=2**32), "seed=4294967296"),
        A(c, "train_agent device=tpu", lambda t: _train(p(t), device="tpu"), "tpu"),
        A(c, "train_agent env=dmc_nope", lambda t: _train(p(t), env="dmc_nope"), "dmc_nope"),
        A(c, "train_agent missing encoder", lambda t: _train(p(t), encoder="/nonexistent/enc"), "/nonexistent/enc"),
        A(c, "train_agent image_size=8", lambda t: _train(p(t), image_size=8), "image_size=8"),
        A(c, "collect episodes=0", lambda t: _collect(p(t), episodes=0), "episodes=0"),
        A(c, "collect episodes='3'", lambda t: _collect(p(t), episodes="3"), "episodes"),
        A(c, "collect env=dmc_nope", lambda t: _collect(p(t), env="dmc_nope"), "dmc_nope"),
        A(c, "collect image_size=5000", lambda t: _collect(p(t), image_size=5000), "image_size=5000"),
        A(c, "collect seed=-1", lambda t: _collect(p(t), seed=-1), "seed=-1"),
        A(c, "collect episode_steps=0", lambda t: _collect(p(t), episode_steps=0), "episode_steps=0"),
        A(c, "evaluate pixels_size=100000", lambda t: _evaluate(p(t), pixels_size=100_000), "pixels_size=100000"),
        A(c, "evaluate knn_k=[0]", lambda t: _evaluate(p(t), knn_k=[0]), "knn_k"),
        A(c, "evaluate n_bins=1", lambda t: _evaluate(p(t), n_bins=1), "n_bins=1"),
        A(c, "evaluate temperature=0", lambda t: _evaluate(p(t), temperature=0.0), "temperature"),
        A(c, "evaluate batch_size=0", lambda t: _evaluate(p(t), batch_size=0), "batch_size=0"),
        A(c, "evaluate no encoders", lambda t: _evaluate(p(t), encoders=[]), "encoder"),
        A(c, "evaluate kind=nope", lambda t: _evaluate(p(t), kind="nope"), "nope"),
        A(c, "evaluate holdout=1.5", lambda t: _evaluate(p(t), holdout=1.5), "holdout=1.5"),
        A(c, "evaluate seed=-1", lambda t: _evaluate(p(t), seed=-1), "seed=-1"),
        A(c, "load_encoder missing folder", lambda t: _call(ENC_M, "load_encoder", t / "nope"), "nope"),
        A(c, "load_encoder of a dataset", lambda t: _call(ENC_M, "load_encoder", DATA), "encoder.json"),
        A(c, "random_like of a dataset", lambda t: _call(ENC_M, "random_like", DATA), "encoder.json"),
        A(c, "load_world_model of an encoder", lambda t: _call(WM_M, "load_world_model", ENC), "model.json"),
        A(c, "load_episode missing file", lambda t: _call(EP_M, "load_episode", t / "nope.npz"), "nope.npz"),
        A(c, "make_env unknown env", lambda t: _env("dmc_nope"), "dmc_nope"),
        A(c, "make_env image_size=0", lambda t: _env(image_size=0), "image_size=0"),
        A(c, "make_env image_size=5000", lambda t: _env(image_size=5000), "image_size=5000"),
        A(c, "make_env image_size='64'", lambda t: _env(image_size="64"), "image_size"),
        A(c, "make_env camera=9", lambda t: _env(camera=9), "camera=9"),
        A(c, "make_env frame_stack=0", lambda t: _env(frame_stack=0), "frame_stack=0"),
        A(c, "make_env unknown option", lambda t: _env(colour="red"), "colour"),
        A(c, "make_env obs_type=nope", lambda t: _env(obs_type="nope"), "nope"),
        A(c, "make_env seed=-1", lambda t: _env(seed=-1), "seed=-1"),
        A(c, "make_env shapes2d image_size=52", lambda t: _env("shapes2d", image_size=52), "image_size=52"),
    ]
    return cases


# --- command lines: paths, sizes, OS, pickles, messages ----------------------------------------------------------------


def _lock_runner(case: Case, tmp: Path) -> tuple[int | None, str, str | None]:
    """Start one run in the background, wait until out/.lock names it, start the same run: the second is refused."""
    argv = [*case.make(tmp), "progress=false"]
    out = Path(next(a for a in argv if a.startswith("out="))[4:])
    first = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env_vars({}), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for _ in range(1200):
            if (out / ".lock").exists() and (out / ".lock").read_text().strip() == str(first.pid):
                break
            if first.poll() is not None:
                return 1, first.communicate()[1], "the first run ended before it held out="
            time.sleep(0.05)
        rc, err = run_process(argv, {})
    finally:
        _, first_err = first.communicate(timeout=600)
    problem = None if first.returncode == 0 else f"the first run failed (exit {first.returncode}): {first_err[-300:]}"
    return rc, err.replace(f"pid {first.pid}", "pid <FIRST>"), problem


def _mount_runner(options: str) -> Callable[[Case, Path], tuple[int | None, str, str | None]]:
    """Run the case with out= on a small tmpfs mounted with ``options`` (unmounted afterwards)."""
    def runner(case: Case, tmp: Path) -> tuple[int | None, str, str | None]:
        point = tmp / "mnt"
        point.mkdir()
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True)
        if m.returncode:
            return 0, "", f"cannot mount a tmpfs here: {m.stderr.strip()}"
        try:
            return (*run_process([*case.make(tmp), "progress=false"], {}), None)
        finally:
            subprocess.run(["umount", str(point)], capture_output=True)
    return runner


def cli_cases() -> list[Case]:
    pre = lambda t, *a: ["pretrain/run.py", f"data.path={DATA}", *TINY_PRE, "steps=2", *a, f"out={t / 'p'}"]
    ev = lambda t, enc, data=DATA, *a: ["pretrain/eval.py", f"encoder={enc}", f"data.path={data}", "knn_k=[5]",
                                        "label_fractions=[]", "device=cpu", *a, f"out={t / 'e'}"]
    col = lambda t, *a: ["envs/collect.py", "episodes=1", "episode_steps=5", "image_size=16", *a, f"out={t / 'c'}"]
    sac = lambda t, *a, enc=ENC: ["agents/train.py", f"encoder={enc}", "steps=160", "ckpt_every=80", *SAC, *a,
                                  f"out={t / 't'}"]
    goal = lambda t, *a, wm=WM: ["agents/plan_goal.py", f"worldmodel={wm}", "goals=1", "videos=0", *a, f"out={t / 'g'}"]
    rnd = lambda t, like: ["pretrain/random_init.py", f"like={like}", f"out={t / 'r'}"]
    nothing = lambda name: lambda t: f"a job ran: {name} exists" if (t / name).exists() else None
    demo = lambda t, *a: ["-m", "ssl4rl.demo", "--out", str(t / "d"), *a]
    norm = lambda m: m.pop("normalization")
    sweep = lambda t: f"hydra.sweep.dir={t / 'sweep'}"
    c2, c3, c4, c5, c6, c7, v = "2 paths", "3 sizes", "4 os", "5 fields", "6 pickle", "7 messages", "valid"
    return [
        # 2: every path validates: real -m sweeps (no job may run), hydra.* overrides, another config dir
        S(c2, "collect -m episodes=1,0", lambda t: [*col(t, "-m", "episodes=1,0"), sweep(t)], "episodes=0", check=nothing("c")),
        S(c2, "train -m seed=0,-1", lambda t: [*sac(t, "-m", "seed=0,-1"), sweep(t)], "seed=-1", check=nothing("t")),
        S(c2, "pretrain -m method.lr=0.1,nan", lambda t: [*pre(t, "-m", "method.lr=0.1,nan"), sweep(t)], "nan",
          check=nothing("p")),
        S(c2, "collect hydra.mode=MULTIRUN episodes=1,0", lambda t: [*col(t, "hydra.mode=MULTIRUN", "episodes=1,0"), sweep(t)],
          "episodes", check=nothing("c")),
        S(c2, "pretrain hydra.run.dir + method.lr=nan", lambda t: pre(t, f"hydra.run.dir={t / 'h'}", "method.lr=nan"), "nan"),
        S(c2, "collect --config-dir + seed=-1", lambda t: [*col(t, "seed=-1"), f"--config-dir={t}"], "seed=-1"),
        S(c2, "train +agent.extra=1", lambda t: sac(t, "+agent.extra=1"), "agent.extra"),
        S(c2, "collect out= empty", lambda t: [*col(t)[:-1], "out="], "out="),
        # 3: sizes bounded before allocation
        S(c3, "train resume: replay.npz claims 10^9 frames", lambda t: resume("sac", t, lambda r: headers_npz(
            r / "checkpoint/replay.npz", {"order": ("<i8", (10,)), "pos": ("<i8", ()), "full": ("|b1", ()),
                                          "observations": ("<f4", (10**9, 3, 84, 84))})), "replay.npz"),
        S(c3, "planet resume: replay.npz claims 10^9 frames", lambda t: resume("planet", t, lambda r: headers_npz(
            r / "checkpoint/replay.npz", {"frames": ("|u1", (10**9, 3, 64, 64))})), "replay.npz"),
        S(c3, "plan_goal goal .npy claims 3 TB", lambda t: goal(t, f"goal_image={huge_npy(t / 'goal.npy')}"), "goal.npy"),
        S(c3, "pretrain episode claims 10^9 frames", lambda t: pre(t)[:1] + [f"data.path={episode_folder(t / 'd', t, 'huge')}",
                                                                           *pre(t)[2:]], "episode_000000.npz"),
        S(c3, "eval episode claims 10^9 frames", lambda t: ev(t, ENC, episode_folder(t / "d", t, "huge")), "episode_000000.npz"),
        S(c3, "eval deep encoder.json", lambda t: ev(t, copy(ENC, t / "x", **{"encoder.json": DEEP})), "encoder.json"),
        S(c3, "train deep encoder.json", lambda t: sac(t, enc=copy(ENC, t / "x", **{"encoder.json": DEEP})), "encoder.json"),
        S(c3, "random_init deep encoder.json", lambda t: rnd(t, copy(ENC, t / "x", **{"encoder.json": DEEP})), "encoder.json"),
        S(c3, "pretrain deep meta.json", lambda t: pre(t)[:1] + [f"data.path={copy(DATA, t / 'd', **{'meta.json': DEEP})}",
                                                               *pre(t)[2:]], "meta.json"),
        S(c3, "eval deep meta.json", lambda t: ev(t, ENC, copy(DATA, t / "d", **{"meta.json": DEEP})), "meta.json"),
        S(c3, "report deep results.json", lambda t: ["-m", "ssl4rl.report", str(copy(SAC_DONE, t / "r", **{"results.json": DEEP}))],
          "results.json"),
        S(c3, "plan_goal deep model.json", lambda t: goal(t, wm=copy(WM, t / "w", **{"model.json": DEEP})), "model.json"),
        S(c3, "plan_goal resume: deep checkpoint.json", lambda t: resume("goal", t, lambda r: (r / "checkpoint.json").write_text(
            DEEP)), "checkpoint.json"),
        S(c3, "worldmodels resume: deep progress.json", lambda t: resume("vmc", t, lambda r: (
            r / "checkpoint/progress.json").write_text(DEEP)), "progress.json"),
        S(c3, "train resume: deep config.yaml", lambda t: resume("sac", t, lambda r: (r / "config.yaml").write_text(
            "[" * 200_000)), "config.yaml"),
        S(c3, "eval 64 MiB encoder.json", lambda t: ev(t, copy(ENC, t / "x", **{"encoder.json": BIG_JSON})), "encoder.json"),
        S(c3, "pretrain 64 MiB meta.json", lambda t: pre(t)[:1] + [f"data.path={copy(DATA, t / 'd', **{'meta.json': BIG_JSON})}",
                                                                 *pre(t)[2:]], "meta.json"),
        S(c3, "report 64 MiB results.json", lambda t: ["-m", "ssl4rl.report", str(copy(SAC_DONE, t / "r", **{
            "results.json": BIG_JSON}))], "results.json"),
        S(c3, "plan_goal 64 MiB model.json", lambda t: goal(t, wm=copy(WM, t / "w", **{"model.json": BIG_JSON})), "model.json"),
        S(c3, "plan_goal resume: 64 MiB checkpoint.json", lambda t: resume("goal", t, lambda r: copy_big(r / "checkpoint.json")),
          "checkpoint.json"),
        S(c3, "eval encoder.json -> /dev/zero", lambda t: ev(t, symlinked(copy(ENC, t / "x"), "encoder.json", "/dev/zero")),
          "encoder.json"),
        S(c3, "train agent.candidates=1000000000", lambda t: ["agents/train.py", *PLANET, "steps=2000",
                                                              "agent.candidates=1000000000", f"out={t / 't'}"], "candidates"),
        S(c3, "plan_goal candidates=1000000000", lambda t: goal(t, "candidates=1000000000"), "candidates"),
        S(c3, "eval pixels_size=100000", lambda t: ev(t, ENC, DATA, "pixels_size=100000"), "pixels_size=100000"),
        S(c3, "train agent.buffer_size=10^9 steps=10^9", lambda t: sac(t, "agent.buffer_size=1000000000", "steps=1000000000"),
          "agent.buffer_size"),
        S(c3, "train cnn 1024 px frame_stack=16", lambda t: ["agents/train.py", "encoder=cnn", "image_size=1024", "frame_stack=16",
                                                             *SAC, f"out={t / 't'}"], "buffer_size"),
        S(c3, "pretrain backbone.embed_dim=8192 backbone.depth=64", lambda t: pre(t, "backbone.embed_dim=8192", "backbone.depth=64",
                                                                              "backbone.num_heads=16"), "parameters"),
        S(c3, "pretrain method.batch_size=1000000", lambda t: pre(t, "method.batch_size=1000000"), "1000000"),
        S(c3, "planet agent.seq_len=10000", lambda t: ["agents/train.py", *PLANET, "steps=2000", "agent.seq_len=10000",
                                                       f"out={t / 't'}"], "seq_len"),
        # 4: GL backends, out= that cannot be a run folder, seeds, two runs on one out=, read-only and full disks
        S(c4, "collect MUJOCO_GL=glx", col, "MUJOCO_GL=glx", "DISPLAY", env={"MUJOCO_GL": "glx"}),
        S(c4, "collect MUJOCO_GL=eggl", col, "MUJOCO_GL=eggl", env={"MUJOCO_GL": "eggl"}),
        S(c4, "collect MUJOCO_GL=osmesa", col, "MUJOCO_GL=osmesa", env={"MUJOCO_GL": "osmesa"}),
        S(c4, "collect MUJOCO_GL=disabled", col, "MUJOCO_GL=disabled", env={"MUJOCO_GL": "disabled"}),
        S(c4, "train MUJOCO_GL=glx", sac, "MUJOCO_GL=glx", env={"MUJOCO_GL": "glx"}),
        S(c4, "demo MUJOCO_GL=eggl", demo, "MUJOCO_GL=eggl", env={"MUJOCO_GL": "eggl"}),
        *[S(c4, f"{entry} out= a file", lambda t, mk=mk: [*mk(t)[:-1], f"out={file_at(t)}"], "is a file")
          for entry, mk in (("collect", col), ("pretrain", pre), ("train", sac), ("eval", lambda t: ev(t, ENC)),
                            ("random_init", lambda t: rnd(t, ENC)), ("plan_goal", goal))],
        S(c4, "collect out=/dev/null", lambda t: [*col(t)[:-1], "out=/dev/null"], "/dev/null"),
        S(c4, "collect out= under /proc", lambda t: [*col(t)[:-1], "out=/proc/hostile_audit/run"], "/proc/hostile_audit"),
        S(c4, "pretrain out= under /proc", lambda t: [*pre(t)[:-1], "out=/proc/hostile_audit/run"], "/proc/hostile_audit"),
        S(c4, "train out=/proc/self", lambda t: [*sac(t)[:-1], "out=/proc/self"], "/proc/self"),
        S(c4, "collect seed=-1", lambda t: col(t, "seed=-1"), "seed=-1"),
        S(c4, "collect seed=2**32", lambda t: col(t, "seed=4294967296"), "seed=4294967296"),
        S(c4, "train seed=2**32", lambda t: sac(t, "seed=4294967296"), "seed=4294967296"),
        S(c4, "pretrain seed=-1", lambda t: pre(t, "seed=-1"), "seed=-1"),
        S(c4, "collect: two runs on one out=", lambda t: ["envs/collect.py", "episodes=50", "image_size=16", f"out={t / 'c'}"],
          "in use", "pid <FIRST>", runner=_lock_runner),
        S(c4, "pretrain: two runs on one out=", lambda t: [*pre(t)[:-2], "steps=300", f"out={t / 'p'}"], "in use", "pid <FIRST>",
          runner=_lock_runner),
        S(c4, "collect out= on a read-only disk", lambda t: ["envs/collect.py", "episodes=2", "image_size=64",
                                                             f"out={t / 'mnt' / 'run'}"], "read-only", runner=_mount_runner("ro,size=64k")),
        S(c4, "collect out= on a full disk", lambda t: ["envs/collect.py", "episodes=2", "image_size=64",
                                                        f"out={t / 'mnt' / 'run'}"], "no space left", runner=_mount_runner("size=64k")),
        S(c4, "pretrain out= on a full disk", lambda t: [*pre(t)[:-1], f"out={t / 'mnt' / 'run'}"], "no space left",
          runner=_mount_runner("size=16k")),
        # 5: files through the same declarations
        S(c5, "eval encoder.json without normalization", lambda t: ev(t, encoder_with(t / "x", norm)), "normalization"),
        S(c5, "train encoder.json without normalization", lambda t: sac(t, enc=encoder_with(t / "x", norm)), "normalization"),
        S(c5, "eval meta.json a list", lambda t: ev(t, ENC, copy(DATA, t / "d", **{"meta.json": "[]"})), "meta.json"),
        S(c5, "pretrain meta.json a list", lambda t: pre(t)[:1] + [f"data.path={copy(DATA, t / 'd', **{'meta.json': '[1, 2]'})}",
                                                                 *pre(t)[2:]], "meta.json"),
        S(c5, "eval encoder.json timm checkpoint_path", lambda t: ev(t, encoder_with(t / "x", timm_reading(t))), "checkpoint_path"),
        S(c5, "random_init encoder.json timm checkpoint_path", lambda t: rnd(t, encoder_with(t / "x", timm_reading(t))),
          "checkpoint_path"),
        S(c5, "train encoder.json timm checkpoint_path", lambda t: sac(t, enc=encoder_with(t / "x", timm_reading(t))),
          "checkpoint_path"),
        S(c5, "eval encoder.json kwargs.embed_dim=-4", lambda t: ev(t, encoder_with(t / "x", lambda m: m["kwargs"].update(
            embed_dim=-4))), "kwargs.embed_dim=-4"),
        S(c5, "eval encoder.json std of 0", lambda t: ev(t, encoder_with(t / "x", lambda m: m["normalization"].update(
            std=[0.25, 0.0, 0.25]))), "normalization.std"),
        S(c5, "eval encoder.json huge model", lambda t: ev(t, encoder_with(t / "x", lambda m: m["kwargs"].update(
            embed_dim=8192, depth=64, num_heads=16))), "parameters"),
        # 6: pickle payloads in every loader (the marker must never appear)
        S(c6, "train resume: state.pt pickle", lambda t: resume("sac", t, lambda r: pickled(r / "checkpoint/state.pt", t)), "state.pt"),
        S(c6, "train resume: replay.npz objects", lambda t: resume("sac", t, lambda r: object_npz(r / "checkpoint/replay.npz", t)),
          "replay.npz"),
        S(c6, "pretrain resume: checkpoint.pt pickle", lambda t: resume("pretrain", t, lambda r: pickled(r / "checkpoint.pt", t)),
          "checkpoint.pt"),
        S(c6, "planet resume: state.pt pickle", lambda t: resume("planet", t, lambda r: pickled(r / "checkpoint/state.pt", t)),
          "state.pt"),
        S(c6, "planet resume: replay.npz objects", lambda t: resume("planet", t, lambda r: object_npz(
            r / "checkpoint/replay.npz", t)), "replay.npz"),
        *[S(c6, f"worldmodels resume: {f} pickle", lambda t, f=f, d=d: resume("vmc", t, vmc_stage(f, d)), f)
          for f, d in (("vae.pt", ["collect"]), ("latents.pt", ["collect", "v", "encode"]),
                       ("mdnrnn.pt", ["collect", "v", "encode"]), ("cma_trained_m.pt", ["collect", "v", "encode", "m"]))],
        S(c6, "eval encoder.safetensors pickle", lambda t: ev(t, copy(ENC, t / "x", **{"encoder.safetensors": pickled(
            t / "w.pt", t).read_bytes()})), "encoder.safetensors"),
        S(c6, "train encoder.safetensors pickle", lambda t: sac(t, enc=copy(ENC, t / "x", **{"encoder.safetensors": pickled(
            t / "w.pt", t).read_bytes()})), "encoder.safetensors"),
        S(c6, "random_init encoder.safetensors pickle", lambda t: rnd(t, copy(ENC, t / "x", **{"encoder.safetensors": pickled(
            t / "w.pt", t).read_bytes()})), "encoder.safetensors"),
        S(c6, "pretrain episode npz objects", lambda t: pre(t)[:1] + [f"data.path={episode_folder(t / 'd', t, 'object')}",
                                                                    *pre(t)[2:]], "episode_000000.npz"),
        S(c6, "eval episode npz objects", lambda t: ev(t, ENC, episode_folder(t / "d", t, "object")), "episode_000000.npz"),
        S(c6, "plan_goal model.safetensors pickle", lambda t: goal(t, wm=copy(WM, t / "w", **{"model.safetensors": pickled(
            t / "w.pt", t).read_bytes()})), "model.safetensors"),
        S(c6, "plan_goal goal .npy objects", lambda t: goal(t, f"goal_image={object_npy(t / 'goal.npy', t)}"), "goal.npy"),
        A(c6, "load_encoder encoder.safetensors pickle", lambda t: _call(ENC_M, "load_encoder", copy(
            ENC, t / "x", **{"encoder.safetensors": pickled(t / "w.pt", t).read_bytes()})), "encoder.safetensors"),
        A(c6, "load_episode npz objects", lambda t: _call(EP_M, "load_episode", object_npz(t / "e.npz", t)), "e.npz"),
        A(c6, "load_cifar10 python version", lambda t: _call("ssl4rl.data.images", "load_cifar10", cifar_py(t)), "python version"),
        # 7: messages
        S(c7, "pretrain CIFAR-10 python version", lambda t: pre(t)[:1] + [f"data.path={cifar_py(t)}", "data.kind=cifar10",
                                                                        *pre(t)[2:]], "python version"),
        S(c7, "eval CIFAR-10 python version", lambda t: ["pretrain/eval.py", f"encoder={ENC}", f"data.path={cifar_py(t)}",
                                                         "data.kind=cifar10", f"out={t / 'e'}"], "python version"),
        S(c7, "collect unquoted non-ASCII out=", lambda t: [*col(t)[:-1], f"out={t / 'dé'}"], "quote"),
        S(c7, "train unquoted non-ASCII out=", lambda t: [*sac(t)[:-1], f"out={t / 'ü'}"], "quote"),
        S(c7, "demo --method cswm", lambda t: demo(t, "--method", "cswm"), "--method cswm"),
        S(c7, "demo --method cswm without --out", lambda t: ["-m", "ssl4rl.demo", "--method", "cswm"], "--out"),
        S(c7, "demo --method rotaton", lambda t: demo(t, "--method", "rotaton"), "rotaton"),
        S(c7, "demo --seeds 0", lambda t: demo(t, "--seeds", "0"), "--seeds 0"),
        S(c7, "demo --env-steps lots", lambda t: demo(t, "--env-steps", "lots"), "lots"),
        S(c7, "demo --out exists", lambda t: ["-m", "ssl4rl.demo", "--out", str(SAC_DONE)], "already exists"),
        S(c7, "report missing folder", lambda t: ["-m", "ssl4rl.report", str(t / "nope")], "nope"),
        S(c7, "report malformed results.json", lambda t: ["-m", "ssl4rl.report", str(copy(SAC_DONE, t / "r", **{
            "results.json": "{oops"}))], "results.json"),
        S(c7, "collect --config-dir between overrides", lambda t: [*col(t, f"--config-dir={t}"), "seed=1"], "unrecognized"),
        S(c7, "collect env=dmc_nope", lambda t: col(t, "env=dmc_nope"), "dmc_nope"),
        S(c7, "collect out= holds results", lambda t: [*col(t)[:-1], f"out={SAC_DONE}"], "already holds"),
        S(c7, "train missing encoder folder", lambda t: sac(t, enc="/nonexistent/enc"), "/nonexistent/enc"),
        S(c7, "train planet on shapes2d", lambda t: ["agents/train.py", *PLANET, "env=shapes2d", f"out={t / 't'}"], "rewards"),
        S(c7, "plan_goal encoder as world model", lambda t: goal(t, wm=ENC), "world model"),
        S(c7, "plan_goal env=dmc_cartpole", lambda t: goal(t, "env=dmc_cartpole"), "dmc_cartpole"),
        S(c7, "train resume with other settings", lambda t: [*resume("sac", t), "agent.gamma=0.9"], "agent.gamma"),
        # valid inputs: each must run (tiny sizes)
        S(v, "collect tiny", col, valid=True, check=lambda t: None if (t / "c/meta.json").exists() else "no meta.json"),
        S(v, "collect -m sweep of two outs", lambda t: ["envs/collect.py", "-m", f"out={t / 'a'},{t / 'b'}", "episodes=1",
                                                        "episode_steps=5", "image_size=16", sweep(t)], valid=True,
          check=lambda t: None if (t / "a/meta.json").exists() and (t / "b/meta.json").exists() else "a job did not run"),
        S(v, "collect hydra.job.chdir=false", lambda t: col(t, "hydra.job.chdir=false", "seed=3"), valid=True),
        S(v, "collect quoted non-ASCII out=", lambda t: [*col(t)[:-1], f'out="{t / "dé"}"'], valid=True,
          check=lambda t: None if (t / "dé/meta.json").exists() else "no dé/meta.json"),
        S(v, "collect out= with a space", lambda t: [*col(t)[:-1], f"out={t / 'a b'}"], valid=True),
        S(v, "collect seed=2**31-1 MUJOCO_GL=egl", lambda t: col(t, "seed=2147483647"), valid=True, env={"MUJOCO_GL": "egl"}),
        S(v, "pretrain tiny", pre, valid=True, check=lambda t: None if (t / "p/encoder/encoder.json").exists() else "no encoder"),
        S(v, "pretrain timm drop_path_rate=0.1", lambda t: [*pre(t)[:1], f"data.path={DATA}", "method=simclr", "backbone=timm",
                                                            "backbone.image_size=32", "+backbone.model_kwargs.drop_path_rate=0.1",
                                                            "method.batch_size=4", "steps=1", "device=cpu", f"out={t / 'p'}"],
          valid=True),
        S(v, "pretrain resume of a killed run", lambda t: resume("pretrain", t), valid=True,
          check=lambda t: None if (t / "run/results.json").exists() else "no results.json"),
        S(v, "eval tiny", lambda t: ev(t, ENC), valid=True),
        S(v, "random_init tiny", lambda t: rnd(t, ENC), valid=True),
        S(v, "train resume of a killed run", lambda t: resume("sac", t), valid=True,
          check=lambda t: None if (t / "run/results.json").exists() else "no results.json"),
        S(v, "plan_goal tiny", lambda t: goal(t, "random_control=false"), valid=True),
        S(v, "report on a copy of an agent run", lambda t: ["-m", "ssl4rl.report", str(copy(SAC_DONE, t / "r"))], valid=True),
        A(v, "make_env + reset", lambda t: _env(image_size=32), valid=True),
        A(v, "load_encoder", lambda t: _call(ENC_M, "load_encoder", ENC), valid=True),
    ]


def file_at(t: Path) -> Path:
    (t / "afile").write_text("x")
    return t / "afile"


def copy_big(p: Path) -> None:
    p.unlink(missing_ok=True)
    os.link(BIG_JSON, p)


def symlinked(folder: Path, name: str, target: str) -> Path:
    (folder / name).unlink()
    (folder / name).symlink_to(target)
    return folder


def object_npy(path: Path, tmp: Path) -> Path:
    np.save(path, np.array([Payload(tmp / "UNPICKLED")], dtype=object), allow_pickle=True)
    return path


# --- config values, in-process: hand-picked paths, then every declared field ------------------------------------------


def path_cases() -> list[Case]:
    c = "2 paths"
    return [
        K(c, "collect", ["-m", "episodes=1,0"], "episodes=0"), K(c, "train", ["--multirun", "seed=0,1,-1"], "seed=-1"),
        K(c, "pretrain", ["data.path=x", "-m", "method.lr=0.1,nan"], "nan"),
        K(c, "pretrain", ["data.path=x", "-m", "method=simclr,mae", "method.batch_size=0"], "method.batch_size=0"),
        K(c, "eval", ["data.path=x", "-m", "knn_temperature=0.1,0"], "knn_temperature=0"),
        K(c, "plan_goal", ["worldmodel=x", "-m", "goals=1,0"], "goals=0"), K(c, "random_init", ["like=x", "-m", "seed=0,-1"], "seed=-1"),
        K(c, "train", ["-m", "agent=sac,planet", "agent.top_k=5000"], "agent.top_k"),
        K(c, "train", ["-m", "agent=planet", "agent.candidates=10,20", "agent.top_k=15"], "agent.top_k=15"),
        K(c, "collect", ["-m", "env=dmc_cartpole,dmc_nope"], "dmc_nope"),
        K(c, "train", ["-m", "seed=range(0,3)", "agent.gamma=2"], "agent.gamma=2"),
        K(c, "collect", ["-m", "episodes=choice(1,-1)"], "episodes=-1"),
        K(c, "train", ["hydra.run.dir=.", "agent.learning_rate=nan"], "nan"),
        K(c, "collect", ["hydra.job.chdir=true", "episodes=0"], "episodes=0"),
        K(c, "eval", ["data.path=x", "hydra.verbose=true", "knn_temperature=0"], "knn_temperature=0"),
        K(c, "train", ["hydra.nope=1"], "hydra.nope"),
        K(c, "pretrain", ["data.path=x", "hydra.sweep.dir=/tmp/x", "-m", "steps=1,0"], "steps=0"),
        K(c, "collect", ["hydra.job.name=x", "seed=-1"], "seed=-1"),
        K(c, "train", ["hydra.job.chdir=false", "-m", "seed=0,1", "eval_episodes=0"], "eval_episodes=0"),
        K(c, "collect", ["~seed"], "~seed"), K(c, "collect", ["episodes"], "episodes"), K(c, "collect", ["seed="], "seed"),
        K(c, "train", ["seed=“1”"], "quote"), K(c, "collect", ["episodes=1e3"], "episodes"),
        K(c, "train", ["agent=td3"], "td3"), K(c, "pretrain", ["data.path=x", "method=mea"], "mea"),
        K(c, "pretrain", ["data.path=x", "backbone=nope"], "nope"), K(c, "collect", ["episodez=3"], "episodez"),
        K(c, "pretrain", [], "data.path"), K(c, "eval", [], "data.path"), K(c, "random_init", [], "like"),
        K(c, "plan_goal", [], "worldmodel"),
        K(c, "pretrain", ["data.path=x", "backbone=timm", "+backbone.model_kwargs.checkpoint_path=/etc/passwd"], "checkpoint_path"),
        K(c, "pretrain", ["data.path=x", "backbone=timm", "+backbone.model_kwargs.pretrained_cfg_overlay={file:/x}"],
          "pretrained_cfg_overlay"),
        K(c, "pretrain", ["data.path=x", "backbone=timm", "+backbone.model_kwargs.drop_path_rate=2.0"], "drop_path_rate=2.0"),
        K(c, "pretrain", ["data.path=x", "backbone.patch_size=7"], "backbone.patch_size=7"),
        K(c, "plan_goal", ["worldmodel=x", "goal_steps_min=9", "goal_steps_max=3"], "goal_steps_min=9"),
        K(c, "plan_goal", ["worldmodel=x", "top_k=500"], "top_k=500"),
    ]


def _show(v: Any) -> str:
    """A value as ssl4rl's validator prints it (and as the override gives it)."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_show(x) for x in v) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def bad_values(f: dataclasses.Field, default: Any, i: int) -> list[tuple[str, tuple[str, ...]]]:
    """(override value, what the refusal must contain) for field ``f``: each declared bound broken, a non-finite
    number or a wrong type, a typo of a choice, a value its check refuses."""
    from ssl4rl.fields import rule_of

    r, t = rule_of(f), str(f.type)
    t = t[9:-1] if t.startswith("Optional[") else t.replace(" | None", "")
    if t == "bool":
        return [("maybe", ("maybe",))]
    if t == "str":
        if r.choices is not None:
            typo = list(r.choices() if callable(r.choices) else r.choices)[0] + "x"
            return [(typo, (typo,))]
        return [("zzz_bad", ("zzz_bad",))] if r.check else []
    seq = t.startswith(("list[", "tuple["))
    elem = t.split("[", 1)[1].split(",")[0].rstrip("]") if seq else t
    if elem not in ("int", "float"):
        return []
    num = int if elem == "int" else float
    bounds = [x for x in (None if r.ge is None else r.ge - 1, r.gt, None if r.le is None else r.le + 1, r.lt) if x is not None]
    if not bounds and r.check:
        bounds = [7]
    out = []
    for b in bounds:
        v = [num(b), *list(default or [])[1:]] if seq else num(b)
        out.append((_show(v), ("=" + _show(v),)))
    if seq and r.check and default and len(default) in (2, 3):
        v = list(default)[::-1] if len(default) == 2 else list(default)[:2]
        out += [(_show(v), ("=" + _show(v),))] if v != list(default) else []
    if not seq:
        out.append(("abc", ("abc",)) if num is int else (("nan", ("=nan",)) if i % 2 else ("inf", ("=inf",))))
    return out


def yaml_keys(override: str) -> set[str]:
    """The keys ``configs/backbone/<name>.yaml`` sets (others are added with ``+backbone.key=``)."""
    path = CONFIGS / "backbone" / (override.split("=")[1] + ".yaml")
    return {ln.split(":")[0] for ln in path.read_text().splitlines() if ln and not ln.startswith("#")}


def field_cases() -> list[Case]:
    """Every declared field of every entry, agent, method (nested augmentations too) and backbone config."""
    from ssl4rl import config as C
    from ssl4rl.encoders import ARCHS
    from ssl4rl.methods import METHODS, MethodConfig

    commons = {"out", "seed", "device", "progress", "steps", "name"}
    method_common = {f.name for f in dataclasses.fields(MethodConfig)}
    groups: list[tuple[str, list[str], str, type, set[str]]] = [
        ("collect", [], "", C.CollectConfig, {"name"}), ("train", [], "", C.TrainConfig, commons),
        ("eval", ["data.path=x"], "", C.EvalConfig, commons), ("pretrain", ["data.path=x"], "", C.PretrainConfig, commons),
        ("random_init", ["like=x"], "", C.RandomInitConfig, commons), ("plan_goal", ["worldmodel=x"], "", C.GoalConfig, commons),
        *[("train", [f"agent={n}"], "agent.", cls, {"name"}) for n, cls in C.agent_configs().items()],
        ("pretrain", ["data.path=x", "method=simclr"], "method.", MethodConfig, {"name"}),
        *[("pretrain", ["data.path=x", f"method={n}"], "method.", cls.Config, method_common) for n, cls in sorted(METHODS.items())],
        *[("pretrain", ["data.path=x", f"backbone={y}"], "backbone.", ARCHS[a].Config, set())
          for a, y in (("vit", "vit_tiny"), ("conv", "conv"), ("resnet", "resnet18"), ("timm", "timm"))],
    ]
    seen: Counter = Counter()
    cases: list[Case] = []

    def walk(entry: str, base: list[str], prefix: str, cls: type, skip: set[str], obj: Any) -> None:
        subset = seen[cls] > 0  # a nested config already covered in full: one field here, in turn
        seen[cls] += 1
        fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
        if subset:
            fields = [fields[seen[cls] % len(fields)]]
        for f in fields:
            default = getattr(obj, f.name)
            if dataclasses.is_dataclass(default):
                walk(entry, base, prefix + f.name + ".", type(default), set(), default)
                continue
            key = prefix + f.name
            plus = "+" if prefix == "backbone." and f.name not in yaml_keys(base[-1]) else ""  # a key its YAML lacks
            for value, needles in bad_values(f, default, len(key)):
                cases.append(K("5 fields", entry, [*base, f"{plus}{key}={value}"], key,
                               *[key + n if n[0] == "=" else n for n in needles]))

    for entry, base, prefix, cls, skip in groups:
        obj = cls(name=base[-1].split("=")[1]) if prefix == "method." else cls()
        walk(entry, base, prefix, cls, skip, obj)
    return cases


def all_cases() -> list[Case]:
    cases, names = [], set()
    for case in [*path_cases(), *field_cases(), *api_cases(), *cli_cases()]:
        if case.name not in names:
            names.add(case.name)
            cases.append(case)
    return cases


# --- fixtures: earlier results and killed runs, built once ------------------------------------------------------------


def _env_vars(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def run_process(argv: list[str], env: dict[str, str], timeout: float = TIMEOUT) -> tuple[int | None, str]:
    """(exit status or None on timeout, stderr) of ``python argv``; on timeout its whole process group is killed."""
    p = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env_vars(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, errors="replace", start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, err + ("\n" + out if "AUDIT_RESULT" in out else "")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, err + f"\n[killed after {timeout:.0f} s]"


def _killed_run(name: str) -> None:
    """Start run ``name`` and SIGKILL it once its first checkpoint is complete (the folder a kill leaves)."""
    argv, wait_for = KILLS[name]
    out = KILLED / name
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.Popen([sys.executable, *argv, f"out={out}", "progress=false"], cwd=ROOT, env=_env_vars({}),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.time()
    while not (out / wait_for).exists():
        if p.poll() is not None or time.time() - t0 > 600:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            raise SystemExit(f"fixture {name}: no {wait_for} ({p.stderr.read().decode()[-2000:] if p.stderr else ''})")
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    for extra in ("checkpoint.new", "checkpoint.old"):  # a second checkpoint the kill interrupted
        shutil.rmtree(out / extra, ignore_errors=True)
    (KILLED / f"{name}.done").touch()


def build_fixtures() -> None:
    """Earlier results (a dataset, an encoder, finished pretraining and agent runs, a world model) and killed runs."""
    import torch

    torch.set_num_threads(1)
    steps = [
        (DATA / "meta.json", lambda: run_process(["envs/collect.py", "episodes=2", "image_size=32", f"out={DATA}",
                                                  "progress=false"], {}, 600)),
        (ENC / "encoder.json", lambda: _save_encoder()),
        (WM / "model.json", lambda: _save_world_model()),
        (PRE_DONE / "results.json", lambda: _pretrain(PRE_DONE)),
        (SAC_DONE / "results.json", lambda: run_process(["agents/train.py", f"encoder={ENC}", "steps=160", "ckpt_every=80", *SAC,
                                                         f"out={SAC_DONE}", "progress=false"], {}, 600)),
        (BIG_JSON, lambda: BIG_JSON.write_text('{"x": "' + "a" * ((64 << 20) - 8) + '"}')),
        *[(KILLED / f"{name}.done", lambda name=name: _killed_run(name)) for name in KILLS],
    ]
    for done, build in steps:
        if not done.exists():
            print(f"fixture: building {done.relative_to(AUDIT)}", flush=True)
            done.parent.mkdir(parents=True, exist_ok=True)
            result = build()
            if not done.exists():
                raise SystemExit(f"fixture {done} was not built: {result}")
    (SAVED / "pretrain_done" / ".lock").unlink(missing_ok=True)


def _save_encoder() -> None:
    import torch

    from ssl4rl.encoders import build_encoder, save_encoder

    torch.manual_seed(0)
    save_encoder(build_encoder("vit", **TINY_VIT), ENC, method="test")


def _save_world_model() -> None:
    from ssl4rl.worldmodels import encoder_spec, save_world_model
    from ssl4rl.worldmodels.cswm import CSWM, CSWMEncoder

    enc = CSWMEncoder(image_size=50, num_slots=5, embedding_dim=2, hidden_dim=16)
    save_world_model(CSWM(encoder_spec(enc), {"num_slots": 5, "embedding_dim": 2, "hidden_dim": 16}), WM)


# --- running and classifying one case ---------------------------------------------------------------------------------


def run_config(entry: str, argv: list[str]) -> tuple[int, str]:
    """What the entry point does before anything runs, in-process: (exit status, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    from ssl4rl.cli import _guard, prevalidate

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        try:
            _guard(lambda: prevalidate(CONFIGS, entry, argv))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:
            buf.write(traceback.format_exc())
            code = 1
    GlobalHydra.instance().clear()
    return code, buf.getvalue()


def api_child(name: str, tmp: Path) -> None:
    """Run API case ``name`` in this (child) process; print what it raised on one AUDIT_RESULT line."""
    case = next(c for c in all_cases() if c.name == name)
    try:
        case.make(tmp)
        res: dict[str, Any] = {"exc": None}
    except Exception as e:
        from ssl4rl.errors import UserError

        res = {"exc": type(e).__name__, "user": isinstance(e, UserError) and isinstance(e, ValueError), "msg": str(e),
               "where": traceback.format_exc().strip().splitlines()[-3:]}
    print("AUDIT_RESULT " + json.dumps(res), flush=True)


def classify(case: Case, rc: int | None, err: str) -> tuple[str, str]:
    """(outcome, reason) of a finished case from its exit status and stderr (for API cases: what it raised)."""
    if rc is None or rc < 0:
        return "killed", f"exit {rc}"
    if case.kind == "api":
        line = next((ln for ln in err.splitlines() if ln.startswith("AUDIT_RESULT ")), None)
        if line is None:
            return "traceback", f"no result (exit {rc})"
        res = json.loads(line[13:])
        if res["exc"] is None:
            return ("ok", "") if case.valid else ("accepted", "returned normally")
        msg = res["msg"]
        if not res["user"]:
            return "traceback", f"{res['exc']}: {msg[:200]}"
        missing = [n for n in case.needles if n not in msg]
        if case.valid or "\n" in msg or missing:
            return ("refused_valid" if case.valid else "misleading"), f"{len(msg.splitlines())} lines, missing {missing}: {msg[:200]}"
        return "refused", ""
    if "Traceback" in err:
        return "traceback", tail(err)
    if case.valid:
        return ("ok", "") if rc == 0 else ("refused_valid", f"exit {rc}: {tail(err)}")
    if rc == 0:
        return "accepted", "exit 0"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    missing = [n for n in ("error:", *case.needles) if n not in err]
    if rc != 2 or not 1 <= len(lines) <= 3 or missing:
        return "misleading", f"exit {rc}, {len(lines)} lines, missing {missing}"
    return "refused", ""


def tail(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("AUDIT_RESULT")]
    return lines[-1][:300] if lines else ""


def run_case(case: Case) -> dict[str, Any]:
    """Run one case in a fresh folder; check the marker and the checksums of earlier results and given files."""
    tmp = CASES / "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case.name)[:150]
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    saved_before = checksums(SAVED)
    t0 = time.time()
    problem, cmd = None, ""
    if case.kind == "config":
        entry, argv = case.make
        cmd = f"python {SCRIPTS[entry]} " + shlex.join(argv)
        rc, err = run_config(entry, argv)
    elif case.kind == "api":
        cmd = f"python benchmarks/hostile_audit.py --only {shlex.quote(case.name)}"
        rc, err = run_process([__file__, "--api", case.name, "--tmp", str(tmp)], {})
    else:
        argv = case.make(tmp)
        argv = [*argv, "progress=false"] if argv[0] != "-m" and not case.runner else argv
        cmd = " ".join(f"{k}={v}" for k, v in case.env.items()) + " python " + shlex.join(argv)
        given = checksums(tmp)
        if case.runner:
            rc, err, problem = case.runner(case, tmp)
        else:
            rc, err = run_process(argv, case.env)
        after = checksums(tmp)
        if not case.valid and any(after.get(k) != v for k, v in given.items()):
            problem = "changed a file it was given: " + ", ".join(k for k, v in given.items() if after.get(k) != v)[:200]
    outcome, reason = classify(case, rc, err)
    if (tmp / "UNPICKLED").exists():
        outcome, reason = "pickle_ran", "the payload's marker file appeared"
    elif checksums(SAVED) != saved_before:
        outcome, reason = "changed", "earlier results under fixtures/saved changed"
    elif problem or (case.check and outcome in ("ok", "refused") and (problem := case.check(tmp))):
        outcome, reason = ("refused_valid" if case.valid else "changed" if "changed" in problem else "accepted"), problem
    if outcome in ("ok", "refused"):
        shutil.rmtree(tmp, ignore_errors=True)
    return {"cat": case.cat, "name": case.name, "outcome": outcome, "reason": reason, "rc": rc, "last_line": tail(err),
            "seconds": round(time.time() - t0, 2), "cmd": cmd.strip()}


def append(record: dict[str, Any]) -> None:
    """One JSON line, appended in one write."""
    fd = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, ensure_ascii=False) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load_results() -> dict[str, dict[str, Any]]:
    if not RESULTS.exists():
        return {}
    records = [json.loads(ln) for ln in RESULTS.read_text().splitlines() if ln.strip()]
    return {r["name"]: r for r in records}


def summary(cases: list[Case], results: dict[str, dict[str, Any]]) -> None:
    """Counts per category and outcome, then every case that is neither refused nor ok."""
    rows = [results[c.name] for c in cases if c.name in results]
    outcomes = ["refused", "ok", "misleading", "traceback", "accepted", "killed", "pickle_ran", "changed", "refused_valid"]
    cats = sorted({r["cat"] for r in rows})
    count = Counter((r["cat"], r["outcome"]) for r in rows)
    print(f"\n{'category':12}" + "".join(f"{o:>14}" for o in outcomes) + f"{'total':>8}")
    for cat in [*cats, "all"]:
        n = [sum(count[(c, o)] for c in cats) if cat == "all" else count[(cat, o)] for o in outcomes]
        print(f"{cat:12}" + "".join(f"{x:>14}" for x in n) + f"{sum(n):>8}")
    bad = [r for r in rows if r["outcome"] not in ("refused", "ok")]
    print(f"\n{len(rows)} of {len(cases)} cases recorded, {sum(r['seconds'] for r in rows) / 60:.1f} min of case time; "
          f"{len(bad)} not refused/ok (rerun: python benchmarks/hostile_audit.py --only '<name>'):")
    for r in bad:
        print(f"- [{r['cat']}] {r['outcome']}: {r['name']}\n    {r['reason'][:300]}\n    last line: {r['last_line'][:300]}"
              f"\n    $ {r['cmd'][:400]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--fresh", action="store_true", help="delete earlier results and fixtures, start over")
    p.add_argument("--only", help="(re)run only the cases whose name contains this")
    p.add_argument("--api", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.api:
        import ssl4rl

        return api_child(a.api, Path(a.tmp))
    if a.fresh:
        shutil.rmtree(AUDIT, ignore_errors=True)
    AUDIT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    import ssl4rl  # noqa: F401

    build_fixtures()
    cases = all_cases()
    results = load_results()
    todo = [c for c in cases if (a.only in c.name if a.only else c.name not in results)]
    print(f"{len(cases)} cases, {len(cases) - len(todo) if not a.only else len(results)} recorded, {len(todo)} to run", flush=True)
    for i, case in enumerate(todo, 1):
        record = run_case(case)
        append(record)
        results[case.name] = record
        print(f"[{i}/{len(todo)}] {case.cat:10} {record['outcome']:13} {record['seconds']:6.1f}s  {case.name}", flush=True)
    summary(cases, results)
    print(f"this invocation: {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
