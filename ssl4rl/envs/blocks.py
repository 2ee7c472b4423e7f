"""Block pushing (C-SWM protocol, Kipf et al. ICLR 2020): 5 objects on a 5x5 grid, 20 discrete actions.

Action ``a`` moves object ``a // 4`` one cell in direction ``a % 4``: 0 up (row - 1), 1 right
(col + 1), 2 down (row + 1), 3 left (col - 1). A move off the grid or into another object does
nothing. Rewards are always 0 and episodes never terminate; they are truncated after ``max_steps``
agent steps (100 by default, the C-SWM training episodes). Row 0 is the top of a 2-D image and the
far side of the 3-D view.

- ``Shapes2D`` (``shapes2d``): flat shapes drawn with numpy, one cell of ``image_size // 5`` pixels
  each (10 px at the default 50 px); object ``i`` has colour ``COLORS[i]`` and shape
  ``SHAPES[i % 3]`` (circle, triangle, square), on black.
- ``Cubes3D`` (``cubes3d``): coloured cubes on a grey floor seen at an angle, rendered by MuJoCo
  (mocap bodies placed by position, ``mj_forward``, no physics simulation).

Observations are uint8 ``(3 * frame_stack, S, S)`` frames (``S = image_size``, a multiple of 5;
``frame_stack`` 1 by default: the grid is fully observed) or, with ``obs_type='state'``, the
positions. ``info['state']`` holds the positions as float32 ``(10,)`` = (row, col) per object and
``info['discount']`` is 1.0.
"""

from __future__ import annotations

import abc

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from ssl4rl._gl import gl_guard
from ssl4rl.errors import UserError
from ssl4rl.utils import push_frame

GRID = 5  # cells per side
N_OBJECTS = 5
N_ACTIONS = 4 * N_OBJECTS
DEFAULT_IMAGE_SIZE = 50  # 10 px per cell, as in C-SWM
DEFAULT_MAX_STEPS = 100  # agent steps per training episode in C-SWM
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 20, 1000
DIRECTIONS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])  # (d_row, d_col): up, right, down, left
DIRECTION_NAMES = ("up", "right", "down", "left")
COLORS = np.array([(228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0)], np.uint8)
SHAPES = ("circle", "triangle", "square")


def check_image_size(image_size: Any) -> int:
    """The image size as an int, or a one-line UserError unless it is a multiple of 5 in range."""
    if (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
            or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE or image_size % GRID):
        raise UserError(f"image_size={image_size!r}: block envs draw a {GRID}x{GRID} grid; use a multiple of {GRID} "
                        f"from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (default {DEFAULT_IMAGE_SIZE})")
    return int(image_size)


def check_positions(positions: Any) -> np.ndarray:
    """Object positions as int64 ``(5, 2)`` (row, col); accepts ``(10,)`` or ``(5, 2)`` whole numbers in the grid,
    each object in its own cell, or a one-line UserError."""
    a = np.asarray(positions.numpy() if hasattr(positions, "numpy") else positions)
    if a.size != 2 * N_OBJECTS or not np.issubdtype(a.dtype, np.number):
        raise UserError(f"positions of shape {a.shape}: give (row, col) of each of the {N_OBJECTS} objects, "
                        "shape (10,) or (5, 2)")
    a = a.reshape(N_OBJECTS, 2)
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)) or a.min() < 0 or a.max() > GRID - 1:
        raise UserError(f"positions {a.ravel().tolist()}: rows and columns must be whole numbers from 0 to {GRID - 1}")
    a = a.astype(np.int64)
    if len({tuple(p) for p in a}) != N_OBJECTS:
        raise UserError(f"positions {a.ravel().tolist()}: two objects share a cell; give each object its own cell")
    return a


