"""Hostile-input audit: every entry point and the public API against bad values, bad files and OS faults.

    python benchmarks/hostile_audit.py                 # resumes: cases already in results.jsonl are skipped
    python benchmarks/hostile_audit.py --fresh         # start over (fixtures too)
    python benchmarks/hostile_audit.py --only pickle   # rerun the cases whose name contains 'pickle' (repeatable)

Categories: 1 the Python API (into finished runs, bad values), 2 validation on every path (-m sweeps, hydra.*
overrides), 3 sizes (array headers, deep and oversized JSON, huge settings), 4 OS/GL, 5 every declared field
(generated from ``ssl4rl.fields.rule_of``) and the files read through the same declarations, 6 pickle payloads
in every loader, 7 messages; plus valid inputs that must run. Config-only cases run in-process through
``ssl4rl.cli.prevalidate`` (what each entry point does before anything runs); file, OS and run cases are
processes of the entry points; API cases run in a child process. Outcomes: refused | misleading (refused, but
the message lacks the value or file, or spans more than 3 lines) | traceback | accepted | killed | pickle_ran |
changed (earlier results under fixtures/saved, or a file the case was given, changed; appends to a run's
log.txt aside); valid inputs: ok |
refused_valid. One JSON line per case goes to ``runs/hostile_audit/results.jsonl``; a summary ends the run.
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
BIG_JSON = FIX / "big.json"  # just over ssl4rl.utils.MAX_JSON_BYTES (64 MiB), hard-linked where a case needs it
DEEP = "[" * 200_000 + "]" * 200_000
HUGE = {"frames": ("|u1", (10**9, 3, 64, 64))}  # an array header claiming 12 TB
TIMEOUT = 120
SCRIPTS = {"collect": "envs/collect.py", "train": "agents/train.py", "pretrain": "pretrain/run.py",
           "eval": "pretrain/eval.py", "random_init": "pretrain/random_init.py", "plan_goal": "agents/plan_goal.py"}
TINY_VIT = dict(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool="cls")
TINY_PRE = ["method=simclr", "backbone.image_size=32", "backbone.embed_dim=16", "backbone.depth=1", "backbone.num_heads=2",
            "method.batch_size=4", "device=cpu"]
SAC = ["eval_every=0", "eval_episodes=1", "video=false", "agent.learning_starts=5", "agent.batch_size=8",
       "agent.net_arch=[8]", "agent.proj_dim=4", "device=cpu"]
PLANET = ["agents/train.py", "agent=planet", "agent.seed_episodes=1", "agent.updates_per_episode=1", "agent.batch_size=2",
          "agent.seq_len=4", "agent.deter=8", "agent.stoch=4", "agent.hidden=8", "agent.depth=4", "agent.candidates=8",
          "agent.iterations=1", "agent.top_k=2", "agent.horizon=2", "eval_every=0", "eval_episodes=1", "video=false",
          "device=cpu"]
VMC = ["agents/train.py", "agent=worldmodels", "steps=2000", "agent.vae_steps=2", "agent.m_steps=2", "agent.ckpt_updates=1",
       "agent.z_dim=4", "agent.hidden=8", "agent.mixtures=1", "agent.vae_batch=4", "agent.m_batch=2", "agent.seq_len=4",
       "agent.popsize=4", "agent.rollouts=1", "agent.generations=100000", "agent.dream_horizon=5", "agent.dream_eval=1",
       "eval_episodes=1", "video=false", "device=cpu"]
KILLS = {  # runs SIGKILLed once the file named exists (a complete checkpoint): argv without out=, that file
    "sac": (["agents/train.py", f"encoder={ENC}", "steps=2000", "ckpt_every=80", *SAC], "checkpoint/state.pt"),
    "pretrain": (["pretrain/run.py", f"data.path={DATA}", *TINY_PRE, "steps=200", "ckpt_every=1"], "checkpoint.pt"),
    "planet": ([*PLANET, "steps=100000"], "checkpoint/state.pt"),
    "vmc": (VMC, "checkpoint/cma_trained_m.pt"),
    "goal": (["agents/plan_goal.py", f"worldmodel={WM}", "goals=100000", "videos=0", "random_control=false", "device=cpu"],
             "checkpoint.json"),
}
Runner = Callable[["Case", Path], tuple[int | None, str, str | None]]


@dataclasses.dataclass
class Case:
    """One hostile (or, with ``valid``, legitimate) input and what its refusal must mention."""

    cat: str
    name: str
    kind: str  # config (in-process prevalidate) | cli (a process) | api (a child process)
    make: Any  # config: (entry, argv); cli: case folder -> argv after `python`; api: case folder -> anything
    needles: tuple[str, ...] = ()
    valid: bool = False
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    check: Callable[[Path], str | None] | None = None  # a problem with what the run left in the case folder
    runner: Runner | None = None  # instead of one process


def K(cat: str, entry: str, argv: list[str], *needles: str) -> Case:
    return Case(cat, f"{entry}: {' '.join(argv)}", "config", (entry, argv), needles)


def S(cat: str, name: str, make: Callable[[Path], list[str]], *needles: str, **kw: Any) -> Case:
    return Case(cat, name, "cli", make, needles, **kw)


def A(cat: str, name: str, fn: Callable[[Path], Any], *needles: str, valid: bool = False) -> Case:
    return Case(cat, "api: " + name, "api", fn, needles, valid)


# --- crafted files ------------------------------------------------------------------------------------------------------


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


def pickled(t: Path) -> Callable[[Path], None]:
    """Writes a pickle whose loading creates the case's marker ``t/UNPICKLED``."""
    return lambda p: p.write_bytes(pickle.dumps({"step": 1, "payload": Payload(t / "UNPICKLED")}))


def objects(t: Path) -> Callable[[Path], None]:
    """Writes an .npy or .npz whose array holds the payload as a Python object."""
    def write(p: Path) -> None:
        a = np.array([Payload(t / "UNPICKLED")], dtype=object)
        with open(p, "wb") as f:
            if p.suffix == ".npy":
                np.save(f, a, allow_pickle=True)
            else:
                np.savez(f, frames=a)
    return write


def headers(arrays: dict[str, tuple[str, tuple[int, ...]]]) -> Callable[[Path], None]:
    """Writes an .npy (the first array) or .npz of array headers only, claiming the shapes given."""
    def write(p: Path) -> None:
        specs = [{"descr": d, "fortran_order": False, "shape": s} for d, s in arrays.values()]
        if p.suffix == ".npy":
            with open(p, "wb") as f:
                np.lib.format.write_array_header_2_0(f, specs[0])
            return
        with zipfile.ZipFile(p, "w") as z:
            for name, spec in zip(arrays, specs, strict=True):
                with z.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array_header_2_0(f, spec)
    return write


