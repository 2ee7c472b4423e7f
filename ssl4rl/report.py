"""One results table for a folder of runs: probe R² next to evaluation return.

    python -m ssl4rl.report runs/demo-20261123-101500

Rows come from every ``eval.json`` (pretrain/eval.py) under the folder, matched by encoder path to
the agent runs (``results.json`` of agents/train.py); agent runs without a probe row get their own
row. When the folder holds an agent on a random-init encoder (pretrain/random_init.py), a verdict
line compares every pretrained encoder's return with it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ssl4rl.cli import OneLineParser
from ssl4rl.errors import UserError
from ssl4rl.eval.report import main_metrics
from ssl4rl.utils import read_json, write_text


def _load_all(root: Path, name: str) -> list[dict[str, Any]]:
    """Every ``name`` JSON file under ``root``; a malformed one is a one-line UserError naming it."""
    return [read_json(p) for p in sorted(root.rglob(name))]


def _same(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def _method(agent: dict[str, Any]) -> str | None:
    """The pretraining method of an agent's encoder (``random`` for a random init), if it has one."""
    from ssl4rl.encoders import encoder_meta

    try:
        return encoder_meta(agent["encoder_path"])["method"] if agent.get("encoder_path") else None
    except UserError:
        return None


class Group:
    """The agent runs of one representation (same encoder, env and budget), one per seed."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.returns = [float(r["eval_return_mean"]) for r in runs]

    @property
    def seeds(self) -> int:
        return len(self.runs)

    @property
    def mean(self) -> float:
        return sum(self.returns) / len(self.returns)

    @property
    def std(self) -> float:
        """Over seeds with several; over evaluation episodes with one."""
        if self.seeds == 1:
            return float(self.runs[0]["eval_return_std"])
        return (sum((x - self.mean) ** 2 for x in self.returns) / len(self.returns)) ** 0.5

    def cell(self) -> str:
        if self.seeds == 1:
            return f"{self.mean:.1f} ± {self.std:.1f} ({self.runs[0]['eval_episodes']} ep)"
        return f"{self.mean:.1f} ± {self.std:.1f} ({self.seeds} seeds: {', '.join(f'{x:.0f}' for x in self.returns)})"


def _groups(agents: list[dict[str, Any]]) -> list[Group]:
    """Agent runs grouped by representation, env and budget, in order of first appearance."""
    keyed: dict[tuple, list[dict[str, Any]]] = {}
    for a in agents:
        path = a.get("encoder_path")
        key = (str(Path(path).resolve()) if path else a["encoder"], a.get("env"), a.get("env_steps"))
        keyed.setdefault(key, []).append(a)
    return [Group(sorted(runs, key=lambda r: r.get("seed", 0))) for runs in keyed.values()]


def summary_table(root: str | Path) -> str:
    """Markdown table of every probe row and agent result found under ``root``, then the verdict."""
    root = Path(root)
    agents = [r for r in _load_all(root, "results.json") if "eval_return_mean" in r]
    for r in agents:
        for key, kind in (("eval_return_mean", (int, float)), ("eval_return_std", (int, float)), ("eval_episodes", int),
                          ("env_steps", int), ("rl_seconds", (int, float)), ("encoder", str)):
            if not isinstance(r.get(key), kind):
                raise UserError(f"an agent results.json under {root} has {key}={r.get(key)!r}; delete or regenerate it")
    groups = _groups(agents)
    lines = [
        "| representation | pose R² (held-out) | velocity R² (3 frames) | eval return (mean ± std) | env steps | RL minutes |",
        "|---|---|---|---|---|---|",
    ]
    used: set[int] = set()
    for ev in _load_all(root, "eval.json"):
        for row in ev.get("rows", []):
            match = [j for j, g in enumerate(groups) if _same(row.get("encoder"), g.runs[0].get("encoder_path"))]
            used.update(match)
            m = main_metrics(row) if "knn" in row else {}
            group = groups[match[-1]] if match else None
            lines.append(_row(row["name"], _fmt(m.get("pose R²")), _fmt(m.get("velocity R²")), group))
    for j, g in enumerate(groups):
        if j not in used:
            a = g.runs[0]
            oracle = a["encoder"] == "state"
            name = "true state (oracle)" if oracle else f"{_method(a) or 'encoder'} ({a['encoder']})"
            lines.append(_row(name, "1 (is the state)" if oracle else "—", "—", g))
    return "\n".join([*lines, "", *verdicts(groups)]).rstrip() + "\n"


def verdicts(groups: list[Group]) -> list[str]:
    """One line per pretrained encoder: does its return beat the random init's by more than the two
    standard deviations added? Stds are over agent seeds when both have several, else over evaluation
    episodes of the one seed (which understates the spread). Empty without a random-init agent."""
    by_method = [(_method(g.runs[0]), g) for g in groups]
    randoms = [g for m, g in by_method if m == "random"]
    if not randoms:
        return []
    r = randoms[-1]
    out = []
    for m, g in by_method:
        if m in (None, "random"):
            continue
        gap, spread = g.mean - r.mean, g.std + r.std
        over = "over agent seeds" if min(g.seeds, r.seeds) > 1 else "over evaluation episodes of one seed"
        judgeable = min(g.seeds, r.seeds) > 1 or min(g.runs[0]["eval_episodes"], r.runs[0]["eval_episodes"]) > 1
        verdict = ("cannot be judged from one evaluation episode of one seed" if not judgeable
                   else "helps" if gap > spread else "does not beat random init by more than the two stds at this budget")
        out.append(f"{m} vs random init: {g.mean:.1f} - {r.mean:.1f} = {gap:+.1f}, stds ({over}) added {spread:.1f}: "
                   f"the {m} encoder {verdict}")
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _row(name: str, pose: str, velocity: str, group: Group | None) -> str:
    if group is None:
        return f"| {name} | {pose} | {velocity} | — | — | — |"
    minutes = sum(r["rl_seconds"] for r in group.runs) / group.seeds / 60
    return f"| {name} | {pose} | {velocity} | {group.cell()} | {group.runs[0]['env_steps']} | {minutes:.1f} |"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("root", help="a folder containing runs (eval.json, results.json)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: {root}: no such folder", file=sys.stderr)
        return 2
    try:
        table = summary_table(root)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_text(root / "summary.md", table)
    print(table)
    print(f"(also written to {root / 'summary.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
