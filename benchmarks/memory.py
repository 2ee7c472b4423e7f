"""Memory stays flat: resident memory (RSS) sampled over a 100k-env-step agent run and a long pretraining run.

    python benchmarks/memory.py                       # both runs, about 20 minutes on 2 cores
    python benchmarks/memory.py --only pretrain       # the pretraining run alone
    python benchmarks/memory.py --env-steps 20000 --pretrain-steps 300   # a quick look

Each run is its own process (the entry points, as a user runs them); its RSS is read from /proc every
second. The gate: over the last 80% of each run, RSS grows by less than 5% (the replay buffer is allocated,
and touched, up front; checkpoints write views, not copies). Writes a plot and a table to --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (None once it has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def sample(args: list[str], log: Path, every: float = 1.0) -> list[tuple[float, float]]:
    """Run an entry point, sampling its RSS; returns (seconds, MiB) pairs."""
    print("$ python " + " ".join(args), flush=True)
    with log.open("a") as f:
        proc = subprocess.Popen([sys.executable, *args, "progress=false"], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        t0, points = time.time(), []
        while proc.poll() is None:
            mib = rss_mib(proc.pid)
            if mib is not None:
                points.append((time.time() - t0, mib))
            time.sleep(every)
    if proc.returncode:
        sys.exit(f"error: {args[0]} failed (exit {proc.returncode}); see {log}")
    return points


def growth(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(RSS at 20% of the run, the highest RSS after it, their relative change): growth over the last 80%,
    taken at its peak so that a rise followed by a release at exit still counts."""
    end = points[-1][0]
    tail = [m for t, m in points if t >= 0.2 * end]
    return tail[0], max(tail), (max(tail) - tail[0]) / tail[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench-memory")
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--pretrain-steps", type=int, default=6000)
    p.add_argument("--only", choices=["pretrain", "agent"], help="run one of the two (the agent needs the pretrained encoder)")
    a = p.parse_args()
    out = Path(a.out)
    if out.exists():
        sys.exit(f"error: --out {out} already exists; choose a new folder")
    out.mkdir(parents=True)
    log = out / "bench.log"
    data = out / "data"
    subprocess.run([sys.executable, "envs/collect.py", "env=dmc_cartpole", "episodes=20", "image_size=64", f"out={data}",
                    "progress=false"], cwd=ROOT, check=True, capture_output=True)
    runs = {
        f"pretrain (mae, ViT 64 px, batch 64, {a.pretrain_steps} steps)": sample(
            ["pretrain/run.py", "method=mae", f"data.path={data}", f"steps={a.pretrain_steps}", "method.batch_size=64",
             "ckpt_every=500", f"out={out / 'pretrain'}"], log),
    }
    if a.only != "pretrain":
        runs[f"SAC on frozen features ({a.env_steps // 1000}k env steps)"] = sample(
            ["agents/train.py", "env=dmc_cartpole", f"encoder={out / 'pretrain' / 'encoder'}", f"steps={a.env_steps}",
             "video=false", f"out={out / 'agent'}"], log)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    lines = ["| run | seconds | RSS at 20% (MiB) | highest after it (MiB) | at the end (MiB) | growth over the last 80% |",
             "|---|---|---|---|---|---|"]
    for name, points in runs.items():
        t, m = zip(*points, strict=True)
        ax.plot(t, m, label=name)
        start, peak, g = growth(points)
        lines.append(f"| {name} | {t[-1]:.0f} | {start:.0f} | {peak:.0f} | {m[-1]:.0f} | {g * 100:+.1f}% "
                     f"({'ok' if g < 0.05 else 'FAILS the 5% gate'}) |")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=120)
    text = header("Memory over long runs (RSS)") + "\n" + "\n".join(lines) + f"\n\nPlot: {out / 'memory.png'}\n"
    (out / "memory.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