def put(p: Path, content: Any) -> Path:
    """Make file ``p``: text, bytes, a Path (hard link, or symlink across devices), a writer p -> None, or None
    (delete it)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    p.unlink(missing_ok=True)
    if isinstance(content, Path):
        try:
            os.link(content, p)
        except OSError:
            p.symlink_to(content)
    elif callable(content):
        content(p)
    elif content is not None:
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def copy(src: Path, dst: Path, files: dict[str, Any] | None = None) -> Path:
    """A copy of folder ``src`` with ``files`` (relative path -> content, as ``put`` takes) replaced."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    for name, content in (files or {}).items():
        put(dst / name, content)
    return dst


def encoder_with(dst: Path, change: Callable[[dict], Any]) -> Path:
    """A copy of the saved encoder whose encoder.json ``change`` edited."""
    meta = json.loads((ENC / "encoder.json").read_text())
    change(meta)
    return copy(ENC, dst, {"encoder.json": json.dumps(meta)})


def timm_reading(t: Path) -> Callable[[dict], Any]:
    """encoder.json edit: a timm model whose model_kwargs would load a pickled checkpoint."""
    def change(meta: dict) -> None:
        evil = put(t / "evil.pth", pickled(t))
        meta.update(arch="timm", kwargs={"image_size": 32, "mean": meta["kwargs"]["mean"], "std": meta["kwargs"]["std"],
                                         "model_name": "resnet18", "model_kwargs": {"checkpoint_path": str(evil)}})
    return change


def episodes(t: Path, writer: Callable[[Path], None]) -> Path:
    """A copy of the saved dataset whose one episode file ``writer`` made."""
    return copy(DATA, t / "d", {"episode_000000.npz": writer, "episode_000001.npz": None})


def cifar_py(t: Path) -> Path:
    """A CIFAR-10 'python version' folder whose batches are pickle payloads."""
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"):
        put(t / "cifar" / "cifar-10-batches-py" / name, pickled(t))
    return t / "cifar"


def resume(name: str, t: Path, files: dict[str, Any] | None = None) -> list[str]:
    """argv rerunning killed run ``name`` on a copy of its folder with ``files`` replaced."""
    return [*KILLS[name][0], f"out={copy(KILLED / name, t / 'run', files)}"]


def vmc_at(stage_file: str, done: list[str], t: Path) -> dict[str, Any]:
    """Files of a killed V-M-C run: ``stage_file`` a pickle payload, the stages before it marked done."""
    return {"checkpoint/progress.json": json.dumps({"done": done, "seconds": {}, "resumed_at": []}),
            f"checkpoint/{stage_file}": pickled(t)}


# --- the Python API (each case in a child process) -------------------------------------------------------------------


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
    from ssl4rl.config import AgentConfig, TrainConfig
    from ssl4rl.fields import build

    # build: an unknown agent key is one line (not a TypeError); train_agent validates the values
    agent = build(AgentConfig, {"learning_starts": 5, "batch_size": 8, "net_arch": [8], "proj_dim": 4,
                                **kw.pop("agent", {})}, "agent.")
    return train_agent(TrainConfig(out=str(out), agent=agent, **{
        "env": "dmc_cartpole", "encoder": str(ENC), "steps": 160, "eval_every": 0, "ckpt_every": 80, "eval_episodes": 1,
        "video": False, "device": "cpu", "progress": False, **kw}))


def _collect(out: Path, **kw: Any) -> Any:
    from ssl4rl.data import collect

    return collect(out=out, **{"env": "dmc_cartpole", "episodes": 1, "image_size": 16, "progress": False, "episode_steps": 5,
                               **kw})


def _evaluate(out: Path | None, **kw: Any) -> Any:
    from ssl4rl.eval.harness import evaluate

    return evaluate(out=out, **{"encoders": [str(ENC)], "data": str(DATA), "device": "cpu", "progress": False, "knn_k": (5,),
                                "label_fractions": (), "batch_size": 32, **kw})


def _env(name: str = "dmc_cartpole", **kw: Any) -> None:
    from ssl4rl.envs import make_env

    env = make_env(name, **kw)
    env.reset(seed=0)
    env.close()


def _call(module: str, fn: str, *args: Any) -> Any:
    import importlib

    return getattr(importlib.import_module(module), fn)(*args)


def api_cases() -> list[Case]:
    c, nan, p = "1 api", float("nan"), lambda t: t / "p"
    enc_m, ep_m = "ssl4rl.encoders", "ssl4rl.data"
    return [
        A(c, "pretrain(cfg, out) into a finished run, same settings", lambda t: _pretrain(PRE_DONE), "finished run"),
        A(c, "pretrain(cfg, out) into a finished run, other lr", lambda t: _pretrain(PRE_DONE, lr=0.01), "method.lr"),
        A(c, "train_agent into a finished agent run", lambda t: _train(SAC_DONE), "already holds"),
        A(c, "train_agent into a finished pretraining run", lambda t: _train(PRE_DONE), "already holds"),
        A(c, "collect into a finished dataset", lambda t: _collect(DATA), "already holds"),
        A(c, "evaluate into a finished run", lambda t: _evaluate(PRE_DONE), "already holds"),
        A(c, "pretrain lr=nan", lambda t: _pretrain(p(t), lr=nan), "method.lr=nan"),
        A(c, "pretrain temperature=0", lambda t: _pretrain(p(t), temperature=0.0), "method.temperature=0"),
        A(c, "pretrain batch_size=-1", lambda t: _pretrain(p(t), batch_size=-1), "method.batch_size=-1"),
        A(c, "pretrain batch_size='4'", lambda t: _pretrain(p(t), batch_size="4"), "method.batch_size='4'"),
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
        A(c, "load_encoder missing folder", lambda t: _call(enc_m, "load_encoder", t / "nope"), "nope"),
        A(c, "load_encoder of a dataset", lambda t: _call(enc_m, "load_encoder", DATA), "encoder.json"),
        A(c, "random_like of a dataset", lambda t: _call(enc_m, "random_like", DATA), "encoder.json"),
        A(c, "load_world_model of an encoder", lambda t: _call("ssl4rl.worldmodels", "load_world_model", ENC), "model.json"),
        A(c, "load_episode missing file", lambda t: _call(ep_m, "load_episode", t / "nope.npz"), "nope.npz"),
        *[A(c, f"make_env {name}", lambda t, kw=kw: _env(**kw), needle) for name, kw, needle in (
            ("unknown env", {"name": "dmc_nope"}, "dmc_nope"), ("image_size=0", {"image_size": 0}, "image_size=0"),
            ("image_size=5000", {"image_size": 5000}, "image_size=5000"), ("image_size='64'", {"image_size": "64"}, "image_size"),
            ("camera=9", {"camera": 9}, "camera=9"), ("frame_stack=0", {"frame_stack": 0}, "frame_stack=0"),
            ("unknown option", {"colour": "red"}, "colour"), ("obs_type=nope", {"obs_type": "nope"}, "nope"),
            ("seed=-1", {"seed": -1}, "seed=-1"),
            ("shapes2d image_size=52", {"name": "shapes2d", "image_size": 52}, "image_size=52"))],
        A("6 pickle", "load_encoder encoder.safetensors pickle", lambda t: _call(enc_m, "load_encoder", copy(
            ENC, t / "x", {"encoder.safetensors": pickled(t)})), "encoder.safetensors"),
        A("6 pickle", "load_episode npz objects", lambda t: _call(ep_m, "load_episode", put(t / "e.npz", objects(t))), "e.npz"),
        A("6 pickle", "load_cifar10 python version", lambda t: _call("ssl4rl.data.images", "load_cifar10", cifar_py(t)),
          "python version"),
        A("valid", "make_env + reset", lambda t: _env(image_size=32), valid=True),
        A("valid", "load_encoder", lambda t: _call(enc_m, "load_encoder", ENC), valid=True),
    ]


