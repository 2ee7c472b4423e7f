"""FrameReplayBuffer: each frame stored once, and the same transitions, samples and training as SB3's ReplayBuffer."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from ssl4rl.agents.replay import FrameReplayBuffer
from ssl4rl.envs import make_env

F, S = 3, 8  # frames per stack, image size of the synthetic env


class Frames(gym.Env):
    """Frame-stacked random frames; pixels (0, 0, :3) of each frame hold (env tag, episode % 256, step).
    Episodes end by time limit after ``limit`` steps, or terminate early at a random step (``terminate``).
    With ``shift=False`` every observation is a fresh stack (an env that breaks the frame-stack pattern); with
    ``still=True`` the image never changes."""

    def __init__(self, tag: int = 0, limit: int = 7, terminate: float = 0.0, shift: bool = True, still: bool = False):
        self.observation_space = spaces.Box(0, 255, (3 * F, S, S), np.uint8)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.tag, self.limit, self.terminate, self.shift, self.still, self.episode = tag, limit, terminate, shift, still, -1

    def _frame(self) -> np.ndarray:
        if self.still:
            return np.full((3, S, S), self.tag, dtype=np.uint8)
        frame = self.np_random.integers(0, 256, (3, S, S), dtype=np.uint8)
        frame[:, 0, 0] = self.tag, self.episode % 256, self.step_count
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.step_count = self.episode + 1, 0
        self.stack = np.concatenate([self._frame()] * F)
        return self.stack.copy(), {}

    def step(self, action):
        self.step_count += 1
        new = self._frame()
        self.stack = np.concatenate([self.stack[3:], new] if self.shift else [self._frame() for _ in range(F - 1)] + [new])
        terminated = self.step_count > 1 and self.np_random.random() < self.terminate
        truncated = not terminated and self.step_count >= self.limit
        return self.stack.copy(), float(self.step_count), terminated, truncated, {}


def frames_venv(n_envs: int, **kwargs) -> DummyVecEnv:
    venv = DummyVecEnv([lambda i=i: Frames(tag=i, **kwargs) for i in range(n_envs)])
    venv.seed(0)
    return venv


def feed(venv, buffers, steps: int, seed: int = 0, reset: bool = True) -> list:
    """Step ``venv`` with random actions (after a reset, or on from the last ``feed``), adding each step to every
    buffer as SB3's ``_store_transition`` does; returns the (obs, next_obs, action) triples of every env."""
    rng = np.random.default_rng(seed)
    obs, seen = venv.reset() if reset else venv.last_obs, []
    for _ in range(steps):
        action = rng.uniform(-1, 1, (venv.num_envs, *venv.action_space.shape)).astype(np.float32)
        new_obs, reward, done, infos = venv.step(action)
        next_obs = new_obs.copy()
        for i in np.flatnonzero(done):
            next_obs[i] = infos[i]["terminal_observation"]
        for b in buffers:
            b.add(obs, next_obs, action, reward, done, infos)
        seen += [(obs[i].copy(), next_obs[i].copy(), action[i].copy()) for i in range(venv.num_envs)]
        obs = venv.last_obs = new_obs
    return seen


def both(venv, size: int) -> tuple[FrameReplayBuffer, ReplayBuffer]:
    args = (size, venv.observation_space, venv.action_space, "cpu", venv.num_envs)
    return FrameReplayBuffer(*args), ReplayBuffer(*args)


def sample(buffer, seed: int, batch: int = 64, env=None) -> list[torch.Tensor]:
    np.random.seed(seed)
    return list(buffer.sample(batch, env))


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        assert (x is None and y is None) or (x.dtype == y.dtype and torch.equal(x, y))


def test_refuses_what_it_cannot_store():
    act = spaces.Box(-1, 1, (1,), np.float32)
    for obs, why in ((spaces.Box(0, 1, (9, 8, 8), np.float32), "uint8"), (spaces.Box(0, 255, (8, 8), np.uint8), "3*frames"),
                     (spaces.Box(0, 255, (4, 8, 8), np.uint8), "3*frames")):
        with pytest.raises(ValueError, match=why):
            FrameReplayBuffer(10, obs, act)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        FrameReplayBuffer(10, spaces.Box(0, 255, (9, 8, 8), np.uint8), act, optimize_memory_usage=True)
    buf = FrameReplayBuffer(10, spaces.Box(0, 255, (9, 8, 8), np.uint8), act)
    assert not hasattr(buf, "observations") and not hasattr(buf, "next_observations")


@pytest.mark.parametrize("n_envs", [1, 2])
def test_each_frame_stored_once(n_envs):
    venv = frames_venv(n_envs, limit=5, terminate=0.2)
    buf = FrameReplayBuffer(1000, venv.observation_space, venv.action_space, "cpu", n_envs)
    seen = feed(venv, [buf], 60)
    distinct = {frame.tobytes() for obs, nxt, _ in seen for stack in (obs, nxt) for frame in stack.reshape(F, 3, S, S)}
    assert buf.frame_count == len(distinct)
    assert buf.dones.sum() > 3 * n_envs  # episodes ended inside


