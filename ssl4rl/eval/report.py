"""Report formats of the evaluation harness: ``probe.json`` (state R²), markdown tables, main metrics.

Probe metrics come from the linear and the kernel state probe (``ssl4rl.eval.probe``): ``pose R²``
and ``velocity R²`` are the linear probe's (as in eval.json files written before the kernel probe),
``pose R² (kernel)`` and ``velocity R² (kernel)`` the kernel probe's. Each has a 95% bootstrap
interval over held-out episodes (:func:`metric_intervals`). Representations are ranked by a probe
metric only where intervals separate them (:func:`tied_ranks`): overlapping intervals share a rank.
The velocity ceiling (both probes fed the true pose of frames t-2..t) is shown as its own row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# main_metrics key -> (state probe part, kernel probe?)
PROBE_METRICS = {
    "pose R²": ("pose", False),
    "pose R² (kernel)": ("pose", True),
    "velocity R²": ("velocity", False),
    "velocity R² (kernel)": ("velocity", True),
}
CEILING = "true pose t-2..t (velocity ceiling)"
RANK_LEGEND = (
    "#k: rank among the representations (1 = best); #k=: tied, within noise (its 95% bootstrap interval over held-out "
    "episodes overlaps another's, directly or through a chain of overlaps)."
)


def _pct(fraction: str) -> str:
    return f"{100 * float(fraction):g}%"


def _part(state: dict[str, Any], part: str, kernel: bool) -> dict[str, Any] | None:
    """One probe's scores of one frame dataset's state result (None when it has no such part or probe)."""
    res = state.get(part)
    return (res or {}).get("kernel") if kernel else res


def _state_metrics(states: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Mean over frame datasets of each probe R² (None where no dataset has it); kernel keys only when computed."""
    out: dict[str, float | None] = {}
    for key, (part, kernel) in PROBE_METRICS.items():
        vals = [p["r2"] for s in states if (p := _part(s, part, kernel))]
        if vals or not kernel:  # eval.json files from before the kernel probe have no kernel keys
            out[key] = float(np.mean(vals)) if vals else None
    return out


def _state_intervals(states: Sequence[dict[str, Any]]) -> dict[str, list[float] | None]:
    """Each probe R²'s bootstrap interval for one frame dataset; None for several (no interval of their mean)."""
    return {key: (_part(states[0], part, kernel) or {}).get("r2_ci") if len(states) == 1 else None
            for key, (part, kernel) in PROBE_METRICS.items()}


def main_metrics(row: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of one result row, in display order (bar chart, log, table)."""
    out: dict[str, float | None] = {}
    if row.get("state"):
        out.update(_state_metrics(list(row["state"].values())))
    out.update({f"kNN {k}": v for k, v in row["knn"].items()})
    out["linear top-1"] = row["linear"]["top1"]
    for frac, res in row["fractions"].items():
        out[f"linear {_pct(frac)}"] = res["linear"]["top1"]
    if "finetune" in row:
        out["fine-tune top-1"] = row["finetune"]["top1"]
    return out


def metric_intervals(row: dict[str, Any]) -> dict[str, list[float] | None]:
    """95% bootstrap interval ``[lo, hi]`` of each probe metric of :func:`main_metrics` (same keys); None
    with several frame datasets, or in eval.json files written before intervals."""
    return _state_intervals(list(row["state"].values())) if row.get("state") else {}


def tied_ranks(intervals: Sequence[Sequence[float] | None]) -> list[tuple[int, bool] | None]:
    """``(rank, tied)`` of each interval, 1 = highest; None where there is no interval.

    Intervals that overlap (directly or through a chain of overlaps) form one group sharing one rank,
    never ordered within it; a group's rank is 1 + the number of intervals in the groups above it.
    """
    order = sorted((i for i, ci in enumerate(intervals) if ci is not None), key=lambda i: -intervals[i][1])
    ranks: list[tuple[int, bool] | None] = [None] * len(intervals)
    groups: list[list[int]] = []
    low = np.inf
    for i in order:
        lo, hi = intervals[i]
        if groups and hi >= low:
            groups[-1].append(i)
            low = min(low, lo)
        else:
            groups.append([i])
            low = lo
    above = 0
    for group in groups:
        for i in group:
            ranks[i] = (above + 1, len(group) > 1)
        above += len(group)
    return ranks


def _fmt(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _cell(v: float | None, ci: Sequence[float] | None, rank: tuple[int, bool] | None = None) -> str:
    """``0.604 [0.548, 0.638] #2=``: the value, its interval and rank when known."""
    text = _fmt(v) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if v is not None and ci else "")
    return text + (f" #{rank[0]}{'=' * rank[1]}" if v is not None and rank else "")


