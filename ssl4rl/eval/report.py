"""Report formats of the evaluation harness: ``probe.json`` (state R²), markdown tables, main metrics."""

from __future__ import annotations

from typing import Any

import numpy as np


def _pct(fraction: str) -> str:
    return f"{100 * float(fraction):g}%"


def _mean_state(row: dict[str, Any], part: str) -> float | None:
    """Mean over frame datasets of the pose or velocity R² (None when no dataset has that part)."""
    vals = [s[part]["r2"] for s in row.get("state", {}).values() if s.get(part)]
    return float(np.mean(vals)) if vals else None


def main_metrics(row: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of one result row, in display order (bar chart, log, table)."""
    out: dict[str, float | None] = {}
    if row.get("state"):
        out["pose R²"] = _mean_state(row, "pose")
        out["velocity R²"] = _mean_state(row, "velocity")
    out.update({f"kNN {k}": v for k, v in row["knn"].items()})
    out["linear top-1"] = row["linear"]["top1"]
    for frac, res in row["fractions"].items():
        out[f"linear {_pct(frac)}"] = res["linear"]["top1"]
    if "finetune" in row:
        out["fine-tune top-1"] = row["finetune"]["top1"]
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _pretext(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "—"
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in metrics.items())


def eval_markdown(result: dict[str, Any]) -> str:
    """The harness table: one row per representation (encoders, random init, raw pixels)."""
    rows = result["rows"]
    metrics = list(dict.fromkeys(m for r in rows for m in main_metrics(r)))
    first_k = f"k={result['knn']['k'][0]}"
    fracs = list(rows[0]["fractions"])
    knn_fracs = [f"kNN {first_k} {_pct(f)}" for f in fracs]
    head = ["representation", "feature dim", "pretext (held-out)", *metrics, *knn_fracs]
    lines = [
        (
            f"Evaluation on {result['kind']} data {', '.join(result['data'])}: {result['train_samples']} train / "
            f"{result['test_samples']} held-out samples; classes = {result['labels']} "
            f"({len(result['classes'])}); kNN T={result['knn']['temperature']:g}"
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for r in rows:
        vals = main_metrics(r)
        cells = [r["name"], str(r["feature_dim"]), _pretext(r.get("pretext")), *(_fmt(vals.get(m)) for m in metrics)]
        cells += [_fmt(r["fractions"][f]["knn"].get(first_k)) for f in fracs]
        lines.append("| " + " | ".join(cells) + " |")
    if len(result["datasets"]) > 1:
        names = [d["name"] for d in result["datasets"]]
        lines += ["", "| representation | " + " | ".join(f"pose R² {n} | velocity R² {n}" for n in names) + " |",
                  "|---" * (2 * len(names) + 1) + "|"]
        for r in rows:
            cells = [_fmt((r["state"][n].get(part) or {}).get("r2")) for n in names for part in ("pose", "velocity")]
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_text(result: dict[str, Any]) -> str:
    """The harness table, followed by the state-probe tables when there is one frame dataset."""
    state = probe_json(result)
    return eval_markdown(result) + ("" if state is None else "\n" + markdown_table(state))


def probe_json(result: dict[str, Any]) -> dict[str, Any] | None:
    """The state-probe report (``probe.json``) of a harness result on one frame dataset, else None."""
    if len(result["datasets"]) != 1:
        return None
    (dataset,) = result["datasets"]
    name = dataset["name"]
    return {
        "encoder": next((r["encoder"] for r in result["rows"] if r["encoder"]), None),
        "encoders": [r["encoder"] for r in result["rows"] if r["encoder"]],
        "data": result["data"][0],
        "env": name,
        "train_episodes": dataset["train_episodes"],
        "test_episodes": dataset["test_episodes"],
        "test_frames": dataset["test_frames"],
        "state_names": dataset["state_names"],
        "rows": [{"name": r["name"], **r["state"][name]} for r in result["rows"]],
    }


def markdown_table(report: dict[str, Any]) -> str:
    """Two tables: R² (mean, pose, velocity) per representation, then R² per state dimension."""
    rows = report["rows"]
    lines = [
        (
            f"State-regression probe on {report.get('env')} ({report['train_episodes']} train / "
            f"{report['test_episodes']} held-out episodes, {report['test_frames']} held-out frames); "
            "pose from one frame, velocity from the features of 3 consecutive frames"
        ),
        "",
        "| representation | feature dim | held-out R² (mean) | pose R² | velocity R² |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['feature_dim']} | {r['r2']:.3f} | {_fmt((r.get('pose') or {}).get('r2'))} "
        f"| {_fmt((r.get('velocity') or {}).get('r2'))} |"
        for r in rows
    ]
    velocity = set((rows[0].get("velocity") or {}).get("dims", []))
    lines += ["", "| state dim | " + " | ".join(r["name"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for i, name in enumerate(report["state_names"]):
        label = f"{name} (3 frames)" if name in velocity else name
        lines.append(f"| {label} | " + " | ".join(_r2(r["r2_per_dim"][i]) for r in rows) + " |")
    return "\n".join(lines) + "\n"


def _r2(v: float | None) -> str:
    return "n/a (constant)" if v is None else f"{v:.3f}"
