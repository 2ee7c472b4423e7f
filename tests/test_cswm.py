"""C-SWM inside the pretraining loop: the hinge loss, the ranking evaluation, the GNN transition, the
ablation switches, transitions carried by the frame source, the CLI end to end (train, resume after
SIGKILL bit-identical, evaluate) and one-line refusals. Synthetic block-pushing episodes, 50 px."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl4rl.config import DataConfig, PretrainConfig
from ssl4rl.data.episodes import Episode, load_episode, save_episode
from ssl4rl.data.sources import MemorySource
from ssl4rl.encoders import build_encoder, load_encoder, save_encoder
from ssl4rl.errors import UserError
from ssl4rl.eval.ranking import evaluate_cswm, ranking_metrics, target_ranks
from ssl4rl.losses.hinge import hinge_loss, state_energy
from ssl4rl.methods import METHODS, MethodContext, build_method, default_config
from ssl4rl.optim import build_optimizer
from ssl4rl.pretrain import held_out_metrics, pretrain
from ssl4rl.worldmodels import load_world_model
from ssl4rl.worldmodels.cswm import CSWM, Transition

from helpers import assert_one_line

ROOT = Path(__file__).resolve().parent.parent
SIZE, GRID, CELL = 50, 5, 10
COLOURS = np.array([(228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0)], np.uint8)
MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])
TINY = dict(hidden_dim=32, batch_size=32)


def _block_episode(rng: np.random.Generator, steps: int, actions: bool = True) -> Episode:
    """A random-policy episode of 5 coloured squares pushed around a 5x5 grid (one 10 px cell each)."""
    cells = rng.choice(GRID * GRID, 5, replace=False)
    pos = np.stack([cells // GRID, cells % GRID], 1)
    frames, states, acts = [], [], []
    for t in range(steps + 1):
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        for i, (r, c) in enumerate(pos):
            img[r * CELL + 1 : (r + 1) * CELL - 1, c * CELL + 1 : (c + 1) * CELL - 1] = COLOURS[i]
        frames.append(img.transpose(2, 0, 1))
        states.append(pos.ravel().astype(np.float32))
        if t < steps:
            a = int(rng.integers(20))
            target = pos[a // 4] + MOVES[a % 4]
            if (target >= 0).all() and (target < GRID).all() and not (pos == target).all(1).any():
                pos = pos.copy()
                pos[a // 4] = target
            acts.append(np.eye(20, dtype=np.float32)[a])
    action_array = np.stack(acts) if actions else np.zeros((steps, 0), np.float32)
    return Episode(frames=np.stack(frames), actions=action_array, rewards=np.zeros(steps, np.float32),
                   discounts=np.ones(steps, np.float32), states=np.stack(states), physics=np.zeros((steps + 1, 0)))


def _write(folder: Path, episodes: int, steps: int, seed: int, actions: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(episodes):
        save_episode(folder / f"episode_{i:06d}.npz", _block_episode(rng, steps, actions))
    return folder


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    """(train folder: 6 episodes x 20 steps, eval folder: 12 episodes x 10 steps)."""
    root = tmp_path_factory.mktemp("blocks")
    return _write(root / "train", 6, 20, seed=0), _write(root / "eval", 12, 10, seed=1)


def _cfg(path, steps=2, **method):
    return PretrainConfig(method=default_config("cswm", **{**TINY, **method}), data=DataConfig(path=str(path)),
                          steps=steps, ckpt_every=steps, log_every=1, progress=False, device="cpu")


# ---------------------------------------------------------------- the loss


def test_hinge_loss_and_energy_by_hand():
    # 2 samples, K=2 slots, D=2; energy = 0.5 / 0.25 * mean over slots of the squared distance
    pred = torch.tensor([[[0.0, 0.0], [1.0, 0.0]], [[3.0, 3.0], [1.0, 1.0]]])
    target = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[3.0, 3.0], [1.0, 1.0]]])
    negative = torch.tensor([[[0.0, 0.0], [0.5, 0.0]], [[1.0, 3.0], [1.0, 1.0]]])
    torch.testing.assert_close(state_energy(pred, target), torch.tensor([1.0, 0.0]))  # 2 * (0 + 1) / 2
    torch.testing.assert_close(state_energy(negative, target), torch.tensor([0.25, 4.0]))  # 2 * 0.25 / 2, 2 * 4 / 2
    loss, pos, neg = hinge_loss(pred, target, negative, margin=1.0, sigma=0.5)
    torch.testing.assert_close(pos, torch.tensor(0.5))  # mean(1, 0)
    torch.testing.assert_close(neg, torch.tensor(0.375))  # mean(max(0, 1 - 0.25), max(0, 1 - 4))
    torch.testing.assert_close(loss, torch.tensor(0.875))
    torch.testing.assert_close(state_energy(pred, target, sigma=1.0), torch.tensor([0.25, 0.0]))


# ---------------------------------------------------------------- ranking


def test_constant_encoder_ranks_last_and_perfect_predictions_rank_first():
    n = 40
    constant = torch.zeros(n, 5, 2)
    states = torch.arange(2 * n, dtype=torch.float32).view(n, 2)  # all different
    m = ranking_metrics(constant, constant.clone(), states)
    assert m["hits_at_1"] == 0.0 and m["mrr"] == pytest.approx(1 / n) and m["n"] == n
    # perfect: encodings are a function of the state; several samples share a state
    g = torch.Generator().manual_seed(0)
    shared = torch.randint(0, 10, (n,), generator=g)  # 10 distinct states among 40 samples
    codes = torch.randn(10, 5, 2, generator=g)[shared]
    same_states = shared.float().unsqueeze(1)
    assert ranking_metrics(codes, codes.clone(), same_states) == {"hits_at_1": 1.0, "mrr": 1.0, "n": n}
    assert ranking_metrics(codes, codes.clone())["hits_at_1"] < 0.5  # without states, duplicates tie against it


def test_ranks_by_hand_chunked_and_nan():
    target = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    pred = torch.tensor([[0.1], [1.9], [2.0], [5.9]])  # 2nd is nearer candidate 2; 4th ties 2 vs 10 -> worse
    assert target_ranks(pred, target).tolist() == [1, 2, 1, 2]
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(301, 5, 2, generator=g), torch.randn(301, 5, 2, generator=g)
    pred[::3] = target[::3] + 0.01 * torch.randn(101, 5, 2, generator=g)
    states = torch.randint(0, 50, (301, 3), generator=g)
    assert torch.equal(target_ranks(pred, target, states, chunk=7), target_ranks(pred, target, states, chunk=1024))
    bad = pred.clone()
    bad[0] = float("nan")
    assert target_ranks(bad, target)[0] == 301  # a NaN prediction is last, never first
    with pytest.raises(UserError) as e:
        ranking_metrics(pred, target[:5])
    assert_one_line(e, "shape")


# ---------------------------------------------------------------- the transition model


def test_gnn_transition_shapes_action_mapping_and_equivariance():
    torch.manual_seed(0)
    tr = Transition(num_slots=5, embedding_dim=2, hidden_dim=16, action_dim=20, action_map="object")
    a = torch.nn.functional.one_hot(torch.tensor([7, 18]), 20).float()  # object 1 direction 3; object 4 direction 2
    per_slot = tr.slot_actions(a)
    assert per_slot.shape == (2, 5, 4)
    assert per_slot[0].nonzero().tolist() == [[1, 3]] and per_slot[1].nonzero().tolist() == [[4, 2]]
    z = torch.randn(2, 5, 2)
    out = tr(z, a)
    assert out.shape == (2, 5, 2)
    # permuting the objects (their states and their action parts) permutes the output
    perm = torch.tensor([3, 0, 4, 1, 2])
    a_perm = per_slot[:, perm].reshape(2, 20)
    torch.testing.assert_close(tr(z[:, perm], a_perm), out[:, perm])
    # edges: a slot's change depends on the other slots; without the GNN it does not
    z2 = z.clone()
    z2[:, 4] += 1.0
    assert not torch.allclose(tr(z2, a)[:, 0], out[:, 0])
    mlp = Transition(5, 2, 16, 20, "object", gnn=False)
    torch.testing.assert_close(mlp(z2, a)[:, 0], mlp(z, a)[:, 0])
    copy = Transition(5, 2, 16, 6, "copy")
    cont = torch.randn(3, 6)
    assert copy.slot_actions(cont).shape == (3, 5, 6) and torch.equal(copy.slot_actions(cont)[:, 2], cont)
    with pytest.raises(UserError) as e:
        Transition(3, 2, 16, 20, "object")
    assert_one_line(e, "num_slots=3", "copy_action=true")


def test_source_carries_the_action_between_frame_and_positive():
    eps = []
    for e in range(3):
        frames = np.zeros((6, 3, 8, 8), np.uint8)
        frames[:, 0, 0, 0] = np.arange(6) + 10 * e  # pixel = frame id
        acts = (np.arange(5, dtype=np.float32) + 10 * e)[:, None].repeat(2, 1)  # action t = frame id of o_t
        eps.append(Episode(frames, acts, np.zeros(5, np.float32), np.ones(5, np.float32), np.zeros((6, 1), np.float32)))
    src = MemorySource.from_episodes(eps, 8, positive="temporal", k=1)
    b = src.sample(64, torch.Generator().manual_seed(0))
    assert torch.equal(b.actions[:, 0], b.images[:, 0, 0, 0].float())
    assert torch.equal(b.positive[:, 0, 0, 0], b.images[:, 0, 0, 0] + 1)
    assert src.action_space() == (2, False)
    assert MemorySource.from_episodes(eps, 8, positive="temporal", k=2).sample(4, torch.Generator()).actions is None


# ---------------------------------------------------------------- the method in the loop


def _model(blocks, seed=0, **method):
    eps_src = MemorySource.from_episodes([load_episode(p) for p in sorted(blocks[0].glob("*.npz"))], SIZE,
                                         positive="temporal", k=1)
    cfg = default_config("cswm", **{**TINY, **method})
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dim, discrete = eps_src.action_space()
    model = build_method(cfg, METHODS["cswm"].own_encoder(cfg), MethodContext(generator=gen, action_dim=dim,
                                                                               discrete_actions=discrete))
    return model, eps_src


def test_method_contract_gradients_validation_and_learning(blocks):
    """The contract of tests/test_methods_contract.py (which needs no actions) on transition batches."""
    model, src = _model(blocks)
    assert model.transition.action_map == "object" and model.transition.slot_action_dim == 4
    batch = src.sample(32, torch.Generator().manual_seed(1))
    loss, logs = model.training_step(batch, 0)
    assert torch.isfinite(loss) and {"loss", "positive", "negative"} <= set(logs)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.object_encoder.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.transition.parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    val = held_out_metrics(model, batch, 1, seed=0)
    assert {"batch_hits_at_1", "batch_mrr"} <= set(val) and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    opt = build_optimizer(model.param_groups(), "adamw", 2e-3)
    first = float(model.training_step(batch, 0)[0].detach())
    for step in range(30):
        loss = model.training_step(batch, step)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.training_step(batch, 30)[0].detach()) < first


@pytest.mark.parametrize("switch", [{"gnn": False}, {"num_slots": 1}, {"objective": "decoder"}, {"extractor": "medium"},
                                    {"extractor": "large", "hidden_dim": 16}, {"copy_action": True}])
def test_ablation_switches_train_and_export(blocks, tmp_path, switch):
    res = pretrain(_cfg(blocks[0], **switch), tmp_path / "run")
    enc = load_encoder(res["encoder"])
    wm = load_world_model(res["worldmodel"], kind="cswm")
    frames = torch.from_numpy(np.load(next(blocks[1].glob("*.npz")))["frames"])
    k = switch.get("num_slots", 5)
    assert enc.encode(frames).shape == (len(frames), k * 2)
    with torch.no_grad():
        torch.testing.assert_close(wm.encode(frames).flatten(1), enc.encode(frames))
    assert wm.transition.gnn == switch.get("gnn", True)
    assert wm.transition.action_map == ("copy" if "copy_action" in switch else "object")
    assert np.isfinite(res["final_val_loss"]) and list(tmp_path.glob("run/cswm_masks_step*.png"))


def test_init_encoder_replaces_the_cnn(blocks, tmp_path):
    torch.manual_seed(0)
    init = build_encoder("conv", image_size=32, channels=8, feature_dim=8, layers=2)
    save_encoder(init, tmp_path / "init", method="test")
    cfg = default_config("cswm", **TINY, init_encoder=str(tmp_path / "init"))
    encoder = METHODS["cswm"].own_encoder(cfg)
    assert encoder.extractor_kind == "backbone"
    for k, v in init.state_dict().items():
        assert torch.equal(encoder.backbone.state_dict()[k], v)
    res = pretrain(_cfg(blocks[0], init_encoder=str(tmp_path / "init")), tmp_path / "run")
    assert load_encoder(res["encoder"]).encode(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8)).shape == (2, 10)
    assert isinstance(load_world_model(res["worldmodel"]), CSWM)


def test_evaluate_cswm_counts_one_sample_per_long_enough_episode(blocks, tmp_path):
    res = pretrain(_cfg(blocks[0]), tmp_path / "run")
    model = load_world_model(res["worldmodel"])
    eps = [load_episode(p) for p in sorted(blocks[1].glob("*.npz"))]
    short = Episode(eps[0].frames[:4], eps[0].actions[:3], eps[0].rewards[:3], eps[0].discounts[:3], eps[0].states[:4])
    out = evaluate_cswm(model, [*eps, short], steps=(1, 5, 10, 50))
    assert [out["steps"][k]["n"] for k in ("1", "5", "10")] == [13, 12, 12] and out["steps"]["50"] is None
    assert all(0 <= out["steps"][k]["hits_at_1"] <= 1 for k in ("1", "5", "10"))


# ---------------------------------------------------------------- the command line


def _cli(script, *args, kill_at=-1):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    wrap = ["tests/kill_at.py", str(kill_at)] if kill_at >= 0 else []
    return subprocess.run([sys.executable, *wrap, script, *args, "progress=false", "device=cpu"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_train_resume_after_sigkill_and_evaluate(blocks, tmp_path):
    common = ["pretrain/run.py", "method=cswm", f"data.path={blocks[0]}", "steps=20", "ckpt_every=10",
              "method.hidden_dim=32", "method.batch_size=32"]
    whole = _cli(*common, f"out={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    cut = _cli(*common, f"out={tmp_path / 'cut'}", kill_at=10)
    assert cut.returncode == -9 and not (tmp_path / "cut" / "results.json").exists()
    rest = _cli(*common, f"out={tmp_path / 'cut'}")
    assert rest.returncode == 0, rest.stderr[-2000:]
    assert "resumed" in (tmp_path / "cut" / "log.txt").read_text()
    for f in ("encoder/encoder.safetensors", "worldmodel/model.safetensors"):
        assert _sha(tmp_path / "cut" / f) == _sha(tmp_path / "whole" / f), f
    ev = _cli("pretrain/eval.py", f"encoder={tmp_path / 'whole' / 'encoder'}", f"data.path={blocks[1]}",
              f"out={tmp_path / 'eval'}")
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    ranking = result["rows"][0]["ranking"]
    assert {k: v["n"] for k, v in ranking["steps"].items()} == {"1": 12, "5": 12, "10": 12}
    assert "H@1 % 10 steps" in (tmp_path / "eval" / "eval.md").read_text() and "MRR" in ev.stdout
    assert list((tmp_path / "eval").glob("cswm_latents_*.png"))


@pytest.mark.parametrize("case", ["image folder", "no actions", "unknown objective"])
def test_cli_refuses_in_one_line(blocks, tmp_path, case):
    import imageio.v3 as iio

    if case == "image folder":
        (tmp_path / "img" / "a").mkdir(parents=True)
        for i in range(4):
            iio.imwrite(tmp_path / "img" / "a" / f"{i}.png", np.zeros((50, 50, 3), np.uint8))
        args, needle = ["data.kind=imagefolder", f"data.path={tmp_path / 'img'}"], "data.kind=frames"
    elif case == "no actions":
        args, needle = [f"data.path={_write(tmp_path / 'noact', 2, 5, 0, actions=False)}"], "action dim 0"
    else:
        args, needle = [f"data.path={blocks[0]}", "method.objective=pixels"], "method.objective"
    p = _cli("pretrain/run.py", "method=cswm", "steps=2", *args, f"out={tmp_path / 'r'}")
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