def probe_cells(metrics: Sequence[dict[str, float | None]], intervals: Sequence[dict[str, Any]], keys: Sequence[str],
                ) -> list[list[str]]:
    """Table cells of ``keys`` for rows of :func:`main_metrics` and :func:`metric_intervals`: probe metrics as
    ``value [lo, hi] #rank`` (ties by :func:`tied_ranks`, ranked among these rows), other metrics as numbers."""
    columns = []
    for key in keys:
        if key not in PROBE_METRICS:
            columns.append([_fmt(m.get(key)) for m in metrics])
            continue
        cis = [ci.get(key) if m.get(key) is not None else None for m, ci in zip(metrics, intervals, strict=True)]
        ranks = tied_ranks(cis) if sum(ci is not None for ci in cis) > 1 else [None] * len(cis)
        columns.append([_cell(m.get(key), ci, r) for m, ci, r in zip(metrics, cis, ranks, strict=True)])
    return [list(cells) for cells in zip(*columns, strict=True)] if columns else [[] for _ in metrics]


def ceiling_cells(ceilings: Sequence[dict[str, Any] | None], keys: Sequence[str]) -> list[str]:
    """The velocity-ceiling row's cells for ``keys`` (velocity metrics with interval, '—' for others) from the
    frame datasets' ceilings (``pose_ceiling`` results; the mean over several, without interval)."""
    states = [{"velocity": c} for c in ceilings if c]
    metrics, intervals = _state_metrics(states), _state_intervals(states) if states else {}
    return [_cell(metrics.get(k), intervals.get(k)) if k in PROBE_METRICS and PROBE_METRICS[k][0] == "velocity" else "—"
            for k in keys]


def _pretext(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "—"
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in metrics.items())


def eval_markdown(result: dict[str, Any]) -> str:
    """The harness table: one row per representation (encoders, random init, raw pixels), then the velocity ceiling."""
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
    cells = probe_cells([main_metrics(r) for r in rows], [metric_intervals(r) for r in rows], metrics)
    for r, probe in zip(rows, cells, strict=True):
        row = [r["name"], str(r["feature_dim"]), _pretext(r.get("pretext")), *probe]
        row += [_fmt(r["fractions"][f]["knn"].get(first_k)) for f in fracs]
        lines.append("| " + " | ".join(row) + " |")
    ceilings = [d.get("ceiling") for d in result.get("datasets", [])]
    if any(ceilings):
        lines.append("| " + " | ".join([CEILING, "—", "—", *ceiling_cells(ceilings, metrics), *("—" for _ in fracs)]) + " |")
    ranked = _ranked(cells)
    if len(result["datasets"]) > 1:
        per_set, ranked_per_set = _per_dataset_lines(result)
        lines += per_set
        ranked = ranked or ranked_per_set
    return "\n".join(lines + (["", RANK_LEGEND] if ranked else [])) + "\n"


