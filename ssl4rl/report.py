"""One results table for a folder of runs: probe R² next to evaluation return.

    python -m ssl4rl.report runs/demo-20261123-101500
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ssl4rl.utils import write_text


def _load_all(root: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted(root.rglob(name)):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


def summary_table(root: str | Path) -> str:
    """Markdown table of every probe row and SAC result found under ``root``."""
    root = Path(root)
    probes = _load_all(root, "probe.json")
    agents = [r for r in _load_all(root, "results.json") if "eval_return_mean" in r]
    lines = [
        "| representation | probe R² (held-out, mean over state dims) | eval return (mean ± std) | env steps | RL minutes |",
        "|---|---|---|---|---|",
    ]
    used = set()
    for probe in probes:
        for i, row in enumerate(probe["rows"]):
            match = [
                j for j, a in enumerate(agents)
                if i == 0 and a.get("encoder_path") and Path(a["encoder_path"]).resolve() == Path(probe["encoder"]).resolve()
            ]
            used.update(match)
            lines.append(_row(row["name"], f"{row['r2']:.3f}", [agents[j] for j in match]))
    for j, a in enumerate(agents):
        if j not in used:
            name = "true state (oracle)" if a["encoder"] == "state" else f"encoder={a['encoder']}"
            lines.append(_row(name, "1 (is the state)" if a["encoder"] == "state" else "—", [a]))
    return "\n".join(lines) + "\n"


def _row(name: str, r2: str, agents: list[dict[str, Any]]) -> str:
    if not agents:
        return f"| {name} | {r2} | — | — | — |"
    a = agents[-1]
    ret = f"{a['eval_return_mean']:.1f} ± {a['eval_return_std']:.1f} ({a['eval_episodes']} ep)"
    return f"| {name} | {r2} | {ret} | {a['env_steps']} | {a['rl_seconds'] / 60:.1f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("root", help="a folder containing runs (probe.json, results.json)")
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