# --- command lines: paths, sizes, OS, pickles, messages, valid runs --------------------------------------------------


def _lock_runner(case: Case, t: Path) -> tuple[int | None, str, str | None]:
    """Start the run in the background, wait until out/.lock names it, start the same run: the second is refused."""
    argv = quiet(case.make(t))
    out = Path(next(a for a in argv if a.startswith("out="))[4:])
    first = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env_vars({}), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while not ((out / ".lock").exists() and (out / ".lock").read_text().strip() == str(first.pid)):
            if first.poll() is not None:
                return 1, first.communicate()[1], "the first run ended before it held out="
            time.sleep(0.05)
        rc, err = run_process(argv, {})
    finally:
        _, first_err = first.communicate(timeout=600)
    problem = None if first.returncode == 0 else f"the first run failed (exit {first.returncode}): {tail(first_err)}"
    return rc, err.replace(f"pid {first.pid}", "pid <FIRST>"), problem


def _mount_runner(options: str) -> Runner:
    """Run the case with out= under ``case folder/mnt``, a small tmpfs mounted with ``options`` (unmounted after)."""
    def runner(case: Case, t: Path) -> tuple[int | None, str, str | None]:
        (t / "mnt").mkdir()
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(t / "mnt")], capture_output=True, text=True)
        if m.returncode:
            return 0, "", f"cannot mount a tmpfs here: {m.stderr.strip()}"
        try:
            return (*run_process(quiet(case.make(t)), {}), None)
        finally:
            subprocess.run(["umount", str(t / "mnt")], capture_output=True)
    return runner


