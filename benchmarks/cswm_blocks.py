"""C-SWM on the block-pushing envs: Hits@1 and MRR at 1, 5 and 10 steps, next to the ablations and a constant encoder.

    python benchmarks/cswm_blocks.py --env shapes2d --steps 3000 --arms cswm no_gnn one_slot decoder init_encoder
    python benchmarks/cswm_blocks.py --env cubes3d --steps 3000 --arms cswm

Protocol (Kipf et al., ICLR 2020): 1000 training episodes x 100 steps and 10,000 evaluation episodes x 10 steps
of a uniformly random policy (``--eval-episodes``), collected here once under ``--root``. Every arm trains with
``pretrain/run.py method=cswm`` (a rerun resumes unfinished arms and skips finished ones) and is ranked against
every evaluation sample with ties counting against the model (``ssl4rl.eval.ranking``). The constant-encoder control
maps every frame to one point. The ``init_encoder`` arm first pretrains a small conv encoder with SimCLR on the
training frames (``--init-steps``) and builds C-SWM's object masks from its feature map.

Prints a markdown table with wall-clock per arm and the command; writes it to ``<root>/<env>/results.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl4rl.data import episode_paths, load_episode  # noqa: E402
from ssl4rl.eval.ranking import STEPS, evaluate_cswm, ranking_metrics  # noqa: E402
from ssl4rl.utils import read_json, write_json, write_text  # noqa: E402
from ssl4rl.worldmodels import load_world_model  # noqa: E402

ARMS = {  # arm -> pretrain/run.py overrides
    "cswm": [],
    "no_gnn": ["method.gnn=false"],
    "one_slot": ["method.num_slots=1", "method.embedding_dim=10"],  # one slot with the capacity of 5 x 2
    "decoder": ["method.objective=decoder"],
    "init_encoder": [],  # method.init_encoder=<the SimCLR conv encoder> is added at run time
}


def run(cmd: list[str], log: Path) -> float:
    """Run a CLI command (its output to ``log``); returns seconds; exits on failure."""
    t0 = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if rc:
        sys.exit(f"error: `{' '.join(cmd)}` failed (exit {rc}); see {log}")
    return time.time() - t0


def collect(env: str, folder: Path, episodes: int, steps: int, seed: int, log: Path) -> None:
    if (folder / "meta.json").exists():
        return
    run([sys.executable, "envs/collect.py", f"env={env}", f"episodes={episodes}", f"episode_steps={steps}",
         f"out={folder}", f"seed={seed}", "progress=false"], log)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="shapes2d", choices=["shapes2d", "cubes3d"])
    p.add_argument("--arms", nargs="+", default=["cswm"], choices=list(ARMS))
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps per arm")
    p.add_argument("--train-episodes", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=10_000)
    p.add_argument("--init-steps", type=int, default=500, help="SimCLR steps of the init_encoder arm's encoder")
    p.add_argument("--root", default="runs/bench-cswm")
    p.add_argument("--extra", nargs="*", default=[], help="more pretrain/run.py overrides for every arm")
    args = p.parse_args()
    root = ROOT / args.root
    work = root / args.env
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    train_dir, eval_dir = root / "data" / f"{args.env}_train", root / "data" / f"{args.env}_eval"
    t0 = time.time()
    collect(args.env, train_dir, args.train_episodes, 100, 0, log)
    collect(args.env, eval_dir, args.eval_episodes, 10, 1, log)
    print(f"data: {train_dir} and {eval_dir} ({time.time() - t0:.0f} s)", flush=True)
    episodes = [load_episode(path) for path in episode_paths(eval_dir)]
    saved = read_json(work / "results.json") if (work / "results.json").exists() else {"arms": {}, "args": {}}
    results = {arm: {"steps": saved["args"].get("steps"), **r} for arm, r in saved["arms"].items()}  # earlier arms stay
    for arm in args.arms:
        out = work / arm
        overrides = list(ARMS[arm]) + list(args.extra)
        if arm == "init_encoder":
            enc_run = work / "simclr_conv"
            if not (enc_run / "results.json").exists():
                run([sys.executable, "pretrain/run.py", "method=simclr", "backbone=conv", "backbone.image_size=50",
                     f"data.path={train_dir}", f"steps={args.init_steps}", f"out={enc_run}", "progress=false"], log)
            overrides.append(f"method.init_encoder={enc_run / 'encoder'}")
        seconds = json.loads((out / "seconds.json").read_text())["seconds"] if (out / "seconds.json").exists() else 0.0
        if not (out / "results.json").exists():
            print(f"training {arm} ({args.steps} steps)", flush=True)
            seconds += run([sys.executable, "pretrain/run.py", "method=cswm", f"data.path={train_dir}",
                            f"steps={args.steps}", f"out={out}", "progress=false", *overrides], log)
            write_json(out / "seconds.json", {"seconds": seconds})
        model = load_world_model(out / "worldmodel")
        t1 = time.time()
        metrics = evaluate_cswm(model, episodes)
        results[arm] = {"metrics": metrics, "train_seconds": seconds, "eval_seconds": time.time() - t1,
                        "overrides": overrides, "steps": args.steps}
        print(f"{arm}: " + ", ".join(f"H@1 {metrics['steps'][str(k)]['hits_at_1']:.3f} MRR {metrics['steps'][str(k)]['mrr']:.3f} "
                                     f"@{k}" for k in STEPS), flush=True)
    n = len(episodes)
    const = ranking_metrics(torch.zeros(n, 1), torch.zeros(n, 1))
    header = ("| arm | " + " | ".join(f"H@1 {k} | MRR {k}" for k in STEPS) + " | steps | train min |\n|---"
              + "|---" * (2 * len(STEPS) + 2) + "|\n")
    cell = lambda m, k: f"{100 * m['steps'][str(k)]['hits_at_1']:.1f} | {100 * m['steps'][str(k)]['mrr']:.1f}"
    lines = [f"| {arm} | " + " | ".join(cell(r["metrics"], k) for k in STEPS) + f" | {r['steps']} | "
             f"{r['train_seconds'] / 60:.1f} |" for arm, r in results.items()]
    const_cells = " | ".join(f"{100 * const['hits_at_1']:.1f} | {100 * const['mrr']:.2f}" for _ in STEPS)
    lines.append(f"| constant encoder | {const_cells} | 0 | 0 |")
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    text = (f"# C-SWM on {args.env} ({datetime.date.today()}, {torch.get_num_threads()} threads)\n\n`{cmd}`\n\n"
            f"{args.train_episodes} training episodes x 100 steps, {n} evaluation episodes x 10 steps; "
            f"ranked against all {n} candidates, ties against the model (H@1 and MRR in %).\n\n"
            + header + "\n".join(lines) + "\n")
    write_text(work / "results.md", text)
    write_json(work / "results.json", {"args": vars(args), "arms": results, "constant": const, "candidates": n})
    print(text)


if __name__ == "__main__":
    main()
