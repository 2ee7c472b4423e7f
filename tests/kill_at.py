"""Test-only fault injection: run an entry script and SIGKILL it right after checkpoint number N.

    python tests/kill_at.py N pretrain/run.py <overrides>      # killed after the checkpoint at optimizer step N
    python tests/kill_at.py N agents/plan_goal.py <overrides>  # killed after the N-th goal's checkpoint
    python tests/kill_at.py N agents/train.py <overrides>      # SB3 agents: killed after the N-th agent checkpoint

Production code has no kill hook: this wrapper patches the checkpoint writers before the script imports them.
"""

import os
import runpy
import signal
import sys

import ssl4rl
import ssl4rl.pretrain
import ssl4rl.utils


def main() -> None:
    n, script = int(sys.argv[1]), sys.argv[2]
    sys.argv = [script, *sys.argv[3:]]
    save_checkpoint, write_json = ssl4rl.pretrain._save_checkpoint, ssl4rl.utils.write_json
    writes = []

    def save_then_die(path, model, opt, sched, gen, step):
        save_checkpoint(path, model, opt, sched, gen, step)
        if step == n:
            os.kill(os.getpid(), signal.SIGKILL)

    def write_then_die(path, obj):
        write_json(path, obj)
        if os.path.basename(path).startswith("checkpoint"):
            writes.append(path)
            if len(writes) == n:
                os.kill(os.getpid(), signal.SIGKILL)

    ssl4rl.pretrain._save_checkpoint = save_then_die
    ssl4rl.utils.write_json = write_then_die  # the script's `from ssl4rl.utils import write_json` takes this one
    if script.replace(os.sep, "/").endswith("agents/train.py"):  # SB3 agents save with ssl4rl.agents.checkpoint.save
        from ssl4rl.agents import checkpoint

        save_agent, saves = checkpoint.save, []

        def save_agent_then_die(*args, **kwargs):
            save_agent(*args, **kwargs)
            saves.append(1)
            if len(saves) == n:
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoint.save = save_agent_then_die  # sac.py calls checkpoint.save through the module
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