def cli_cases() -> list[Case]:
    def pre(t: Path, *a: str, data: Any = DATA) -> list[str]:
        return ["pretrain/run.py", f"data.path={data}", *TINY_PRE, "steps=2", *a, f"out={t / 'p'}"]

    def ev(t: Path, *a: str, enc: Any = ENC, data: Any = DATA) -> list[str]:
        return ["pretrain/eval.py", f"encoder={enc}", f"data.path={data}", "knn_k=[5]", "label_fractions=[]", "device=cpu", *a,
                f"out={t / 'e'}"]

    def col(t: Path, *a: str) -> list[str]:
        return ["envs/collect.py", "episodes=1", "episode_steps=5", "image_size=16", *a, f"out={t / 'c'}"]

    def col64(t: Path) -> list[str]:  # enough to fill 64 KiB
        return ["envs/collect.py", "episodes=2", "image_size=64", f"out={t / 'c'}"]

    def sac(t: Path, *a: str, enc: Any = ENC) -> list[str]:
        return ["agents/train.py", f"encoder={enc}", "steps=160", "ckpt_every=80", *SAC, *a, f"out={t / 't'}"]

    def goal(t: Path, *a: str, wm: Any = WM) -> list[str]:
        return ["agents/plan_goal.py", f"worldmodel={wm}", "goals=1", "videos=0", *a, f"out={t / 'g'}"]

    def rnd(t: Path, like: Any) -> list[str]:
        return ["pretrain/random_init.py", f"like={like}", f"out={t / 'r'}"]

    def report(t: Path, files: dict[str, Any] | None = None) -> list[str]:
        return ["-m", "ssl4rl.report", str(copy(SAC_DONE, t / "r", files))]

    def demo(t: Path, *a: str) -> list[str]:
        return ["-m", "ssl4rl.demo", "--out", str(t / "d"), *a]

    def has(*names: str) -> Callable[[Path], str | None]:
        return lambda t: next((f"{n} missing" for n in names if not (t / n).exists()), None)

    def never(name: str) -> Callable[[Path], str | None]:
        return lambda t: f"a job ran: {name} exists" if (t / name).exists() else None

    sweep = lambda t: f"hydra.sweep.dir={t / 'sweep'}"
    out_at = lambda mk, out: lambda t: [*mk(t)[:-1], f"out={out(t)}"]
    replay = {"order": ("<i8", (10,)), "pos": ("<i8", ()), "full": ("|b1", ()), "observations": ("<f4", (10**9, 3, 84, 84))}
    c2, c3, c4, c5, c6, c7, v = "2 paths", "3 sizes", "4 os", "5 fields", "6 pickle", "7 messages", "valid"
    entries = {"collect": col, "pretrain": pre, "train": sac, "eval": ev, "random_init": lambda t: rnd(t, ENC), "plan_goal": goal}
    return [
        # 2: every path validates: real -m sweeps (no job may run), hydra.* overrides, another config dir
        S(c2, "collect -m episodes=1,0", lambda t: [*col(t, "-m", "episodes=1,0"), sweep(t)], "episodes=0", check=never("c")),
        S(c2, "train -m seed=0,-1", lambda t: [*sac(t, "-m", "seed=0,-1"), sweep(t)], "seed=-1", check=never("t")),
        S(c2, "pretrain -m method.lr=0.1,nan", lambda t: [*pre(t, "-m", "method.lr=0.1,nan"), sweep(t)], "nan", check=never("p")),
        S(c2, "collect hydra.mode=MULTIRUN episodes=1,0", lambda t: [*col(t, "hydra.mode=MULTIRUN", "episodes=1,0"), sweep(t)],
          "episodes", check=never("c")),
        S(c2, "pretrain hydra.run.dir + method.lr=nan", lambda t: pre(t, f"hydra.run.dir={t / 'h'}", "method.lr=nan"), "nan"),
        S(c2, "collect --config-dir + seed=-1", lambda t: [*col(t, "seed=-1"), f"--config-dir={t}"], "seed=-1"),
        S(c2, "train +agent.extra=1", lambda t: sac(t, "+agent.extra=1"), "agent.extra"),
        S(c2, "collect out= empty", out_at(col, lambda t: ""), "out="),
        # 3: sizes bounded before allocation: array headers, deep and oversized JSON, huge settings
        S(c3, "train resume: replay.npz claims 10^9 frames", lambda t: resume("sac", t, {
            "checkpoint/replay.npz": headers(replay)}), "replay.npz"),
        S(c3, "planet resume: replay.npz claims 10^9 frames", lambda t: resume("planet", t, {
            "checkpoint/replay.npz": headers(HUGE)}), "replay.npz"),
        S(c3, "plan_goal goal .npy claims 3 TB", lambda t: goal(t, f"goal_image={put(t / 'goal.npy', headers(HUGE))}"),
          "goal.npy"),
        S(c3, "pretrain episode claims 10^9 frames", lambda t: pre(t, data=episodes(t, headers(HUGE))), "episode_000000.npz"),
        S(c3, "eval episode claims 10^9 frames", lambda t: ev(t, data=episodes(t, headers(HUGE))), "episode_000000.npz"),
        *[case for size, text in (("deep", DEEP), ("64 MiB", BIG_JSON)) for case in (
            S(c3, f"eval {size} encoder.json", lambda t, x=text: ev(t, enc=copy(ENC, t / "x", {"encoder.json": x})),
              "encoder.json"),
            S(c3, f"pretrain {size} meta.json", lambda t, x=text: pre(t, data=copy(DATA, t / "d", {"meta.json": x})),
              "meta.json"),
            S(c3, f"report {size} results.json", lambda t, x=text: report(t, {"results.json": x}), "results.json"),
            S(c3, f"plan_goal {size} model.json", lambda t, x=text: goal(t, wm=copy(WM, t / "w", {"model.json": x})),
              "model.json"),
            S(c3, f"plan_goal resume: {size} checkpoint.json", lambda t, x=text: resume("goal", t, {"checkpoint.json": x}),
              "checkpoint.json"))],
        S(c3, "train deep encoder.json", lambda t: sac(t, enc=copy(ENC, t / "x", {"encoder.json": DEEP})), "encoder.json"),
        S(c3, "random_init deep encoder.json", lambda t: rnd(t, copy(ENC, t / "x", {"encoder.json": DEEP})), "encoder.json"),
        S(c3, "eval deep meta.json", lambda t: ev(t, data=copy(DATA, t / "d", {"meta.json": DEEP})), "meta.json"),
        S(c3, "worldmodels resume: deep progress.json", lambda t: resume("vmc", t, {"checkpoint/progress.json": DEEP}),
          "progress.json"),
        S(c3, "train resume: deep config.yaml", lambda t: resume("sac", t, {"config.yaml": "[" * 200_000}), "config.yaml"),
        S(c3, "eval encoder.json -> /dev/zero", lambda t: ev(t, enc=copy(ENC, t / "x", {"encoder.json": Path("/dev/zero")})),
          "encoder.json"),
        S(c3, "train agent.candidates=1000000000", lambda t: [*PLANET, "steps=2000", "agent.candidates=1000000000",
                                                              f"out={t / 't'}"], "candidates"),
        S(c3, "plan_goal candidates=1000000000", lambda t: goal(t, "candidates=1000000000"), "candidates"),
        S(c3, "eval pixels_size=100000", lambda t: ev(t, "pixels_size=100000"), "pixels_size=100000"),
        S(c3, "train agent.buffer_size=10^9 steps=10^9", lambda t: sac(t, "agent.buffer_size=1000000000", "steps=1000000000"),
          "agent.buffer_size"),
        S(c3, "train cnn 1024 px frame_stack=16", lambda t: ["agents/train.py", "encoder=cnn", "image_size=1024",
                                                             "frame_stack=16", *SAC, f"out={t / 't'}"], "buffer_size"),
        S(c3, "pretrain backbone.embed_dim=8192 backbone.depth=64", lambda t: pre(
            t, "backbone.embed_dim=8192", "backbone.depth=64", "backbone.num_heads=16"), "parameters"),
        S(c3, "pretrain method.batch_size=1000000", lambda t: pre(t, "method.batch_size=1000000"), "1000000"),
        S(c3, "planet agent.seq_len=10000", lambda t: [*PLANET, "steps=2000", "agent.seq_len=10000", f"out={t / 't'}"],
          "seq_len"),
        # 4: GL backends, out= that cannot be a run folder, seeds, two runs on one out=, read-only and full disks
        *[S(c4, f"{e} MUJOCO_GL={gl}", mk, f"MUJOCO_GL={gl}", *extra, env={"MUJOCO_GL": gl}) for e, mk, gl, extra in (
            ("collect", col, "glx", ("DISPLAY",)), ("collect", col, "eggl", ()), ("collect", col, "osmesa", ("libOSMesa",)),
            ("collect", col, "disabled", ()), ("train", sac, "glx", ("DISPLAY",)), ("demo", demo, "eggl", ()))],
        *[S(c4, f"{e} out= a file", out_at(mk, lambda t: put(t / "afile", "x")), "is a file") for e, mk in entries.items()],
        S(c4, "collect out=/dev/null", out_at(col, lambda t: "/dev/null"), "/dev/null"),
        S(c4, "collect out= under /proc", out_at(col, lambda t: "/proc/hostile_audit/run"), "/proc/hostile_audit"),
        S(c4, "pretrain out= under /proc", out_at(pre, lambda t: "/proc/hostile_audit/run"), "/proc/hostile_audit"),
        S(c4, "train out=/proc/self", out_at(sac, lambda t: "/proc/self"), "/proc/self"),
        *[S(c4, f"{e} seed={s}", lambda t, mk=mk, s=s: mk(t, f"seed={s}"), f"seed={s}")
          for e, mk, s in (("collect", col, -1), ("collect", col, 2**32), ("train", sac, 2**32), ("pretrain", pre, -1))],
        S(c4, "collect: two runs on one out=", lambda t: ["envs/collect.py", "episodes=50", "image_size=16", f"out={t / 'c'}"],
          "in use", "pid <FIRST>", runner=_lock_runner),
        S(c4, "pretrain: two runs on one out=", lambda t: pre(t, "steps=3000"), "in use", "pid <FIRST>", runner=_lock_runner),
        *[S(c4, f"{e} out= on a {disk} disk", out_at(mk, lambda t: t / "mnt/run"), needle, runner=_mount_runner(options))
          for e, mk, disk, needle, options in (("collect", col64, "read-only", "read-only", "ro,size=64k"),
                                               ("collect", col64, "full", "no space left", "size=64k"),
                                               ("pretrain", pre, "full", "no space left", "size=16k"))],
        # 5: files read through the same declarations
        S(c5, "eval encoder.json without normalization", lambda t: ev(t, enc=encoder_with(t / "x", lambda m: m.pop(
            "normalization"))), "normalization"),
        S(c5, "train encoder.json without normalization", lambda t: sac(t, enc=encoder_with(t / "x", lambda m: m.pop(
            "normalization"))), "normalization"),
        S(c5, "eval meta.json a list", lambda t: ev(t, data=copy(DATA, t / "d", {"meta.json": "[]"})), "meta.json"),
        S(c5, "pretrain meta.json a list", lambda t: pre(t, data=copy(DATA, t / "d", {"meta.json": "[1, 2]"})), "meta.json"),
        S(c5, "eval encoder.json timm checkpoint_path", lambda t: ev(t, enc=encoder_with(t / "x", timm_reading(t))),
          "checkpoint_path"),
        S(c5, "random_init encoder.json timm checkpoint_path", lambda t: rnd(t, encoder_with(t / "x", timm_reading(t))),
          "checkpoint_path"),
        S(c5, "train encoder.json timm checkpoint_path", lambda t: sac(t, enc=encoder_with(t / "x", timm_reading(t))),
          "checkpoint_path"),
        S(c5, "eval encoder.json kwargs.embed_dim=-4", lambda t: ev(t, enc=encoder_with(t / "x", lambda m: m["kwargs"].update(
            embed_dim=-4))), "kwargs.embed_dim=-4"),
        S(c5, "eval encoder.json std of 0", lambda t: ev(t, enc=encoder_with(t / "x", lambda m: m["normalization"].update(
            std=[0.25, 0.0, 0.25]))), "normalization.std"),
        S(c5, "eval encoder.json huge model", lambda t: ev(t, enc=encoder_with(t / "x", lambda m: m["kwargs"].update(
            embed_dim=8192, depth=64, num_heads=16))), "parameters"),
        # 6: pickle payloads in every loader (the marker must never appear)
        S(c6, "train resume: state.pt pickle", lambda t: resume("sac", t, {"checkpoint/state.pt": pickled(t)}), "state.pt"),
        S(c6, "train resume: replay.npz objects", lambda t: resume("sac", t, {"checkpoint/replay.npz": objects(t)}),
          "replay.npz"),
        S(c6, "pretrain resume: checkpoint.pt pickle", lambda t: resume("pretrain", t, {"checkpoint.pt": pickled(t)}),
          "checkpoint.pt"),
        S(c6, "planet resume: state.pt pickle", lambda t: resume("planet", t, {"checkpoint/state.pt": pickled(t)}), "state.pt"),
        S(c6, "planet resume: replay.npz objects", lambda t: resume("planet", t, {"checkpoint/replay.npz": objects(t)}),
          "replay.npz"),
        *[S(c6, f"worldmodels resume: {f} pickle", lambda t, f=f, d=d: resume("vmc", t, vmc_at(f, d, t)), f)
          for f, d in (("vae.pt", ["collect"]), ("latents.pt", ["collect", "v", "encode"]),
                       ("mdnrnn.pt", ["collect", "v", "encode"]), ("cma_trained_m.pt", ["collect", "v", "encode", "m"]))],
        S(c6, "eval encoder.safetensors pickle", lambda t: ev(t, enc=copy(ENC, t / "x", {"encoder.safetensors": pickled(t)})),
          "encoder.safetensors"),
        S(c6, "train encoder.safetensors pickle", lambda t: sac(t, enc=copy(ENC, t / "x", {"encoder.safetensors": pickled(t)})),
          "encoder.safetensors"),
        S(c6, "pretrain episode npz objects", lambda t: pre(t, data=episodes(t, objects(t))), "episode_000000.npz"),
        S(c6, "eval episode npz objects", lambda t: ev(t, data=episodes(t, objects(t))), "episode_000000.npz"),
        S(c6, "plan_goal model.safetensors pickle", lambda t: goal(t, wm=copy(WM, t / "w", {"model.safetensors": pickled(t)})),
          "model.safetensors"),
        S(c6, "plan_goal goal .npy objects", lambda t: goal(t, f"goal_image={put(t / 'goal.npy', objects(t))}"), "goal.npy"),
        # 7: messages
        S(c7, "pretrain CIFAR-10 python version", lambda t: pre(t, "data.kind=cifar10", data=cifar_py(t)), "python version"),
        S(c7, "eval CIFAR-10 python version", lambda t: ["pretrain/eval.py", f"encoder={ENC}", f"data.path={cifar_py(t)}",
                                                         "data.kind=cifar10", f"out={t / 'e'}"], "python version"),
        S(c7, "collect unquoted non-ASCII out=", out_at(col, lambda t: t / "dé"), "quote"),
        S(c7, "train unquoted non-ASCII out=", out_at(sac, lambda t: t / "ü"), "quote"),
        *[S(c7, f"demo {' '.join(a)}", lambda t, a=a: demo(t, *a), needle) for a, needle in (
            (("--method", "cswm"), "--method cswm"), (("--method", "rotaton"), "rotaton"), (("--seeds", "0"), "--seeds 0"),
            (("--env-steps", "lots"), "lots"))],
        S(c7, "demo --method cswm without --out", lambda t: ["-m", "ssl4rl.demo", "--method", "cswm"], "--out"),
        S(c7, "demo --out exists", lambda t: ["-m", "ssl4rl.demo", "--out", str(SAC_DONE)], "already exists"),
        S(c7, "report missing folder", lambda t: ["-m", "ssl4rl.report", str(t / "nope")], "nope"),
        S(c7, "report malformed results.json", lambda t: report(t, {"results.json": "{oops"}), "results.json"),
        S(c7, "collect env=dmc_nope", lambda t: col(t, "env=dmc_nope"), "dmc_nope"),
        S(c7, "collect out= holds results", out_at(col, lambda t: SAC_DONE), "already holds"),
        S(c7, "train missing encoder folder", lambda t: sac(t, enc="/nonexistent/enc"), "/nonexistent/enc"),
        S(c7, "train planet on shapes2d", lambda t: [*PLANET, "env=shapes2d", f"out={t / 't'}"], "rewards"),
        S(c7, "plan_goal encoder as world model", lambda t: goal(t, wm=ENC), "world model"),
        S(c7, "plan_goal env=dmc_cartpole", lambda t: goal(t, "env=dmc_cartpole"), "dmc_cartpole"),
        S(c7, "train resume with other settings", lambda t: [*resume("sac", t), "agent.gamma=0.9"], "agent.gamma"),
        # valid inputs: each must run (tiny sizes)
        S(v, "collect tiny", col, valid=True, check=has("c/meta.json")),
        S(v, "collect -m sweep of two outs", lambda t: ["envs/collect.py", "-m", f"out={t / 'a'},{t / 'b'}", "episodes=1",
                                                        "episode_steps=5", "image_size=16", sweep(t)], valid=True,
          check=has("a/meta.json", "b/meta.json")),
        S(v, "collect --config-dir between overrides", lambda t: [*col(t, f"--config-dir={t}"), "seed=1"], valid=True,
          check=has("c/meta.json")),
        S(v, "collect hydra.job.chdir=false", lambda t: col(t, "hydra.job.chdir=false", "seed=3"), valid=True),
        S(v, "collect quoted non-ASCII out=", out_at(col, lambda t: f'"{t / "dé"}"'), valid=True, check=has("dé/meta.json")),
        S(v, "collect out= with a space", out_at(col, lambda t: t / "a b"), valid=True, check=has("a b/meta.json")),
        S(v, "collect seed=2**31-1 MUJOCO_GL=egl", lambda t: col(t, "seed=2147483647"), valid=True, env={"MUJOCO_GL": "egl"}),
        S(v, "pretrain tiny", pre, valid=True, check=has("p/encoder/encoder.json")),
        S(v, "pretrain timm drop_path_rate=0.1", lambda t: ["pretrain/run.py", f"data.path={DATA}", "method=simclr",
                                                            "backbone=timm", "backbone.image_size=32", "method.batch_size=4",
                                                            "+backbone.model_kwargs.drop_path_rate=0.1", "steps=1",
                                                            "device=cpu", f"out={t / 'p'}"], valid=True),
        S(v, "pretrain resume of a killed run", lambda t: resume("pretrain", t), valid=True, check=has("run/results.json")),
        S(v, "eval tiny", ev, valid=True, check=has("e/eval.json")),
        S(v, "random_init tiny", lambda t: rnd(t, ENC), valid=True),
        S(v, "random_init never reads a pickled encoder.safetensors", lambda t: rnd(t, copy(ENC, t / "x", {
            "encoder.safetensors": pickled(t)})), valid=True),
        S(v, "train resume of a killed run", lambda t: resume("sac", t), valid=True, check=has("run/results.json")),
        S(v, "plan_goal tiny", lambda t: goal(t, "random_control=false"), valid=True, check=has("g/results.json")),
        S(v, "report on a copy of an agent run", report, valid=True, check=has("r/summary.md")),
    ]


