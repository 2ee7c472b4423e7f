import json

import numpy as np
import pytest
import torch

from ssl4rl.data import (
    Episode,
    FrameDataset,
    PairDataset,
    SequenceDataset,
    dataset_meta,
    episode_paths,
    load_episode,
    load_split,
    resize_frames,
    save_episode,
    split_episodes,
)
from ssl4rl.errors import UserError
from helpers import assert_one_line


def _random_episode(t=5, size=8, a=2, s=4, p=3, seed=0):
    rng = np.random.default_rng(seed)
    return Episode(
        frames=rng.integers(0, 256, (t + 1, 3, size, size), dtype=np.uint8),
        actions=rng.uniform(-1, 1, (t, a)).astype(np.float32),
        rewards=rng.random(t).astype(np.float32),
        discounts=np.ones(t, np.float32),
        states=rng.normal(size=(t + 1, s)).astype(np.float32),
        physics=rng.normal(size=(t + 1, p)),
    )



# ---------------------------------------------------------------- file format
def test_save_load_round_trip(tmp_path):
    ep = _random_episode()
    path = tmp_path / "episode_000000.npz"
    save_episode(path, ep)
    assert [p.name for p in tmp_path.iterdir()] == ["episode_000000.npz"]  # no temp files left
    back = load_episode(path)
    for key in ("frames", "actions", "rewards", "discounts", "states", "physics"):
        a, b = getattr(ep, key), getattr(back, key)
        assert a.dtype == b.dtype, key
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert len(back) == 5

    # overwriting in place also leaves no temp files and gives the new content
    ep2 = _random_episode(t=3, seed=1)
    save_episode(path, ep2)
    assert [p.name for p in tmp_path.iterdir()] == ["episode_000000.npz"]
    np.testing.assert_array_equal(load_episode(path).frames, ep2.frames)


def test_save_rejects_inconsistent_episode(tmp_path):
    ep = _random_episode()
    ep.states = ep.states[:-1]
    with pytest.raises(UserError) as exc:
        save_episode(tmp_path / "episode_000000.npz", ep)
    assert_one_line(exc, "states")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_truncated_file(tmp_path):
    path = tmp_path / "episode_000000.npz"
    save_episode(path, _random_episode())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as exc:
        load_episode(path)
    assert_one_line(exc, path)


def test_file_missing_keys(tmp_path):
    path = tmp_path / "episode_000000.npz"
    np.savez(path, frames=np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(UserError) as exc:
        load_episode(path)
    assert_one_line(exc, path, "actions")


def test_missing_file(tmp_path):
    path = tmp_path / "episode_000123.npz"
    with pytest.raises(UserError) as exc:
        load_episode(path)
    assert_one_line(exc, path)


def test_episode_paths_errors(tmp_path):
    missing = tmp_path / "nothing_here"
    with pytest.raises(UserError) as exc:
        episode_paths(missing)
    assert_one_line(exc, missing)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "meta.json").write_text("{}")
    with pytest.raises(UserError) as exc:
        episode_paths(empty)
    assert_one_line(exc, empty)


# ---------------------------------------------------------------- collected data
def test_collected_dataset(tiny_dataset):
    meta = dataset_meta(tiny_dataset)
    assert meta == json.loads((tiny_dataset / "meta.json").read_text())
    assert meta["env"] == "dmc_cartpole"
    assert meta["episodes"] == 3
    assert meta["image_size"] == 32
    assert meta["action_repeat"] == 8
    assert meta["state_dim"] == 5
    assert meta["action_dim"] == 1
    assert meta["seed"] == 0

    paths = episode_paths(tiny_dataset)
    assert [p.name for p in paths] == [f"episode_{i:06d}.npz" for i in range(3)]
    assert not [p for p in tiny_dataset.iterdir() if p.name.endswith(".tmp")]

    total = 0
    for p in paths:
        ep = load_episode(p)
        t = len(ep)
        assert t == 1000 // 8  # cartpole: 1000 control steps, action repeat 8
        assert ep.frames.shape == (t + 1, 3, 32, 32) and ep.frames.dtype == np.uint8
        assert ep.actions.shape == (t, 1) and ep.actions.dtype == np.float32
        assert np.all(np.abs(ep.actions) <= 1)
        assert ep.rewards.shape == (t,) and ep.discounts.shape == (t,)
        assert ep.states.shape == (t + 1, 5) and ep.states.dtype == np.float32
        assert len(ep.physics) == t + 1 and ep.physics.dtype == np.float64
        assert ep.frames.max() > ep.frames.min()
        total += t + 1
    assert meta["frames"] == total
    # episodes differ (each reset uses its own seed)
    a, b = load_episode(paths[0]), load_episode(paths[1])
    assert not np.array_equal(a.states[0], b.states[0])


def test_collect_is_reproducible(tiny_dataset, tmp_path):
    from ssl4rl.data import collect

    collect("dmc_cartpole", episodes=1, out=tmp_path, seed=0, image_size=32, progress=False)
    a = load_episode(tmp_path / "episode_000000.npz")
    b = load_episode(episode_paths(tiny_dataset)[0])
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.states, b.states)