def _per_dataset_lines(result: dict[str, Any]) -> tuple[list[str], bool]:
    """The probe metrics of each frame dataset (with intervals and ranks), then each dataset's velocity ceiling;
    and whether any cell has a rank."""
    rows, names = result["rows"], [d["name"] for d in result["datasets"]]
    keys = list(dict.fromkeys(k for r in rows for s in r["state"].values() for k in _state_metrics([s])))
    per_set = [probe_cells([_state_metrics([r["state"][n]]) for r in rows],
                            [_state_intervals([r["state"][n]]) for r in rows], keys) for n in names]
    lines = ["", "| representation | " + " | ".join(f"{k} {n}" for n in names for k in keys) + " |",
             "|---" * (len(keys) * len(names) + 1) + "|"]
    for i, r in enumerate(rows):
        lines.append(f"| {r['name']} | " + " | ".join(c for cells in per_set for c in cells[i]) + " |")
    ceilings = [d.get("ceiling") for d in result["datasets"]]
    if any(ceilings):
        lines.append(f"| {CEILING} | " + " | ".join(c for ceil in ceilings for c in ceiling_cells([ceil], keys)) + " |")
    return lines, any(_ranked(cells) for cells in per_set)


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
        "ceiling": dataset.get("ceiling"),
        "rows": [{"name": r["name"], **r["state"][name]} for r in result["rows"]],
    }


def markdown_table(report: dict[str, Any]) -> str:
    """Two tables: R² (mean, pose, velocity; linear and kernel, with intervals and ranks) per representation
    and the velocity ceiling, then R² per state dimension (linear / kernel)."""
    rows, ceiling = report["rows"], report.get("ceiling")
    keys = list(dict.fromkeys(k for r in rows for k in _state_metrics([r])))
    lines = [
        (
            f"State-regression probe on {report.get('env')} ({report['train_episodes']} train / "
            f"{report['test_episodes']} held-out episodes, {report['test_frames']} held-out frames); "
            "pose from one frame, velocity from the features of 3 consecutive frames; linear ridge and RBF kernel "
            "ridge, 95% bootstrap intervals over held-out episodes"
        ),
        "",
        "| representation | feature dim | held-out R² (mean) | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 3) + "|",
    ]
    cells = probe_cells([_state_metrics([r]) for r in rows], [_state_intervals([r]) for r in rows], keys)
    lines += [f"| {r['name']} | {r['feature_dim']} | {r['r2']:.3f} | " + " | ".join(c) + " |"
              for r, c in zip(rows, cells, strict=True)]
    if ceiling:
        lines.append(f"| {CEILING} | {len(ceiling['inputs'])} per frame | — | " + " | ".join(ceiling_cells([ceiling], keys))
                     + " |")
    if _ranked(cells):
        lines += ["", RANK_LEGEND]
    velocity = set((rows[0].get("velocity") or {}).get("dims", []))
    kernel = [_kernel_per_dim(r) for r in rows]
    columns = [r["name"] for r in rows] + ([CEILING] if ceiling else [])
    lines += ["", "| state dim (linear / kernel) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for i, name in enumerate(report["state_names"]):
        label = f"{name} (3 frames)" if name in velocity else name
        cells = [_r2(r["r2_per_dim"][i], k.get(name)) for r, k in zip(rows, kernel, strict=True)]
        if ceiling:
            at = ceiling["dims"].index(name) if name in ceiling["dims"] else None
            cells.append("—" if at is None else _r2(ceiling["r2_per_dim"][at], ceiling["kernel"]["r2_per_dim"][at]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _kernel_per_dim(state: dict[str, Any]) -> dict[str, float | None]:
    """State dim name -> the kernel probe's R² ({} for results from before the kernel probe)."""
    out: dict[str, float | None] = {}
    for part in ("pose", "velocity"):
        res, ker = state.get(part), _part(state, part, True)
        if res and ker:
            out.update(zip(res["dims"], ker["r2_per_dim"], strict=True))
    return out


def _ranked(cells: Sequence[Sequence[str]]) -> bool:
    return any(" #" in c for row in cells for c in row)


def _r2(v: float | None, kernel: float | None = None) -> str:
    text = "n/a (constant)" if v is None else f"{v:.3f}"
    return text if kernel is None else f"{text} / {kernel:.3f}"
