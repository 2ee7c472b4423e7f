"""One results table for a folder of runs: probe R² next to evaluation return, agent seeds aggregated.

    python -m ssl4rl.report runs/demo-20261123-101500 [--reps 2000] [--seed 0]
    python -m ssl4rl.report runs/multirun/20261203-101500      # the jobs of a -m sweep

Every agent run (``results.json`` of agents/train.py) under the folder is grouped by its arm (agent,
encoder, encoder mode, auxiliary loss and its positives, world-model objective, env-step budget) and
task (env); each group is one row: the mean final evaluation return over its runs (seeds) ± the
sample standard deviation over them (ddof=1; one run shows its mean, ``n=1, no spread``), the return
at 25k, 50k and 100k env steps, and the env steps at which an evaluation first reached 500. Probe rows
(``eval.json`` of pretrain/eval.py) are joined to the agent rows of the same encoder path.

Across tasks, each arm's interquartile mean (IQM) of normalized scores (DMC: return / 1000) gets a
stratified-bootstrap 95% interval (rliable; ``--reps`` resamples, seeded by ``--seed``), and
``performance_profile.png`` plots every arm's score distribution. When the folder holds an agent on a
random-init encoder (pretrain/random_init.py), a verdict line compares each pretrained encoder's return
with it over seeds. The table is printed and written to ``summary.md``; the report rewrites only these
two files of its own.
"""

from __future__ import annotations

import math
import statistics
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ssl4rl.cli import OneLineParser
from ssl4rl.errors import UserError
from ssl4rl.eval.report import main_metrics
from ssl4rl.utils import atomic_path, read_json, write_text

SUMMARY = "summary.md"  # the table, as printed
PROFILE = "performance_profile.png"  # rliable's performance profile of every arm
MARKS = (25_000, 50_000, 100_000)  # env steps at which the learning curve is read
TARGET = 500.0  # the return whose first reaching is reported (steps to 500)
REPS = 2000  # bootstrap resamples of the IQM and profile intervals
ARM_KEYS = ("agent", "encoder_mode", "aux", "aux_positive", "objective", "train_in")  # besides encoder and budget
_NUMBER = (int, float)


