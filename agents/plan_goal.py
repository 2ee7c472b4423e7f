"""Goal-image planning: plan in a world model's latent space towards the encoded goal frame (no reward head).

    python agents/plan_goal.py env=shapes2d worldmodel=runs/pretrain/<cswm run>/worldmodel goals=50
    python agents/plan_goal.py env=dmc_reacher worldmodel=<folder> goals=50
    python agents/plan_goal.py env=shapes2d worldmodel=<folder> goal_image=goal.png   # one given goal image

Writes results.json, goals.md (success rate next to a random policy on the same goals, seconds per decision)
and goal_<i>.gif (the episode next to its goal) into out=. A rerun with the same out= continues after the
last finished goal (``checkpoint.json``) and ends identical to an uninterrupted run.
"""

from pathlib import Path

import numpy as np

import ssl4rl  # noqa: F401
from ssl4rl.agents.goal import GOAL_ENVS, GoalPlanner, load_goal_image, make_goal_task, run_goal
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.errors import UserError
from ssl4rl.runs import log, claim_run_dir
from ssl4rl.utils import progress_bar, read_json, write_json, write_text
from ssl4rl.viz import save_gif
from ssl4rl.worldmodels import load_world_model

CHECKPOINT = "checkpoint.json"


def main(cfg) -> None:
    if cfg.env not in GOAL_ENVS:
        raise UserError(f"env={cfg.env}: goal-image planning has goals for {', '.join(GOAL_ENVS)}")
    if cfg.goal_steps_min > cfg.goal_steps_max:
        raise UserError(f"goal_steps_min={cfg.goal_steps_min} > goal_steps_max={cfg.goal_steps_max}; swap them")
    folder = Path(cfg.worldmodel)
    if (folder / "worldmodel").is_dir():
        folder = folder / "worldmodel"
    model = load_world_model(folder)
    if not (hasattr(model, "encode") and hasattr(model, "step")):
        raise UserError(f"worldmodel={cfg.worldmodel}: a '{model.kind}' model cannot encode goals; use a C-SWM world model")
    image_size = model.encoder.image_size
    goal = load_goal_image(cfg.goal_image, image_size) if cfg.goal_image else None
    task = make_goal_task(cfg.env, image_size, cfg.seed, (cfg.goal_steps_min, cfg.goal_steps_max))
    horizon = cfg.horizon or (2 if task.discrete else 10)
    planner = GoalPlanner(model, task, horizon, cfg.candidates, cfg.iterations, cfg.top_k, cfg.planner)
    out, _ = claim_run_dir(cfg.out, to_yaml(cfg), resume_file=CHECKPOINT)
    done = read_json(out / CHECKPOINT) if (out / CHECKPOINT).exists() else {"planner": [], "random": []}
    if not all(isinstance(done.get(arm), list) and all(isinstance(r, dict) for r in done[arm]) for arm in ("planner", "random")):
        raise UserError(f"{out / CHECKPOINT}: not a goal-planning checkpoint (lists of goal records per arm); choose a new out=")
    goals = 1 if goal is not None else cfg.goals
    arms = {"planner": planner, "random": None} if cfg.random_control else {"planner": planner}
    bar = progress_bar(total=goals * len(arms), initial=sum(len(v) for v in done.values()),
                       desc=f"goals {cfg.env}", unit="goal", disable=not cfg.progress)
    for arm, arm_planner in arms.items():
        for i in range(len(done[arm]), goals):
            record = run_goal(model, task, arm_planner, i, cfg.seed, goal)
            if i < cfg.videos:
                save_gif(out / f"goal_{i:03d}_{arm}.gif", list(record.pop("frames").transpose(0, 2, 3, 1)), fps=4)
            record.pop("frames", None)
            done[arm].append(record)
            write_json(out / CHECKPOINT, done)
            bar.update(1)
            bar.set_postfix(arm=arm, success=f"{np.mean([r['success'] for r in done[arm]]):.2f}", refresh=False)
    bar.close()
    summary = {
        arm: {"success_rate": float(np.mean([r["success"] for r in recs])), "goals": len(recs),
              "mean_steps": float(np.mean([r["steps"] for r in recs])),
              "seconds_per_decision": float(np.mean([r["seconds_per_decision"] for r in recs])),
              "final_latent_distance": float(np.mean([r["final_latent_distance"] for r in recs]))}
        for arm, recs in done.items() if recs
    }
    results = {"env": cfg.env, "worldmodel": str(folder), "horizon": horizon, "exhaustive": planner.exhaustive,
               "goal_image": cfg.goal_image, "summary": summary, "per_goal": done}
    write_json(out / "results.json", results)
    rows = [f"| {arm} | {s['success_rate']:.2f} | {s['goals']} | {s['mean_steps']:.1f} | {s['seconds_per_decision']:.3f} | "
            f"{s['final_latent_distance']:.3f} |" for arm, s in summary.items()]
    write_text(out / "goals.md", f"# Goal-image planning on {cfg.env} ({folder})\n\n| policy | success | goals | mean steps | "
               "s / decision | final latent distance |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    (out / CHECKPOINT).unlink()
    log.info(" | ".join(f"{arm}: success {s['success_rate']:.2f} over {s['goals']} goals" for arm, s in summary.items())
             + f" -> {out}")


if __name__ == "__main__":
    run_app(__file__, "plan_goal", main)