# ---------------------------------------------------------------- splits
def test_split_episodes(tmp_path):
    paths = [tmp_path / f"episode_{i:06d}.npz" for i in range(10)]
    train, test = split_episodes(paths, holdout=0.2, seed=0)
    assert len(test) == 2 and len(train) == 8
    assert set(train).isdisjoint(test)
    assert set(train) | set(test) == set(paths)
    assert split_episodes(list(reversed(paths)), holdout=0.2, seed=0) == (train, test)
    others = {tuple(split_episodes(paths, holdout=0.2, seed=s)[1]) for s in range(1, 8)}
    assert len(others | {tuple(test)}) > 1  # the seed matters

    # tiny holdouts still hold out one episode, but never all of them
    train, test = split_episodes(paths[:2], holdout=0.01, seed=0)
    assert len(test) == 1 and len(train) == 1
    train, test = split_episodes(paths[:3], holdout=0.99, seed=0)
    assert len(test) == 2 and len(train) == 1
    assert split_episodes(paths[:1], holdout=0.5) == (paths[:1], [])


def test_load_split(tiny_dataset):
    train, test = load_split(tiny_dataset, holdout=0.2, seed=0)
    assert len(train) == 2 and len(test) == 1
    starts = [e.states[0].tobytes() for e in train + test]
    assert len(set(starts)) == 3  # three distinct episodes, none duplicated


# ---------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def episodes(tiny_dataset):
    return [load_episode(p) for p in episode_paths(tiny_dataset)]


def test_frame_dataset(episodes):
    ds = FrameDataset(episodes)
    n = sum(len(e.frames) for e in episodes)
    assert len(ds) == n
    assert ds[0].shape == (3, 32, 32) and ds[0].dtype == torch.uint8
    assert torch.equal(ds[0], torch.from_numpy(episodes[0].frames[0]))
    last = episodes[-1]
    assert torch.equal(ds[n - 1], torch.from_numpy(last.frames[-1]))
    assert ds.states.shape == (n, 5)
    batch = ds.sample(6, torch.Generator().manual_seed(0))
    assert batch.shape == (6, 3, 32, 32) and batch.dtype == torch.uint8
    again = ds.sample(6, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)


def test_pair_dataset(episodes):
    k = 2
    ds = PairDataset(episodes, k=k)
    assert len(ds) == sum(len(e.frames) - k for e in episodes)

    # map every frame back to its (episode, time) so we can check each pair
    where = {}
    for ei, ep in enumerate(episodes):
        for t, f in enumerate(ep.frames):
            where.setdefault(f.tobytes(), []).append((ei, t))

    checked = 0
    for i in range(len(ds)):
        item = ds[i]
        assert item["obs"].shape == (3, 32, 32) and item["next_obs"].shape == (3, 32, 32)
        assert item["actions"].shape == (k, 1)
        e, t = (int(v) for v in ds.index[i])
        ep = episodes[e]
        assert t + k < len(ep.frames)  # never crosses into the next episode
        np.testing.assert_array_equal(item["obs"].numpy(), ep.frames[t])
        np.testing.assert_array_equal(item["next_obs"].numpy(), ep.frames[t + k])
        np.testing.assert_array_equal(item["actions"].numpy(), ep.actions[t : t + k])
        assert float(item["reward"]) == pytest.approx(float(ep.rewards[t : t + k].sum()))
        # independent of the index: obs and next_obs come from one episode, k apart
        locs_obs = where[item["obs"].numpy().tobytes()]
        locs_next = set(where[item["next_obs"].numpy().tobytes()])
        assert any((e2, t2 + k) in locs_next for e2, t2 in locs_obs)
        checked += 1
    assert checked == len(ds)

    # the last k frames of each episode never start a pair
    idx = ds.index
    for ei, ep in enumerate(episodes):
        starts = idx[idx[:, 0] == ei, 1]
        assert starts.min() == 0 and starts.max() == len(ep.frames) - 1 - k


def test_sequence_dataset(episodes):
    ds = SequenceDataset(episodes, length=4)
    assert len(ds) == sum(len(e.frames) - 3 for e in episodes)
    item = ds[len(ds) - 1]
    assert item["frames"].shape == (4, 3, 32, 32) and item["frames"].dtype == torch.uint8
    assert item["actions"].shape == (3, 1)
    assert item["rewards"].shape == (3,)
    assert item["states"].shape == (4, 5)
    last = episodes[-1]
    np.testing.assert_array_equal(item["frames"].numpy(), last.frames[-4:])
    np.testing.assert_array_equal(item["states"].numpy(), last.states[-4:])
    np.testing.assert_array_equal(item["actions"].numpy(), last.actions[-3:])
    np.testing.assert_array_equal(item["rewards"].numpy(), last.rewards[-3:])


def test_resize(episodes):
    for ds in (FrameDataset(episodes, image_size=16), PairDataset(episodes, k=2, image_size=16)):
        frames = ds.store.frames
        assert frames.dtype == torch.uint8 and frames.shape[1:] == (3, 16, 16)
        assert frames.shape[0] == sum(len(e.frames) for e in episodes)
    item = PairDataset(episodes, k=2, image_size=16)[0]
    assert item["obs"].shape == (3, 16, 16) and item["next_obs"].shape == (3, 16, 16)
    seq = SequenceDataset(episodes, length=4, image_size=16)[0]
    assert seq["frames"].shape == (4, 3, 16, 16)

    # resize of a constant image stays that constant; same size is a no-op
    const = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(resize_frames(const, 16), torch.full((2, 3, 16, 16), 77, dtype=torch.uint8))
    x = torch.from_numpy(episodes[0].frames[:3])
    assert resize_frames(x, 32) is x
    small = resize_frames(x, 16)
    # area-like averaging: the mean colour is preserved closely
    assert abs(small.float().mean() - x.float().mean()) < 2.0