# --- config values, in-process: hand-picked paths, then every declared field --------------------------------------------


def path_cases() -> list[Case]:
    c, px, wx = "2 paths", "data.path=x", "worldmodel=x"
    timm = [px, "backbone=timm"]
    return [K(c, *spec) for spec in [
        ("collect", ["-m", "episodes=1,0"], "episodes=0"), ("train", ["--multirun", "seed=0,1,-1"], "seed=-1"),
        ("pretrain", [px, "-m", "method.lr=0.1,nan"], "nan"), ("random_init", ["like=x", "-m", "seed=0,-1"], "seed=-1"),
        ("pretrain", [px, "-m", "method=simclr,mae", "method.batch_size=0"], "method.batch_size=0"),
        ("eval", [px, "-m", "knn_temperature=0.1,0"], "knn_temperature=0"), ("plan_goal", [wx, "-m", "goals=1,0"], "goals=0"),
        ("train", ["-m", "agent=sac,planet", "agent.top_k=5000"], "agent.top_k"),
        ("train", ["-m", "agent=planet", "agent.candidates=10,20", "agent.top_k=15"], "agent.top_k=15"),
        ("collect", ["-m", "env=dmc_cartpole,dmc_nope"], "dmc_nope"), ("collect", ["-m", "episodes=choice(1,-1)"], "episodes=-1"),
        ("train", ["-m", "seed=range(0,3)", "agent.gamma=2"], "agent.gamma=2"),
        ("train", ["hydra.run.dir=.", "agent.learning_rate=nan"], "nan"), ("train", ["hydra.nope=1"], "hydra.nope"),
        ("collect", ["hydra.job.chdir=true", "episodes=0"], "episodes=0"),
        ("collect", ["hydra.job.name=x", "seed=-1"], "seed=-1"),
        ("eval", [px, "hydra.verbose=true", "knn_temperature=0"], "knn_temperature=0"),
        ("pretrain", [px, "hydra.sweep.dir=/tmp/x", "-m", "steps=1,0"], "steps=0"),
        ("train", ["hydra.job.chdir=false", "-m", "seed=0,1", "eval_episodes=0"], "eval_episodes=0"),
        ("collect", ["~seed"], "~seed"), ("collect", ["episodes"], "episodes"), ("collect", ["seed="], "seed"),
        ("train", ["seed=“1”"], "quote"), ("collect", ["episodes=1e3"], "episodes"), ("train", ["agent=td3"], "td3"),
        ("pretrain", [px, "method=mea"], "mea"), ("pretrain", [px, "backbone=nope"], "nope"),
        ("collect", ["episodez=3"], "episodez"), ("pretrain", [], "data.path"), ("eval", [], "data.path"),
        ("random_init", [], "like"), ("plan_goal", [], "worldmodel"),
        ("pretrain", [*timm, "+backbone.model_kwargs.checkpoint_path=/etc/passwd"], "checkpoint_path"),
        ("pretrain", [*timm, "+backbone.model_kwargs.pretrained_cfg_overlay={file:/x}"], "pretrained_cfg_overlay"),
        ("pretrain", [*timm, "+backbone.model_kwargs.drop_path_rate=2.0"], "drop_path_rate=2.0"),
        ("pretrain", [px, "backbone.patch_size=7"], "backbone.patch_size=7"), ("plan_goal", [wx, "top_k=500"], "top_k=500"),
        ("plan_goal", [wx, "goal_steps_min=9", "goal_steps_max=3"], "goal_steps_min=9"),
    ]]