def _load_all(root: Path, name: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``name`` JSON file under ``root`` with its path; a malformed one is a one-line UserError naming it."""
    return [(p, read_json(p)) for p in sorted(root.rglob(name))]


def _same(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def _method(agent: dict[str, Any]) -> str | None:
    """The pretraining method of an agent's encoder (``random`` for a random init), if it has one."""
    meta = _meta(agent)
    return meta.get("method") if meta else None


def _meta(agent: dict[str, Any]) -> dict[str, Any] | None:
    from ssl4rl.encoders import encoder_meta

    try:
        return encoder_meta(agent["encoder_path"]) if agent.get("encoder_path") else None
    except UserError:
        return None


def _check(path: Path, r: dict[str, Any]) -> None:
    """Refuse, in one line naming the file, an agent ``results.json`` whose keys the report reads are malformed."""
    def bad(key: str) -> UserError:
        return UserError(f"{path} has {key}={str(r.get(key))[:80]!r}; delete or regenerate it")

    for key, kind, required in (("eval_return_mean", _NUMBER, True), ("eval_return_std", _NUMBER, True),
                                ("env_steps", int, True), ("encoder", str, True), ("eval_episodes", int, False),
                                ("rl_seconds", _NUMBER, False), ("seed", int, False), ("agent", str, False),
                                ("evals", list, False)):
        value = r.get(key)
        if (value is None and not required) or (isinstance(value, kind) and not isinstance(value, bool)):
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(key)
            continue
        raise bad(key)
    for key in ARM_KEYS[1:]:
        if not isinstance(r.get(key), (str, bool, type(None))):
            raise bad(key)
    for row in r.get("evals") or []:
        if (not isinstance(row, list) or len(row) < 2 or not all(isinstance(x, _NUMBER) and not isinstance(x, bool)
                                                                 for x in row[:2]) or not math.isfinite(row[1])):
            raise UserError(f"{path} has an evals row {str(row)[:80]}; rows are [env_steps, mean, std]; "
                            "delete or regenerate it")


def return_at(run: dict[str, Any], mark: int) -> float | None:
    """The evaluation return of ``run`` at ``mark`` env steps: the eval whose env_steps equals the mark if there
    is one, else the last eval before it. None when the run stopped before the mark (its total ``env_steps`` is
    below it) or has no eval at or before it (e.g. ``eval_every=0``: only the final one)."""
    if run["env_steps"] < mark:
        return None
    before = [row for row in run.get("evals") or [] if row[0] <= mark]
    return float(max(before, key=lambda row: row[0])[1]) if before else None


def steps_to(run: dict[str, Any], target: float = TARGET) -> int | None:
    """The env steps of the first evaluation (in env-step order) whose mean return reached ``target``; None if
    none did."""
    for row in sorted(run.get("evals") or [], key=lambda row: row[0]):
        if row[1] >= target:
            return int(row[0])
    return None


def _sample_std(xs: list[float]) -> float | None:
    """Sample standard deviation (ddof=1); None for fewer than 2 values."""
    if len(xs) < 2:
        return None
    mean = sum(xs) / len(xs)
    return (sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5


def _spread(xs: list[float], of: int) -> str:
    """``mean ± sample std`` of ``xs`` (``of`` runs in the group; ``(n=k)`` when only k of them have a value)."""
    if not xs:
        return "—"
    mean, std = sum(xs) / len(xs), _sample_std(xs)
    cell = f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"
    return cell if len(xs) == of else f"{cell} (n={len(xs)})"


class Group:
    """The agent runs of one arm on one task (same agent, encoder, mode, auxiliary loss, env and budget), one per
    seed."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.returns = [float(r["eval_return_mean"]) for r in runs]

    @property
    def n(self) -> int:
        return len(self.runs)

    seeds = n  # the name the demo and older code use

    @property
    def env(self) -> str:
        return str(self.runs[0].get("env"))

    @property
    def mean(self) -> float:
        return sum(self.returns) / len(self.returns)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the runs (ddof=1); None with one run (the spread of its evaluation
        episodes is not a spread over seeds)."""
        return _sample_std(self.returns)

    def cell(self) -> str:
        if self.std is None:
            return f"{self.mean:.1f} (n=1, no spread)"
        shown = ", ".join(f"{x:.0f}" for x in self.returns[:10]) + (", ..." if self.n > 10 else "")
        return f"{self.mean:.1f} ± {self.std:.1f} (n={self.n}: {shown})"

    def at(self, mark: int) -> str:
        return _spread([x for x in (return_at(r, mark) for r in self.runs) if x is not None], self.n)

    def reached(self, target: float = TARGET) -> str:
        steps = [s for s in (steps_to(r, target) for r in self.runs) if s is not None]
        if not steps:
            return "not reached" if self.n == 1 else f"not reached (0/{self.n})"
        if self.n == 1:
            return str(steps[0])
        return f"median {statistics.median(steps):.0f} ({len(steps)}/{self.n} reached)"


def _encoder_id(run: dict[str, Any]) -> str:
    path = run.get("encoder_path")
    return str(Path(path).resolve()) if path else str(run["encoder"])


def _arm_key(run: dict[str, Any]) -> tuple:
    """What a run's arm is made of: agent (sac when the key is missing), encoder, the other ``ARM_KEYS``, budget."""
    return (run.get("agent") or "sac", _encoder_id(run), *(run.get(k) for k in ARM_KEYS[1:]), run["env_steps"])


def _groups(agents: list[dict[str, Any]]) -> list[Group]:
    """Agent runs grouped by arm and env, in order of first appearance; runs in a group in seed order."""
    keyed: dict[tuple, list[dict[str, Any]]] = {}
    for a in agents:
        keyed.setdefault((*_arm_key(a), a.get("env")), []).append(a)
    return [Group(sorted(runs, key=lambda r: r.get("seed") or 0)) for runs in keyed.values()]


def _agent_label(run: dict[str, Any]) -> str:
    """e.g. ``sac``, ``drq finetune + curl (augment)``, ``planet contrastive``."""
    label = str(run.get("agent") or "sac")
    for key in ("encoder_mode", "objective", "train_in"):
        if run.get(key) is not None:
            label += f" {run[key]}"
    if run.get("aux") is not None:
        label += f" + {run['aux']}" + (f" ({run['aux_positive']})" if run.get("aux_positive") is not None else "")
    return label


def _shown(path: str, root: Path) -> str:
    """An encoder path relative to the report's folder when it lies inside it."""
    p, r = Path(path).resolve(), root.resolve()
    return str(p.relative_to(r)) if p.is_relative_to(r) else path


def _name(run: dict[str, Any], root: Path) -> str:
    """The representation of an agent run without a probe row: the oracle, or method (encoder)."""
    if run["encoder"] == "state":
        return "true state (oracle)"
    return f"{_method(run) or 'encoder'} ({_shown(str(run['encoder']), root)})"


def normalized(env: str, value: float) -> float | None:
    """A return on the [0, 1] scale rliable's aggregates expect: DMC tasks (``dmc_*``) have returns in
    [0, 1000]; None for tasks without a known scale."""
    return value / 1000.0 if env.startswith("dmc_") else None


class Arm:
    """An arm's runs across tasks: its normalized final scores as rliable's (runs x tasks) matrix. Tasks with
    more runs than the arm's fewest are cut to that many (lowest seeds first) so every task has the same."""

    def __init__(self, name: str, groups: list[Group]) -> None:
        import numpy as np

        self.name = name
        scored = [g for g in groups if normalized(g.env, 0.0) is not None]
        self.skipped = sorted({g.env for g in groups} - {g.env for g in scored})
        self.tasks = [g.env for g in scored]
        self.runs = min((g.n for g in scored), default=0)
        self.most = max((g.n for g in scored), default=0)
        self.scores = np.array([[normalized(g.env, x) for x in g.returns[:self.runs]] for g in scored]).T


def _arms(groups: list[Group], names: dict[int, str]) -> list[Arm]:
    by_arm: dict[tuple, list[int]] = {}
    for j, g in enumerate(groups):
        by_arm.setdefault(_arm_key(g.runs[0]), []).append(j)
    out: list[Arm] = []
    for members in by_arm.values():
        first = groups[members[0]]
        label = f"{names[members[0]]}, {_agent_label(first.runs[0])}, {first.runs[0]['env_steps']} env steps"
        taken = sum(a.name == label or a.name.startswith(label + " #") for a in out)
        arm = Arm(f"{label} #{taken + 1}" if taken else label, [groups[j] for j in members])  # e.g. two random inits
        if arm.tasks:
            out.append(arm)
    return out


def iqm_intervals(arms: list[Arm], reps: int = REPS, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Each arm's IQM of normalized scores and its stratified-bootstrap 95% interval: (iqm, low, high). Each arm
    is bootstrapped with its own ``RandomState(seed)``, so its interval does not depend on the other arms."""
    import numpy as np
    from rliable import library as rly
    from rliable import metrics

    out = {}
    for arm in arms:
        with warnings.catch_warnings():  # arch: "random_state is deprecated" (rliable passes one; it still seeds)
            warnings.filterwarnings("ignore", category=FutureWarning, module="arch")
            np.random.seed(seed)  # arch also draws from numpy's global generator: seed it too, so intervals repeat
            point, interval = rly.get_interval_estimates(
                {arm.name: arm.scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps,
                random_state=np.random.RandomState(seed))
        out[arm.name] = (float(point[arm.name][0]), float(interval[arm.name][0, 0]), float(interval[arm.name][1, 0]))
    return out


def performance_profile(arms: list[Arm], path: Path, reps: int = REPS, seed: int = 0) -> Path:
    """Plot every arm's performance profile (fraction of runs with normalized score > tau, with a stratified-
    bootstrap 95% band) to ``path``, written atomically. This is ``rly.create_performance_profile`` (score
    distributions over runs and tasks) with a seeded ``RandomState`` per arm, which that function does not take."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from rliable import library as rly
    from rliable import plot_utils

    tau = np.linspace(0.0, 1.0, 101)
    profiles, cis = {}, {}
    for arm in arms:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="arch")
            p, ci = rly.get_interval_estimates({arm.name: arm.scores}, lambda s: rly.score_distributions(s, tau),
                                               reps=reps, random_state=np.random.RandomState(seed))
        profiles[arm.name], cis[arm.name] = p[arm.name], ci[arm.name]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    palette = plt.get_cmap("tab10").colors
    colors = {name: palette[i % len(palette)] for i, name in enumerate(profiles)}
    plot_utils.plot_performance_profiles(profiles, tau, performance_profile_cis=cis, colors=colors, ax=ax,
                                         xlabel="normalized score τ (DMC: return / 1000)",
                                         ylabel="fraction of runs with score > τ")
    ax.legend(fontsize=7, loc="upper right")  # plot_utils labels each line with its arm
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def _report(root: Path, reps: int, seed: int) -> tuple[str, list[Arm]]:
    agents = []
    for path, r in _load_all(root, "results.json"):
        if "eval_return_mean" in r:
            _check(path, r)
            agents.append(r)
    groups = _groups(agents)
    names = {j: _name(g.runs[0], root) for j, g in enumerate(groups)}
    lines = [
        f"| representation | agent | env | pose R² (held-out) | velocity R² (3 frames) | eval return (mean ± std over "
        f"seeds) | {' | '.join(f'return @{m // 1000}k' for m in MARKS)} | steps to {TARGET:.0f} | env steps | RL minutes |",
        "|---|---|---|---|---|---|" + "---|" * len(MARKS) + "---|---|---|",
    ]
    used: set[int] = set()
    for _path, ev in _load_all(root, "eval.json"):
        for row in ev.get("rows", []):
            match = [j for j, g in enumerate(groups) if _same(row.get("encoder"), g.runs[0].get("encoder_path"))]
            used.update(match)
            m = main_metrics(row) if "knn" in row else {}
            for j in match or [None]:
                if j is not None:
                    names[j] = row["name"]
                lines.append(_row(row["name"], _fmt(m.get("pose R²")), _fmt(m.get("velocity R²")),
                                  None if j is None else groups[j]))
    for j, g in enumerate(groups):
        if j not in used:
            oracle = g.runs[0]["encoder"] == "state"
            lines.append(_row(names[j], "1 (is the state)" if oracle else "—", "—", g))
    arms = _arms(groups, names)
    text = [*lines, "", *_iqm_lines(arms, reps, seed), *verdicts(groups)]
    return "\n".join(text).rstrip() + "\n", arms


def _iqm_lines(arms: list[Arm], reps: int, seed: int) -> list[str]:
    if not arms:
        return []
    iqm = iqm_intervals(arms, reps, seed)
    lines = [f"IQM of normalized scores (DMC: return / 1000) over runs and tasks, stratified-bootstrap 95% interval "
             f"(rliable, {reps} resamples, seed {seed}); python -m ssl4rl.report also plots each arm's performance "
             f"profile to {PROFILE}:", "",
             "| arm | tasks | runs per task | IQM [95% interval] |", "|---|---|---|---|"]
    for arm in arms:
        point, low, high = iqm[arm.name]
        runs = f"{arm.runs}" + (f" (cut from up to {arm.most})" if arm.most > arm.runs else "")
        tasks = ", ".join(arm.tasks) + (f" (left out, no score scale: {', '.join(arm.skipped)})" if arm.skipped else "")
        lines.append(f"| {arm.name} | {tasks} | {runs} | {point:.3f} [{low:.3f}, {high:.3f}] |")
    return [*lines, ""]


def summary_table(root: str | Path, reps: int = REPS, seed: int = 0) -> str:
    """Markdown table of every probe row and agent group found under ``root``, the IQM of each arm, then the
    verdicts against random init."""
    return _report(Path(root), reps, seed)[0]


def write_report(root: str | Path, reps: int = REPS, seed: int = 0) -> tuple[str, list[Path]]:
    """``summary_table`` written to ``root/summary.md``, and the performance profile of the arms to
    ``root/performance_profile.png`` (when there are agent runs on DMC tasks). Returns the text and the files."""
    root = Path(root)
    text, arms = _report(root, reps, seed)
    write_text(root / SUMMARY, text)
    written = [root / SUMMARY]
    if arms:
        written.append(performance_profile(arms, root / PROFILE, reps, seed))
    return text, written


def _but_encoder(g: Group) -> tuple:
    key = _arm_key(g.runs[0])
    return (key[0], *key[2:], g.env)


def _random_for(g: Group, groups: Iterable[Group]) -> Group | None:
    """The random-init group to compare ``g`` with: the same arm but for the encoder, on the same env; of the
    same architecture when there is one."""
    same = [r for r in groups if _method(r.runs[0]) == "random" and _but_encoder(r) == _but_encoder(g)]
    arch = (_meta(g.runs[0]) or {}).get("arch")
    return next((r for r in reversed(same) if (_meta(r.runs[0]) or {}).get("arch") == arch), same[-1] if same else None)


def verdicts(groups: list[Group]) -> list[str]:
    """One line per pretrained encoder with a random-init run of the same arm and task: does its mean return
    beat random init's by more than the two sample standard deviations over seeds added? Within them it is
    noise; with fewer than 2 seeds on either side there is no seed spread, and the line says it cannot tell."""
    out = []
    for g in groups:
        m = _method(g.runs[0])
        r = None if m in (None, "random") else _random_for(g, groups)
        if r is None:
            continue
        gap = g.mean - r.mean
        where = f"n={g.n} and {r.n}; {g.env}, {_agent_label(g.runs[0])}, {g.runs[0]['env_steps']} env steps"
        head = f"{m} vs random init: {g.mean:.1f} - {r.mean:.1f} = {gap:+.1f}"
        if g.std is None or r.std is None:
            out.append(f"{head} ({where}): cannot tell with fewer than 2 seeds per arm (the spread of one seed's "
                       "evaluation episodes is not a spread over seeds); run more seeds")
            continue
        spread = g.std + r.std
        verdict = (f"the {m} encoder helps" if gap > spread
                   else f"the {m} encoder is worse than random init by more than the two stds added" if gap < -spread
                   else f"within noise: the {m} encoder does not beat random init by more than the two stds added")
        out.append(f"{head}, seed stds added {g.std:.1f} + {r.std:.1f} = {spread:.1f} ({where}): {verdict}")
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _row(name: str, pose: str, velocity: str, group: Group | None) -> str:
    if group is None:
        return f"| {name} | — | — | {pose} | {velocity} | — | " + "— | " * len(MARKS) + "— | — | — |"
    a = group.runs[0]
    seconds = [r["rl_seconds"] for r in group.runs if r.get("rl_seconds") is not None]
    minutes = f"{sum(seconds) / len(seconds) / 60:.1f}" if seconds else "—"
    marks = " | ".join(group.at(m) for m in MARKS)
    return (f"| {name} | {_agent_label(a)} | {group.env} | {pose} | {velocity} | {group.cell()} | {marks} | "
            f"{group.reached()} | {a['env_steps']} | {minutes} |")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("root", help="a folder containing runs (eval.json, results.json)")
    parser.add_argument("--reps", type=int, default=REPS, help=f"bootstrap resamples (default {REPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: {root}: no such folder", file=sys.stderr)
        return 2
    if args.reps < 1 or not 0 <= args.seed < 2**32:
        parser.error("--reps must be at least 1 and --seed in 0..2^32-1")
    try:
        table, written = write_report(root, args.reps, args.seed)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table)
    print(f"(also written to {', '.join(str(p) for p in written)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