class BlockPushingEnv(gym.Env, abc.ABC):
    """The grid world and its gymnasium API; subclasses draw the frames (``render``)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(
        self,
        image_size: int = DEFAULT_IMAGE_SIZE,
        frame_stack: int = 1,
        max_steps: int = DEFAULT_MAX_STEPS,
        obs_type: str = "pixels",
        seed: int | None = None,
        render_mode: str | None = "rgb_array",
    ) -> None:
        if obs_type not in ("pixels", "state"):
            raise UserError(f"unknown obs_type '{obs_type}'; valid: pixels, state")
        for name, value, high in (("frame_stack", frame_stack, 100), ("max_steps", max_steps, 100_000)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= high:
                raise UserError(f"{name}={value!r}: must be a whole number from 1 to {high}")
        self.image_size = check_image_size(image_size)
        self.cell = self.image_size // GRID
        self.frame_stack = int(frame_stack)
        self.max_steps = int(max_steps)
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.action_repeat = 1
        self.state_names = [f"obj{i}_{axis}" for i in range(N_OBJECTS) for axis in ("row", "col")]
        self.state_dim = len(self.state_names)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        if obs_type == "pixels":
            shape = (3 * self.frame_stack, self.image_size, self.image_size)
            self.observation_space = gym.spaces.Box(0, 255, shape, dtype=np.uint8)
        else:
            self.observation_space = gym.spaces.Box(0, GRID - 1, (self.state_dim,), dtype=np.float32)
        self._pos = np.zeros((N_OBJECTS, 2), np.int64)
        self._steps = 0
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)
        if seed is not None:  # make_env(..., seed=s) then reset() is repeatable
            super().reset(seed=seed)

    @property
    def positions(self) -> np.ndarray:
        """A copy of the (row, col) of each object, int64 (5, 2)."""
        return self._pos.copy()

    @abc.abstractmethod
    def render(self) -> np.ndarray:
        """The current frame as (H, W, 3) uint8."""

    def _observe(self, reset: bool) -> tuple[np.ndarray, dict[str, Any]]:
        state = self._pos.astype(np.float32).ravel()
        info = {"state": state, "discount": 1.0}
        if self.obs_type == "state":
            return state.copy(), info
        return push_frame(self._frames, self.render().transpose(2, 0, 1), reset), info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        cells = self.np_random.choice(GRID * GRID, N_OBJECTS, replace=False)
        self._pos = np.stack([cells // GRID, cells % GRID], axis=1).astype(np.int64)
        self._steps = 0
        return self._observe(reset=True)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action)
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a.item()) < N_ACTIONS:
            raise UserError(f"action={action!r}: must be one whole number from 0 to {N_ACTIONS - 1} (object * 4 + direction)")
        obj, direction = divmod(int(a.item()), 4)
        target = self._pos[obj] + DIRECTIONS[direction]
        inside = bool(np.all((target >= 0) & (target < GRID)))
        if inside and not np.any(np.all(self._pos == target, axis=1)):
            self._pos[obj] = target
        self._steps += 1
        obs, info = self._observe(reset=False)
        return obs, 0.0, False, self._steps >= self.max_steps, info

    def get_state(self) -> dict[str, Any]:
        """Everything that decides the env's future (tensors and numbers, for ``torch.save``): positions, step counter,
        the reset RNG and the frame stack."""
        import torch

        return {
            "positions": torch.from_numpy(self._pos.copy()),
            "step_count": int(self._steps),
            "rng": self.np_random.bit_generator.state,
            "frames": [torch.from_numpy(f.copy()) for f in self._frames],
        }

    def set_state(self, state: Any) -> None:
        """Restore what ``get_state`` returned (then the next ``step`` is identical), or place the objects at
        ``positions`` ((10,) or (5, 2), e.g. ``info['state']`` of another step) and restart the frame stack from
        the new frame; ``render()`` then shows that configuration (goal images)."""
        if isinstance(state, dict):
            self._pos = check_positions(state["positions"])
            self._steps = int(state["step_count"])
            self.np_random.bit_generator.state = state["rng"]
            self._frames.clear()
            self._frames.extend(f.numpy() for f in state["frames"])
            return
        self._pos = check_positions(state)
        if self.obs_type == "pixels":
            self._observe(reset=True)


def _shape_mask(shape: str, cell: int) -> np.ndarray:
    """A (cell, cell) bool mask of one shape filling its cell."""
    y, x = np.mgrid[:cell, :cell] + 0.5  # pixel centres
    if shape == "circle":
        return (y - cell / 2) ** 2 + (x - cell / 2) ** 2 <= (cell / 2) ** 2
    if shape == "triangle":  # apex at the top centre, base along the bottom
        return np.abs(x - cell / 2) <= y / 2
    return np.ones((cell, cell), bool)


class Shapes2D(BlockPushingEnv):
    """2-D shapes: object ``i`` is a ``SHAPES[i % 3]`` in ``COLORS[i]`` on black, drawn with numpy."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        masks = [_shape_mask(SHAPES[i % len(SHAPES)], self.cell) for i in range(N_OBJECTS)]
        self._masks = np.stack(masks)  # (5, cell, cell)

    def render(self) -> np.ndarray:
        c = self.cell
        img = np.zeros((GRID, c, GRID, c, 3), np.uint8)  # (row, y, col, x, rgb): cells are index blocks
        for i, (r, col) in enumerate(self._pos):
            img[r, :, col][self._masks[i]] = COLORS[i]
        return img.reshape(GRID * c, GRID * c, 3)