def _show(v: Any) -> str:
    """A value as ssl4rl's validator prints it (and as the override gives it)."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_show(x) for x in v) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def bad_values(f: dataclasses.Field, default: Any, i: int) -> list[tuple[str, str]]:
    """(override value, what the refusal must contain; '=' stands for 'key=') for field ``f``: each declared bound
    broken, a non-finite number or a wrong type, a choice misspelt, a value its own check refuses."""
    from ssl4rl.fields import rule_of

    r, t = rule_of(f), str(f.type)
    t = t[9:-1] if t.startswith("Optional[") else t.replace(" | None", "")
    if t in ("bool", "str"):
        choices = r.choices() if callable(r.choices) else r.choices
        bad = "maybe" if t == "bool" else f"{list(choices)[0]}x" if choices else "zzz_bad" if r.check else None
        return [(bad, bad)] if bad else []
    seq = t.startswith(("list[", "tuple["))
    num = {"int": int, "float": float}.get(t.split("[", 1)[1].split(",")[0].rstrip("]") if seq else t)
    if num is None:
        return []
    bounds = [x for x in (None if r.ge is None else r.ge - 1, r.gt, None if r.le is None else r.le + 1, r.lt) if x is not None]
    values: list[Any] = [[num(b), *list(default or [])[1:]] if seq else num(b) for b in bounds or ([7] if r.check else [])]
    if seq and r.check and default and len(default) in (2, 3):  # e.g. a (lo, hi) pair reversed, 2 of 3 RGB numbers
        values += [x for x in [list(default)[::-1] if len(default) == 2 else list(default)[:2]] if x != list(default)]
    out = [(_show(x), "=" + _show(x)) for x in values]
    if not seq:
        out.append(("abc", "abc") if num is int else ("nan", "=nan") if i % 2 else ("inf", "=inf"))
    return out


def field_cases() -> list[Case]:
    """Every declared field of every entry, agent, method (nested augmentations too) and backbone config."""
    from ssl4rl import config as C
    from ssl4rl.encoders import ARCHS
    from ssl4rl.methods import METHODS, MethodConfig

    commons = {"out", "seed", "device", "progress", "steps"}
    inherited = {f.name for f in dataclasses.fields(MethodConfig)}  # covered once, under pretrain's default method
    groups: list[tuple[str, list[str], str, Any, set[str]]] = [
        ("collect", [], "", C.CollectConfig(), set()), ("train", [], "", C.TrainConfig(), commons),
        ("eval", ["data.path=x"], "", C.EvalConfig(), commons), ("pretrain", ["data.path=x"], "", C.PretrainConfig(), commons),
        ("random_init", ["like=x"], "", C.RandomInitConfig(), commons),
        ("plan_goal", ["worldmodel=x"], "", C.GoalConfig(), commons),
        *[("train", [f"agent={n}"], "agent.", agent, {"name"}) for n, agent in C.agent_configs().items()],
        *[("pretrain", ["data.path=x", f"method={n}"], "method.", cls.Config(name=n), inherited)
          for n, cls in sorted(METHODS.items())],
        *[("pretrain", ["data.path=x", f"backbone={y}"], "backbone.", ARCHS[a].Config(), set())
          for a, y in (("vit", "vit_tiny"), ("conv", "conv"), ("resnet", "resnet18"), ("timm", "timm"))],
    ]
    seen: Counter = Counter()
    cases: list[Case] = []

    def walk(entry: str, base: list[str], prefix: str, obj: Any, skip: set[str]) -> None:
        fields = [f for f in dataclasses.fields(obj) if f.name not in skip]
        seen[type(obj)] += 1
        if seen[type(obj)] > 1:  # a nested config (ViewAug, MultiCrop) already covered in full: one field here, in turn
            fields = [fields[seen[type(obj)] % len(fields)]]
        yaml = (CONFIGS / "backbone" / f"{base[-1][9:]}.yaml").read_text() if prefix == "backbone." else ""
        for f in fields:
            value, key = getattr(obj, f.name), prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(entry, base, key + ".", value, set())
                continue
            plus = "+" if yaml and f"\n{f.name}:" not in yaml else ""  # a backbone key its YAML does not set is added
            for bad, needle in bad_values(f, value, len(key)):
                needle = key + needle if needle[0] == "=" else needle
                cases.append(K("5 fields", entry, [*base, f"{plus}{key}={bad}"], key, needle))

    for entry, base, prefix, obj, skip in groups:
        walk(entry, base, prefix, obj, skip)
    return cases


def all_cases() -> list[Case]:
    """Every case once (the first of two with one name), the fast in-process ones first."""
    unique: dict[str, Case] = {}
    for case in [*path_cases(), *field_cases(), *api_cases(), *cli_cases()]:
        unique.setdefault(case.name, case)
    return list(unique.values())


# --- fixtures and processes ----------------------------------------------------------------------------------------


def _env_vars(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def quiet(argv: list[str]) -> list[str]:
    """An entry point's argv with ``progress=false`` after its last override (Hydra's parser wants a flag such as -m or
    --config-dir before or after all overrides, not between them)."""
    if argv[0] == "-m":
        return argv
    i = max((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), default=len(argv) - 1) + 1
    return [*argv[:i], "progress=false", *argv[i:]]


def run_process(argv: list[str], env: dict[str, str], timeout: float = TIMEOUT) -> tuple[int | None, str]:
    """(exit status, or None after a timeout, and stderr) of ``python argv``; a timeout kills its process group."""
    p = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env_vars(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, errors="replace", start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, err + "".join(ln + "\n" for ln in out.splitlines() if ln.startswith("AUDIT_RESULT "))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return None, p.communicate()[1] + f"\n[killed after {timeout:.0f} s]"


def _killed_run(name: str) -> None:
    """Start run ``name`` and SIGKILL it once its first checkpoint is complete: the folder a kill leaves."""
    argv, wait_for = KILLS[name]
    out = KILLED / name
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.Popen([sys.executable, *quiet(argv), f"out={out}"], cwd=ROOT, env=_env_vars({}), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.time()
    while not (out / wait_for).exists():
        if p.poll() is not None or time.time() - t0 > 600:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            raise SystemExit(f"fixture {name}: no {wait_for}; {tail(p.communicate()[1])}")
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate()
    for extra in ("checkpoint.new", "checkpoint.old"):  # a second checkpoint the kill interrupted
        shutil.rmtree(out / extra, ignore_errors=True)
    (KILLED / f"{name}.done").touch()


def build_fixtures() -> None:
    """Earlier results (a dataset, an encoder, finished pretraining and agent runs, a world model) and killed runs."""
    import torch

    from ssl4rl.encoders import build_encoder, save_encoder
    from ssl4rl.worldmodels import encoder_spec, save_world_model
    from ssl4rl.worldmodels.cswm import CSWM, CSWMEncoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cswm = CSWMEncoder(image_size=50, num_slots=5, embedding_dim=2, hidden_dim=16)
    steps = [
        (DATA / "meta.json", lambda: run_process(["envs/collect.py", "episodes=2", "image_size=32", f"out={DATA}"], {}, 600)),
        (ENC / "encoder.json", lambda: save_encoder(build_encoder("vit", **TINY_VIT), ENC, method="test")),
        (WM / "model.json", lambda: save_world_model(CSWM(encoder_spec(cswm), {"num_slots": 5, "embedding_dim": 2,
                                                                               "hidden_dim": 16}), WM)),
        (PRE_DONE / "results.json", lambda: _pretrain(PRE_DONE)),
        (SAC_DONE / "results.json", lambda: run_process(["agents/train.py", f"encoder={ENC}", "steps=160", "ckpt_every=80", *SAC,
                                                         f"out={SAC_DONE}"], {}, 600)),
        (BIG_JSON, lambda: BIG_JSON.write_text('{"x": "' + "a" * (64 << 20) + '"}')),
        *[(KILLED / f"{name}.done", lambda name=name: _killed_run(name)) for name in KILLS],
    ]
    for done, build in steps:
        if not done.exists():
            print(f"fixture: building {done.relative_to(AUDIT)}", flush=True)
            done.parent.mkdir(parents=True, exist_ok=True)
            result = build()
            if not done.exists():
                raise SystemExit(f"fixture {done} was not built: {result}")


# --- running and classifying one case -------------------------------------------------------------------------------


def run_config(entry: str, argv: list[str]) -> tuple[int, str]:
    """What the entry point does before anything runs, in-process: (exit status, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    from ssl4rl.cli import _guard, prevalidate

    buf, code = io.StringIO(), 0
    with contextlib.redirect_stderr(buf):
        try:
            _guard(lambda: prevalidate(CONFIGS, entry, argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:
            buf.write(traceback.format_exc())
            code = 1
    GlobalHydra.instance().clear()
    return code, buf.getvalue()


def api_child(name: str, t: Path) -> None:
    """Run API case ``name`` in this (child) process: its message on stderr, what it raised on one AUDIT_RESULT line."""
    case = next(c for c in all_cases() if c.name == name)
    try:
        case.make(t)
        res: dict[str, Any] = {"exc": None}
    except Exception as e:
        from ssl4rl.errors import UserError

        res = {"exc": type(e).__name__, "user": isinstance(e, UserError) and isinstance(e, ValueError), "msg": str(e)}
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
    print("AUDIT_RESULT " + json.dumps(res), flush=True)


def classify(case: Case, rc: int | None, err: str) -> tuple[str, str]:
    """(outcome, reason) of a finished case from its exit status and stderr (for API cases: what it raised)."""
    if rc is None or rc < 0:
        return "killed", f"exit {rc}"
    if case.kind == "api":
        line = next((ln for ln in err.splitlines() if ln.startswith("AUDIT_RESULT ")), None)
        res = json.loads(line[13:]) if line else {"exc": "no result", "user": False, "msg": f"exit {rc}"}
        if res["exc"] is None:
            return ("ok", "") if case.valid else ("accepted", "returned normally")
        if not res["user"] or case.valid:
            return ("traceback" if not res["user"] else "refused_valid"), f"{res['exc']}: {res['msg'][:200]}"
        missing = [n for n in case.needles if n not in res["msg"]]
        if "\n" in res["msg"] or missing:
            return "misleading", f"{len(res['msg'].splitlines())} lines, missing {missing}"
        return "refused", ""
    if "Traceback" in err:
        return "traceback", tail(err)
    if case.valid:
        return ("ok", "") if rc == 0 else ("refused_valid", f"exit {rc}")
    if rc == 0:
        return "accepted", "exit 0"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    missing = [n for n in ("error:", *case.needles) if n not in err]
    if rc != 2 or not 1 <= len(lines) <= 3 or missing:
        return "misleading", f"exit {rc}, {len(lines)} stderr lines, missing {missing}"
    return "refused", ""


def tail(err: str) -> str:
    """The last line of stderr that says something (Hydra's HYDRA_FULL_ERROR hint and result lines skipped)."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("AUDIT_RESULT", "Set the environment var"))]
    return lines[-1][:300] if lines else ""


def run_case(case: Case) -> dict[str, Any]:
    """Run one case in a fresh folder; then look for the pickle marker and changed earlier results or given files."""
    t = CASES / "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case.name)[:150]
    shutil.rmtree(t, ignore_errors=True)
    t.mkdir(parents=True)
    saved_before, t0, problem = checksums(SAVED), time.time(), None
    if case.kind == "config":
        entry, argv = case.make
        cmd = f"python {SCRIPTS[entry]} " + shlex.join(argv)
        rc, err = run_config(entry, argv)
    elif case.kind == "api":
        cmd = f"python benchmarks/hostile_audit.py --only {shlex.quote(case.name)}"
        rc, err = run_process([__file__, "--api", case.name, "--tmp", str(t)], {})
    else:
        argv = quiet(case.make(t))
        cmd = " ".join(f"{k}={v}" for k, v in case.env.items()) + " python " + shlex.join(argv)
        given = checksums(t)
        rc, err, problem = case.runner(case, t) if case.runner else (*run_process(argv, case.env), None)
        after = checksums(t)
        # logs are appended to, and a kill's orphaned temporary files are removed by design (README: refusal rules)
        changed = [k for k, v in given.items() if after.get(k) != v and not k.endswith("log.txt")
                   and not (Path(k).name.startswith(".") and k.endswith(".tmp") and k not in after)]
        if changed and not case.valid:
            problem = "changed a file it was given: " + ", ".join(changed)[:200]
    outcome, reason = classify(case, rc, err)
    if (t / "UNPICKLED").exists():
        outcome, reason = "pickle_ran", "the payload's marker file appeared"
    elif checksums(SAVED) != saved_before:
        outcome, reason = "changed", "earlier results under fixtures/saved changed"
    elif problem or (case.check and outcome in ("ok", "refused") and (problem := case.check(t))):
        outcome = "changed" if "changed" in problem else "refused_valid" if case.valid else "accepted"
        reason = problem
    if outcome in ("ok", "refused"):
        shutil.rmtree(t, ignore_errors=True)
    else:
        (t / "stderr.txt").write_text(err)
    return {"cat": case.cat, "name": case.name, "outcome": outcome, "reason": reason, "rc": rc, "last_line": tail(err),
            "seconds": round(time.time() - t0, 2), "cmd": cmd.strip()}


def append(record: dict[str, Any]) -> None:
    """One JSON line, appended in one write and synced."""
    fd = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, ensure_ascii=False) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def summary(cases: list[Case], results: dict[str, dict[str, Any]]) -> None:
    """Counts per category and outcome, then every case that is neither refused nor ok."""
    rows = [results[c.name] for c in cases if c.name in results]
    outcomes = ["refused", "ok", "misleading", "traceback", "accepted", "killed", "pickle_ran", "changed", "refused_valid"]
    cats, count = sorted({r["cat"] for r in rows}), Counter((r["cat"], r["outcome"]) for r in rows)
    print(f"\n{'category':11}" + "".join(f"{o:>14}" for o in outcomes) + f"{'total':>7}")
    for cat in [*cats, "all"]:
        n = [sum(count[(c, o)] for c in cats) if cat == "all" else count[(cat, o)] for o in outcomes]
        print(f"{cat:11}" + "".join(f"{x:>14}" for x in n) + f"{sum(n):>7}")
    bad = [r for r in rows if r["outcome"] not in ("refused", "ok")]
    print(f"\n{len(rows)} of {len(cases)} cases recorded, {sum(r['seconds'] for r in rows) / 60:.1f} min of case time; "
          f"{len(bad)} neither refused nor ok (rerun one: python benchmarks/hostile_audit.py --only '<name>'):")
    for r in bad:
        print(f"- [{r['cat']}] {r['outcome']}: {r['name']}\n    why: {r['reason'][:300]}\n    last stderr line: "
              f"{r['last_line'][:300]}\n    $ {r['cmd'][:300]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--fresh", action="store_true", help="delete earlier results and fixtures, start over")
    p.add_argument("--only", action="append", help="(re)run only the cases whose name contains this (repeatable)")
    p.add_argument("--api", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    a = p.parse_args()
    import ssl4rl  # noqa: F401  (chooses the GL backend before dm_control is imported)

    if a.api:
        return api_child(a.api, Path(a.tmp))
    if a.fresh:
        shutil.rmtree(AUDIT, ignore_errors=True)
    AUDIT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    build_fixtures()
    cases = all_cases()
    records = [json.loads(ln) for ln in RESULTS.read_text().splitlines() if ln.strip()] if RESULTS.exists() else []
    results = {r["name"]: r for r in records}
    todo = [c for c in cases if (any(o in c.name for o in a.only) if a.only else c.name not in results)]
    print(f"{len(cases)} cases, {sum(c.name in results for c in cases)} recorded, {len(todo)} to run", flush=True)
    for i, case in enumerate(todo, 1):
        results[case.name] = record = run_case(case)
        append(record)
        print(f"[{i}/{len(todo)}] {case.cat:10} {record['outcome']:13} {record['seconds']:6.1f}s  {case.name}", flush=True)
    summary(cases, results)
    print(f"this invocation: {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
