"""dm_control suite tasks as gymnasium environments, from pixels or from true state.

Rendering uses one ``mujoco.Renderer`` per env with shadows, reflections and
multisampling off (``fast_render=True``, the default), which is an order of
magnitude faster than dm_control's ``physics.render`` on a CPU.
Frames are rendered once per agent step (after the action repeat), never per
physics step.
"""

from __future__ import annotations

import atexit
import weakref
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from ssl4rl._gl import gl_guard
from ssl4rl.errors import UserError
from ssl4rl.utils import push_frame

MAX_IMAGE_SIZE = 1024  # rendered frames are square, at most this many pixels a side
_LIVE_RENDERERS: weakref.WeakSet = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_live_renderers() -> None:
    # Free GL contexts before mujoco's own atexit hook terminates the EGL display;
    # otherwise interpreter shutdown prints EGL_NOT_INITIALIZED tracebacks.
    for r in list(_LIVE_RENDERERS):
        r.close()


def flatten_observation(obs: dict[str, Any]) -> np.ndarray:
    """Concatenate a dm_control observation dict into one float32 vector."""
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in obs.values()])


class FastRenderer:
    """An offscreen MuJoCo renderer for one camera at one size.

    ``fast=True`` switches off shadows, reflections and multisampling.
    """

    def __init__(self, physics: Any, size: int, camera: int, fast: bool = True) -> None:
        with gl_guard(render=True):  # a bad MUJOCO_GL, EGL/OSMesa missing or broken, no X display
            import mujoco

            model = physics.model.ptr
            if fast:
                model.vis.quality.offsamples = 0  # must be set before the GL context exists
            self._renderer = mujoco.Renderer(model, size, size)
        if fast:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 1
        self._data = physics.data.ptr
        self._camera = camera
        _LIVE_RENDERERS.add(self)
        global _ATEXIT_REGISTERED
        if not _ATEXIT_REGISTERED:  # after mujoco.egl registered its hook, so ours runs first
            atexit.register(_close_live_renderers)
            _ATEXIT_REGISTERED = True

    def render(self) -> np.ndarray:
        """Return an (H, W, 3) uint8 frame of the current physics state."""
        self._renderer.update_scene(self._data, camera=self._camera)
        return self._renderer.render()

    def close(self) -> None:
        """Free the GL context (safe to call twice)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        _LIVE_RENDERERS.discard(self)


class DMCEnv(gym.Env):
    """A dm_control suite task with a gymnasium API.

    Observations are uint8 ``(3 * frame_stack, size, size)`` channels-first frames
    (``obs_type='pixels'``) or the flattened dm_control observation
    (``obs_type='state'``). ``info['state']`` always holds the flattened
    observation, ``info['physics']`` the full MuJoCo state (qpos, qvel, act).
    One ``step`` is one agent step = ``action_repeat`` environment steps.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        domain: str,
        task: str,
        action_repeat: int = 1,
        image_size: int = 84,
        camera: int = 0,
        frame_stack: int = 3,
        obs_type: str = "pixels",
        fast_render: bool = True,
        seed: int | None = None,
        render_mode: str | None = "rgb_array",
    ) -> None:
        if obs_type not in ("pixels", "state"):
            raise UserError(f"unknown obs_type '{obs_type}'; valid: pixels, state")
        with gl_guard(render=obs_type == "pixels"):  # dm_control refuses a bad MUJOCO_GL at import
            from dm_control import suite
        for name, value, low, high in (("image_size", image_size, 16, MAX_IMAGE_SIZE), ("frame_stack", frame_stack, 1, 100),
                                       ("action_repeat", action_repeat, 1, 1000), ("camera", camera, -1, 1000)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise UserError(f"{name}={value!r}: must be a whole number from {low} to {high}")
        self.domain, self.task_name = domain, task
        self.action_repeat = int(action_repeat)
        self.image_size = int(image_size)
        self.camera = int(camera)
        self.frame_stack = int(frame_stack)
        self.obs_type = obs_type
        self.fast_render = fast_render
        self.render_mode = render_mode
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        n_cameras = self._env.physics.model.ncam
        if isinstance(camera, bool) or not isinstance(camera, (int, np.integer)) or not -1 <= camera < n_cameras:
            raise UserError(f"camera={camera!r}: {domain} has cameras 0 to {n_cameras - 1} (or -1, the free camera)")
        vis = self._env.physics.model.vis.global_  # grow the offscreen buffer (before any GL context) if needed
        vis.offwidth, vis.offheight = max(vis.offwidth, self.image_size), max(vis.offheight, self.image_size)
        self._renderer: FastRenderer | None = None
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)

        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(
            spec.minimum.astype(np.float32), spec.maximum.astype(np.float32), dtype=np.float32
        )
        obs_spec = self._env.observation_spec()
        self.state_names = [
            f"{k}[{i}]" if int(np.prod(s.shape)) > 1 else k
            for k, s in obs_spec.items()
            for i in range(int(np.prod(s.shape)))
        ]
        state_dim = self.state_dim = len(self.state_names)
        if obs_type == "pixels":
            shape = (3 * self.frame_stack, self.image_size, self.image_size)
            self.observation_space = gym.spaces.Box(0, 255, shape, dtype=np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (state_dim,), dtype=np.float32)

    @property
    def physics(self) -> Any:
        """The dm_control physics of the task."""
        return self._env.physics

    def render(self) -> np.ndarray:
        """The current frame as (H, W, 3) uint8."""
        if self._renderer is None:
            self._renderer = FastRenderer(self.physics, self.image_size, self.camera, self.fast_render)
        return self._renderer.render()

    def _observe(self, time_step: Any, reset: bool) -> tuple[np.ndarray, dict[str, Any]]:
        state = flatten_observation(time_step.observation)
        info = {"state": state, "physics": self.physics.get_state().copy()}
        if self.obs_type == "state":
            return state, info
        return push_frame(self._frames, self.render().transpose(2, 0, 1), reset), info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._env.task._random = np.random.RandomState(seed)
        time_step = self._env.reset()
        return self._observe(time_step, reset=True)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        obs, info = self._observe(time_step, reset=False)
        last = time_step.last()
        terminated = bool(last and time_step.discount == 0.0)
        info["discount"] = float(time_step.discount)
        return obs, float(reward), terminated, bool(last and not terminated), info

    def get_state(self) -> dict[str, Any]:
        """Everything that decides the env's future: MuJoCo's full integration state (warm start
        included), the episode's step counter, the task's RNG and the frame stack (tensors and numbers)."""
        import mujoco
        import torch

        m, d = self.physics.model.ptr, self.physics.data.ptr
        physics = np.empty(mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(m, d, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        rng = self._env.task.random.get_state()
        return {
            "physics": torch.from_numpy(physics),
            "step_count": int(self._env._step_count),
            "reset_next_step": bool(self._env._reset_next_step),
            "task_rng": [torch.from_numpy(rng[1].astype(np.int64)), int(rng[2]), int(rng[3]), float(rng[4])],
            "frames": [torch.from_numpy(f.copy()) for f in self._frames],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned; the next ``step`` is then bit-identical."""
        import mujoco

        m, d = self.physics.model.ptr, self.physics.data.ptr
        physics = state["physics"].numpy()
        if physics.shape != (mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION),):
            raise ValueError(f"physics state of shape {tuple(physics.shape)} does not fit {self.domain}")
        mujoco.mj_setState(m, d, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_step1(m, d)  # dm_control steps with mj_step2 first: recompute what mj_step1 left
        self._env._step_count = int(state["step_count"])
        self._env._reset_next_step = bool(state["reset_next_step"])
        keys, pos, has_gauss, gauss = state["task_rng"]
        self._env.task.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        self._frames.clear()
        self._frames.extend(f.numpy() for f in state["frames"])

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