def _cubes_xml(image_size: int) -> str:
    """MJCF of a floor, five mocap cubes and a camera 55 degrees above the horizon, south of the grid."""
    elevation = np.deg2rad(55)
    view = np.array([0.0, np.cos(elevation), -np.sin(elevation)])  # looking north and down
    cam = np.array([0.0, -0.3, 0.4]) - 11.0 * view
    cubes = "\n".join(
        f'<body name="cube{i}" mocap="true" pos="0 0 -5"><geom type="box" size=".42 .42 .42" '
        f'rgba="{" ".join(f"{v / 255:.3f}" for v in COLORS[i])} 1"/></body>'
        for i in range(N_OBJECTS)
    )
    return f"""<mujoco model="cubes3d">
  <visual>
    <global offwidth="{image_size}" offheight="{image_size}"/>
    <headlight ambient=".35 .35 .35" diffuse=".45 .45 .45" specular="0 0 0"/>
  </visual>
  <worldbody>
    <light directional="true" pos="0 0 5" dir=".4 .6 -1" diffuse=".5 .5 .5" specular="0 0 0"/>
    <geom type="plane" size="2.6 2.6 .1" rgba=".55 .55 .55 1"/>
    <camera name="view" pos="{cam[0]:.4f} {cam[1]:.4f} {cam[2]:.4f}" fovy="32"
            xyaxes="1 0 0 0 {np.sin(elevation):.4f} {np.cos(elevation):.4f}"/>
    {cubes}
  </worldbody>
</mujoco>"""


class Cubes3D(BlockPushingEnv):
    """3-D cubes: object ``i`` is a cube in ``COLORS[i]``, rendered by MuJoCo (offscreen, as the dm_control envs)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with gl_guard(render=self.obs_type == "pixels"):
            from dm_control import mujoco as dm_mujoco

        self.physics = dm_mujoco.Physics.from_xml_string(_cubes_xml(self.image_size))
        self._renderer: Any = None

    def render(self) -> np.ndarray:
        from ssl4rl.envs.dmc import FastRenderer

        mocap = self.physics.data.mocap_pos
        mocap[:, 0] = self._pos[:, 1] - (GRID - 1) / 2  # x east = column
        mocap[:, 1] = (GRID - 1) / 2 - self._pos[:, 0]  # y north = row 0
        mocap[:, 2] = 0.42
        self.physics.forward()
        if self._renderer is None:
            self._renderer = FastRenderer(self.physics, self.image_size, camera=0)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
