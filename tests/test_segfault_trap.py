"""Guard: an optimiser step after a Mesa GL context exists must not crash.

Importing triton (which torch.optim pulls in lazily) after llvmpipe has created a
GL context segfaults the process; ``import ssl4rl`` imports triton early to avoid it.
Runs in a fresh interpreter so the import order is the real one.
"""

import os
import subprocess
import sys
import textwrap

CODE = textwrap.dedent(
    """
    import ssl4rl
    from ssl4rl.envs import make_env

    env = make_env("dmc_cartpole", image_size=32, seed=0)
    obs, _ = env.reset()
    frame = env.render()
    assert frame.shape == (32, 32, 3) and frame.max() > frame.min()

    import torch
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([p], lr=0.1)
    (p ** 2).sum().backward()
    opt.step()
    assert bool((p < 1).all())
    frame2 = env.render()  # GL still works after the optimiser step
    assert frame2.shape == (32, 32, 3)
    print("SSL4RL_TRAP_OK", float(p.sum()))
    """
)


def test_render_then_adam_step_does_not_crash():
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "SSL4RL_TRAP_OK" in proc.stdout
    value = float(proc.stdout.split("SSL4RL_TRAP_OK")[1].split()[0])
    assert value < 4.0  # the step changed the parameter
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "EGL" not in proc.stderr, proc.stderr
