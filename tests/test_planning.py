"""Planners find known optima: CEM and MPPI on a quadratic, categorical CEM and exhaustive search on discrete scores."""

import itertools

import pytest
import torch

from helpers import assert_one_line
from ssl4rl.errors import UserError
from ssl4rl.planning import CEM, MPPI, CategoricalCEM, all_sequences, exhaustive_search, one_hot

TARGET = torch.tensor([[0.5, -0.3], [-0.7, 0.2], [0.1, 0.9], [0.0, -0.5], [0.3, 0.3]])  # (H=5, A=2), inside [-1, 1]


def quadratic(target: torch.Tensor):
    return lambda actions: -((actions - target) ** 2).sum((1, 2))


@pytest.mark.parametrize("planner", [
    CEM(2, horizon=5, candidates=200, iterations=10, top_k=20),
    MPPI(2, horizon=5, candidates=200, iterations=10, temperature=0.5, top_k=20, min_std=0.0),
])
def test_continuous_planners_find_the_optimum_of_a_quadratic(planner):
    plan = planner.plan(quadratic(TARGET), torch.Generator().manual_seed(0))
    assert plan.shape == (5, 2)
    assert torch.allclose(plan, TARGET, atol=0.05), (plan - TARGET).abs().max()
    action = planner.act(quadratic(TARGET), torch.Generator().manual_seed(0))
    assert torch.allclose(action, plan[0])  # the first action of the plan, and the same plan for the same seed


def test_cem_clips_to_the_action_bounds_and_repeats_with_its_generator():
    beyond = torch.full((3, 1), 5.0)  # optimum outside the bounds: the plan sits on the upper bound
    cem = CEM(1, horizon=3, candidates=100, iterations=5, top_k=10, low=-0.5, high=0.5)
    plan = cem.plan(quadratic(beyond), torch.Generator().manual_seed(1))
    assert torch.allclose(plan, torch.full((3, 1), 0.5), atol=1e-3)
    seen = []
    cem.plan(lambda a: seen.append(a) or -a.sum((1, 2)), torch.Generator().manual_seed(1))
    assert all(((a >= -0.5) & (a <= 0.5)).all() for a in seen)  # every candidate is within the bounds
    a = CEM(2, horizon=5, iterations=2).plan(quadratic(TARGET), torch.Generator().manual_seed(3))
    b = CEM(2, horizon=5, iterations=2).plan(quadratic(TARGET), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_warm_start_shifts_the_previous_plan():
    """Receding horizon: at step i the optimum is a long trajectory from i on; a warm start keeps what was found."""
    trajectory = torch.randn(20, 2, generator=torch.Generator().manual_seed(2)).clamp(-0.9, 0.9)
    errors = {}
    for warm in (False, True):
        planner = CEM(2, horizon=5, candidates=30, iterations=2, top_k=5, init_std=0.3, warm_start=warm)
        for i in range(12):
            plan = planner.plan(quadratic(trajectory[i: i + 5]), torch.Generator().manual_seed(i))
        errors[warm] = float(((plan - trajectory[11:16])[:-1] ** 2).sum())
    assert errors[True] < errors[False] / 4, errors
    planner.reset()  # forgets the previous plan: the next one starts from zero again
    cold = CEM(2, horizon=5, candidates=30, iterations=2, top_k=5, init_std=0.3)
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(planner.plan(quadratic(TARGET), g()), cold.plan(quadratic(TARGET), g()))


def test_nan_scores_never_win():
    def score(actions):
        s = -((actions - 0.5) ** 2).sum((1, 2))
        s[actions[:, 0, 0] < 0] = float("nan")  # half the candidates are NaN
        return s

    plan = CEM(1, horizon=2, candidates=100, iterations=5, top_k=10).plan(score, torch.Generator().manual_seed(0))
    assert torch.isfinite(plan).all() and plan[0, 0] > 0


def test_categorical_cem_finds_the_best_sequence_of_a_separable_score():
    payoff = torch.randn(3, 20, generator=torch.Generator().manual_seed(0))  # payoff[t, action]
    best = payoff.argmax(1)
    score = lambda onehot: (onehot * payoff).sum((1, 2))
    plan = CategoricalCEM(20, horizon=3, candidates=300, iterations=6, top_k=30).plan(score, torch.Generator().manual_seed(0))
    assert plan.tolist() == best.tolist()


def test_exhaustive_search_is_exact_on_a_non_separable_score():
    table = torch.randn(20, 20, generator=torch.Generator().manual_seed(1))  # pairs only: no step decides alone
    score = lambda onehot: torch.einsum("na,ab,nb->n", onehot[:, 0], table, onehot[:, 1])
    seq, value = exhaustive_search(score, 20, 2, batch_size=37)  # batches that do not divide 400
    brute = max(itertools.product(range(20), repeat=2), key=lambda ab: float(table[ab]))
    assert tuple(seq.tolist()) == brute and value == pytest.approx(float(table[brute]))
    assert all_sequences(20, 2).shape == (400, 2) and one_hot(seq, 20).shape == (2, 20)
    single, _ = exhaustive_search(lambda oh: oh[:, 0, 7], 20, 1)
    assert single.tolist() == [7]


def test_bad_planner_settings_are_one_line_errors():
    with pytest.raises(UserError) as e:
        CEM(2, candidates=10, top_k=20)
    assert_one_line(e, "top_k=20", "candidates=10")
    with pytest.raises(UserError) as e:
        CEM(2, horizon=0)
    assert_one_line(e, "horizon=0")
    with pytest.raises(UserError) as e:
        exhaustive_search(lambda a: a.sum((1, 2)), 20, 5)
    assert_one_line(e, "20^5", "CategoricalCEM")
    with pytest.raises(UserError) as e:
        CEM(1, low=1.0, high=-1.0)
    assert_one_line(e, "low=1.0")