@pytest.mark.parametrize("n_envs", [1, 2])
def test_same_samples_as_sb3_across_episode_ends_and_wrap(n_envs):
    venv = frames_venv(n_envs, limit=6, terminate=0.15)
    frame_buf, naive = both(venv, 40)
    for rounds, steps in enumerate((13, 40 // n_envs - 13, 50)):  # part filled, exactly full, wrapped around
        feed(venv, [frame_buf, naive], steps, seed=rounds)
        assert (frame_buf.pos, frame_buf.full) == (naive.pos, naive.full)
        for seed in range(3):
            assert_same(sample(frame_buf, seed), sample(naive, seed))
    norm = VecNormalize(venv, norm_obs=False, norm_reward=True)
    norm.ret_rms.var[...] = 4.0
    assert_same(sample(frame_buf, 7, env=norm), sample(naive, 7, env=norm))
    # time-limit ends bootstrap (done 0 in samples), true terminations do not
    timeouts, dones = naive.timeouts.astype(bool), naive.dones.astype(bool)
    assert (timeouts & dones).any() and (~timeouts & dones).any()
    out = sample(frame_buf, 0, batch=2000)
    np.random.seed(0)
    rows = np.random.randint(0, naive.buffer_size, 2000)
    envs = np.random.randint(0, n_envs, 2000)
    expected = (dones & ~timeouts)[rows, envs].astype(np.float32)
    assert torch.equal(out[3].reshape(-1), torch.from_numpy(expected))
    assert (out[3][torch.from_numpy(timeouts[rows, envs])] == 0).all()


@pytest.mark.parametrize("envs", [[{"shift": False}] * 2, [{"still": True}, {"shift": False}]])
def test_dropped_transitions_are_never_sampled(envs):
    """An env that restacks every frame needs more frames than the store holds, and one whose image never changes
    keeps using its first frame: transitions whose frames were overwritten must not be sampled (each env's newest
    always can be); everything sampled is a transition that was added."""
    venv = DummyVecEnv([lambda i=i, kw=kw: Frames(tag=i, limit=1000, **kw) for i, kw in enumerate(envs)])
    buf = FrameReplayBuffer(40, venv.observation_space, venv.action_space, "cpu", 2)
    seen = []
    for step in range(60):
        seen += feed(venv, [buf], 1, seed=step)
        assert buf._sampleable(np.full(2, (buf.pos - 1) % buf.buffer_size), np.arange(2)).all()
    added = {(o.tobytes(), n.tobytes(), a.tobytes()) for o, n, a in seen}
    rows, envs = np.meshgrid(np.arange(buf.buffer_size), np.arange(2), indexing="ij")
    assert not buf._sampleable(rows.ravel(), envs.ravel()).all()  # some were dropped ...
    np.random.seed(0)
    s = buf.sample(500)
    got = {(o.numpy().tobytes(), n.numpy().tobytes(), a.numpy().tobytes())
           for o, n, a in zip(s.observations, s.next_observations, s.actions, strict=True)}
    assert got <= added and len(got) > 10  # ... and none of them is drawn


def round_trip(buf: FrameReplayBuffer, through_file: bool) -> FrameReplayBuffer:
    arrays = buf.state_arrays()
    if through_file:
        f = io.BytesIO()
        np.savez(f, **arrays)
        f.seek(0)
        with np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    new = FrameReplayBuffer(buf.buffer_size * buf.n_envs, buf.observation_space, buf.action_space, "cpu", buf.n_envs)
    new.load_state_arrays(arrays)
    return new


@pytest.mark.parametrize("through_file", [False, True])
def test_state_round_trip(through_file):
    venv = frames_venv(2, limit=5, terminate=0.2)
    buf = FrameReplayBuffer(30, venv.observation_space, venv.action_space, "cpu", 2)
    feed(venv, [buf], 7)
    assert_same(sample(round_trip(buf, through_file), 1), sample(buf, 1))  # part filled
    feed(venv, [buf], 40, seed=1)
    assert buf.full
    copy, count = round_trip(buf, through_file), buf.frame_count
    assert len(buf.state_arrays()["frames"]) < buf.frame_capacity  # only the frames in use
    assert_same(sample(copy, 2), sample(buf, 2))
    np.random.seed(3)
    a = buf.sample_frames(32, k=2)
    np.random.seed(3)
    b = copy.sample_frames(32, k=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    feed(venv, [buf, copy], 11, seed=2, reset=False)  # and it goes on identically, episodes continuing
    assert buf.frame_count == copy.frame_count < count + 11 * 2 + 2 * 5  # a frame a step (and a reset's)
    assert_same(sample(copy, 4), sample(buf, 4))


def test_state_wraps_the_frame_ring():
    venv = frames_venv(1, limit=50)
    buf = FrameReplayBuffer(20, venv.observation_space, venv.action_space, "cpu", 1)
    wrapped = []
    for seed in range(8):
        feed(venv, [buf], 9, seed=seed)
        wrapped.append(len(buf.state_arrays()["frames_wrapped"]) > 0)
        assert_same(sample(round_trip(buf, True), seed), sample(buf, seed))
    assert any(wrapped) and not all(wrapped)


def test_state_refuses_what_does_not_fit():
    venv = frames_venv(1)
    buf = FrameReplayBuffer(20, venv.observation_space, venv.action_space, "cpu", 1)
    feed(venv, [buf], 9)
    good = buf.state_arrays()
    other = FrameReplayBuffer(20, venv.observation_space, venv.action_space, "cpu", 1)
    bad = [{**good, "rewards": good["rewards"].astype(np.float64)}, {**good, "obs_ids": good["obs_ids"][:-1]},
           {k: v for k, v in good.items() if k != "last_ids"}, {**good, "frames": good["frames"][1:]},
           {**good, "pos": np.array(25, dtype=np.int64)}, {**good, "frames": good["frames"][:, :, :4]}]
    for arrays in bad:
        with pytest.raises(ValueError, match="replay state"):
            other.load_state_arrays(arrays)
    assert other.frame_count == 0 and other.pos == 0 and not other.frames.any()


@pytest.mark.parametrize("n_envs", [1, 2])
def test_sample_frames_temporal_pairs(n_envs):
    venv = frames_venv(n_envs, limit=6, terminate=0.1)
    buf = FrameReplayBuffer(50, venv.observation_space, venv.action_space, "cpu", n_envs)
    seen = feed(venv, [buf], 80)  # wrapped
    tags = np.array([o[-3:, 0, 0] for o, _, _ in seen]).reshape(80, n_envs, 3)[-buf.buffer_size:]  # (env, episode, step)
    for k in (0, 1, 3):
        qualify = {tuple(tags[t, e]) for t in range(len(tags) - k) for e in range(n_envs)
                   if tags[t + k, e, 1] == tags[t, e, 1]}
        np.random.seed(k)
        anchor, positive = buf.sample_frames(2000, k)
        assert anchor.shape == (2000, 3, S, S) and anchor.dtype == torch.uint8
        a = anchor[:, :, 0, 0].numpy()
        assert set(map(tuple, a)) == qualify  # uniform over exactly these: all of them drawn
        if not k:
            assert positive is None
            continue
        p = positive[:, :, 0, 0].numpy().astype(int)
        assert (a[:, :2] == p[:, :2]).all() and (p[:, 2] - a[:, 2] == k).all()  # same env and episode, k steps on
    with pytest.raises(ValueError, match="no transition"):
        buf.sample_frames(4, k=6)  # episodes are at most 6 steps: obs at step 0 and 6 are in different episodes


def test_sac_trains_identically_with_either_buffer():
    """Real cartpole pixels, two envs, episodes cut by a time limit: SAC with FrameReplayBuffer learns
    exactly what it learns with SB3's ReplayBuffer."""

    def train(buffer_class):
        venv = make_vec_env(lambda: gym.wrappers.TimeLimit(make_env("dmc_cartpole", frame_stack=3, image_size=16), 9),
                            n_envs=2, seed=0)
        model = SAC("MlpPolicy", venv, buffer_size=30, learning_starts=10, batch_size=16, seed=0, device="cpu",
                    replay_buffer_class=buffer_class, policy_kwargs={"net_arch": [16]})
        model.learn(40)
        assert model.replay_buffer.full and model.replay_buffer.timeouts.any()
        return [p.detach().clone() for p in model.policy.parameters()], model

    ours, model = train(FrameReplayBuffer)
    theirs, naive = train(None)
    assert_same(ours, theirs)
    frame_buf, naive = model.replay_buffer, naive.replay_buffer
    assert frame_buf.frame_count <= model.num_timesteps + model._episode_num + 2  # a frame a step, and one per reset
    assert_same(sample(frame_buf, 0), sample(naive, 0))


def test_memory():
    obs, act = spaces.Box(0, 255, (9, 64, 64), np.uint8), spaces.Box(-1, 1, (1,), np.float32)
    buf = FrameReplayBuffer(100_000, obs, act)  # np.zeros: pages are not touched
    frame = 3 * 64 * 64
    assert buf.nbytes < 1.3 * frame * 100_000
    assert FrameReplayBuffer.sb3_nbytes(100_000, obs, act) > 4 * buf.nbytes
    for n_envs, a in ((1, act), (2, spaces.Box(-1, 1, (3,), np.float64))):
        sb3 = ReplayBuffer(1000, obs, a, "cpu", n_envs)
        allocated = sum(getattr(sb3, k).nbytes for k in ("observations", "next_observations", "actions", "rewards", "dones",
                                                          "timeouts"))
        assert FrameReplayBuffer.sb3_nbytes(1000, obs, a, n_envs) == allocated
