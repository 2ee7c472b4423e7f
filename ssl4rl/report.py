"""One results table for a folder of runs: probe R² next to evaluation return.

    python -m ssl4rl.report runs/demo-20261123-101500

Rows come from every ``eval.json`` (pretrain/eval.py) under the folder, matched by encoder path to
the agent runs (``results.json`` of agents/train.py); agent runs without a probe row get their own
row. When the folder holds an agent on a random-init encoder (pretrain/random_init.py), a verdict
line compares every pretrained encoder's return with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ssl4rl.errors import UserError
from ssl4rl.eval.report import main_metrics
from ssl4rl.utils import write_text


def _load_all(root: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted(root.rglob(name)):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


def _same(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def _method(agent: dict[str, Any]) -> str | None:
    """The pretraining method of an agent's encoder (``random`` for a random init), if it has one."""
    from ssl4rl.encoders import encoder_meta

    try:
        return encoder_meta(agent["encoder_path"])["method"] if agent.get("encoder_path") else None
    except UserError:
        return None


def summary_table(root: str | Path) -> str:
    """Markdown table of every probe row and agent result found under ``root``, then the verdict."""
    root = Path(root)
    agents = [r for r in _load_all(root, "results.json") if "eval_return_mean" in r]
    lines = [
        "| representation | pose R² (held-out) | velocity R² (3 frames) | eval return (mean ± std) | env steps | RL minutes |",
        "|---|---|---|---|---|---|",
    ]
    used: set[int] = set()
    for ev in _load_all(root, "eval.json"):
        for row in ev.get("rows", []):
            match = [j for j, a in enumerate(agents) if _same(row.get("encoder"), a.get("encoder_path"))]
            used.update(match)
            m = main_metrics(row) if "knn" in row else {}
            lines.append(_row(row["name"], _fmt(m.get("pose R²")), _fmt(m.get("velocity R²")), [agents[j] for j in match]))
    for j, a in enumerate(agents):
        if j not in used:
            oracle = a["encoder"] == "state"
            name = "true state (oracle)" if oracle else f"{_method(a) or 'encoder'} ({a['encoder']})"
            lines.append(_row(name, "1 (is the state)" if oracle else "—", "—", [a]))
    return "\n".join([*lines, "", *verdicts(agents)]).rstrip() + "\n"


def verdicts(agents: list[dict[str, Any]]) -> list[str]:
    """One line per pretrained encoder: does its return beat the random init's by more than the two
    standard deviations added? (Empty without a random-init agent.)"""
    by_method = [(_method(a), a) for a in agents]
    randoms = [a for m, a in by_method if m == "random"]
    if not randoms:
        return []
    r = randoms[-1]
    out = []
    for m, a in by_method:
        if m in (None, "random"):
            continue
        gap, spread = a["eval_return_mean"] - r["eval_return_mean"], a["eval_return_std"] + r["eval_return_std"]
        verdict = ("cannot be judged from one evaluation episode" if min(a["eval_episodes"], r["eval_episodes"]) < 2
                   else "helps" if gap > spread else "does not beat random init by more than the two stds at this budget")
        out.append(f"{m} vs random init: {a['eval_return_mean']:.1f} - {r['eval_return_mean']:.1f} = {gap:+.1f}, "
                   f"stds added {spread:.1f}: the {m} encoder {verdict}")
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _row(name: str, pose: str, velocity: str, agents: list[dict[str, Any]]) -> str:
    if not agents:
        return f"| {name} | {pose} | {velocity} | — | — | — |"
    a = agents[-1]
    ret = f"{a['eval_return_mean']:.1f} ± {a['eval_return_std']:.1f} ({a['eval_episodes']} ep)"
    return f"| {name} | {pose} | {velocity} | {ret} | {a['env_steps']} | {a['rl_seconds'] / 60:.1f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("root", help="a folder containing runs (eval.json, results.json)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: {root}: no such folder", file=sys.stderr)
        return 2
    table = summary_table(root)
    write_text(root / "summary.md", table)
    print(table)
    print(f"(also written to {root / 'summary.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
