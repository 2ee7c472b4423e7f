"""C of the recurrent world model (Ha & Schmidhuber, "World Models", 2018): a linear controller
``a = tanh(W [z, h] + b)`` trained with CMA-ES (the ``cma`` package), plus CMA-ES state that is saved and
restored without pickle.

A population of controllers is a (P, n) array of flat parameter vectors (W row-major, then b);
``batched_actions`` evaluates them all at once on (P, R, in_dim) inputs, R rollouts per candidate.

CMA-ES state: ``es_state(es)`` returns tensors and plain numbers (``torch.save``/``torch.load(weights_only=True)``
safe) holding everything that decides the future of a running ``cma.CMAEvolutionStrategy`` (full covariance,
no mirrors, CSA step size, the defaults here): mean and old means, sigma, C, B, D and the eigen-decomposition
counters, the evolution paths pc and ps, countiter, countevals, the best solution, the fitness history
(termination and flat-fitness checks) and the state of its random normal source (a PCG64 generator of its
own, so the global numpy RNG is never touched). ``restore_es`` builds a fresh strategy with the same
constructor arguments and writes that state into it; the next ``ask()`` and every later generation are
then identical to the uninterrupted strategy's (tests/test_worldmodels_vmc.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ssl4rl.errors import UserError
from ssl4rl.worldmodels.io import WorldModel, register_world_model

if TYPE_CHECKING:  # cma takes over a second to import: only the CMA-ES functions import it
    import cma


@register_world_model
class LinearController(WorldModel):
    """``a = tanh(W x + b)`` with x = [z, h]; W (action_dim, in_dim), b (action_dim)."""

    kind = "controller"

    def __init__(self, in_dim: int, action_dim: int) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("action_dim", action_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
                raise UserError(f"{name}={value!r}: must be a whole number from 1 to 1000000")
        self.in_dim, self.action_dim = in_dim, action_dim
        self.weight = nn.Parameter(torch.zeros(action_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(action_dim))

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "action_dim": self.action_dim}

    @staticmethod
    def n_params(in_dim: int, action_dim: int) -> int:
        """Length of the flat parameter vector CMA-ES searches."""
        return action_dim * (in_dim + 1)

    @classmethod
    def from_flat(cls, params: np.ndarray, in_dim: int, action_dim: int) -> LinearController:
        """A controller holding the flat vector ``params`` (W row-major, then b)."""
        c = cls(in_dim, action_dim)
        flat = torch.as_tensor(np.asarray(params), dtype=torch.float32)
        if flat.shape != (cls.n_params(in_dim, action_dim),):
            raise UserError(f"{tuple(flat.shape)} parameters do not fit a controller of {in_dim} inputs and {action_dim} actions")
        with torch.no_grad():
            c.weight.copy_(flat[: action_dim * in_dim].view(action_dim, in_dim))
            c.bias.copy_(flat[action_dim * in_dim:])
        return c

    def flat(self) -> np.ndarray:
        """The flat parameter vector (float32)."""
        return torch.cat([self.weight.detach().flatten(), self.bias.detach()]).cpu().numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs [z, h] (..., in_dim) -> actions in [-1, 1] (..., action_dim)."""
        return torch.tanh(x @ self.weight.T + self.bias)


def batched_actions(params: torch.Tensor, x: torch.Tensor, action_dim: int) -> torch.Tensor:
    """P controllers' flat parameters (P, n) applied to their own inputs (P, R, in_dim) -> actions (P, R, action_dim)."""
    p, _, in_dim = x.shape
    w = params[:, : action_dim * in_dim].reshape(p, action_dim, in_dim)
    b = params[:, action_dim * in_dim:]
    return torch.tanh(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))


# --- CMA-ES ----------------------------------------------------------------------------------------


class NormalSource:
    """N(0, 1) numbers for ``cma`` (its ``randn`` option) from a PCG64 generator whose state can be saved."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def __call__(self, number: int, dimension: int) -> np.ndarray:
        return self.rng.standard_normal((number, dimension))

    def get_state(self) -> dict[str, Any]:
        """The generator state with its 128-bit integers as decimal strings (weights_only-safe)."""
        s = self.rng.bit_generator.state
        return {"state": str(s["state"]["state"]), "inc": str(s["state"]["inc"]),
                "has_uint32": int(s["has_uint32"]), "uinteger": int(s["uinteger"])}

    def set_state(self, d: dict[str, Any]) -> None:
        self.rng.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": int(d["state"]), "inc": int(d["inc"])},
                                        "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}


def make_es(dim: int, sigma0: float, popsize: int, seed: int, x0: np.ndarray | None = None) -> cma.CMAEvolutionStrategy:
    """A quiet CMA-ES over ``dim`` parameters from ``x0`` (zeros), step size ``sigma0``, its own seeded normal
    source, no mirrored samples and no files written."""
    import cma

    if dim < 2:
        raise UserError(f"CMA-ES needs at least 2 parameters, got {dim}")
    if popsize < 3:
        raise UserError(f"popsize={popsize}: CMA-ES needs a population of at least 3")
    opts = {"popsize": popsize, "seed": np.nan, "randn": NormalSource(seed), "CMA_mirrors": 0,
            "verbose": -9, "verb_log": 0, "verb_disp": 0}
    return cma.CMAEvolutionStrategy(np.zeros(dim) if x0 is None else np.asarray(x0, dtype=float), sigma0, opts)


# (object path inside the strategy, attribute): the state that decides later populations
_FIELDS = (
    ("", "mean"), ("", "mean_old"), ("", "mean_old_old"), ("", "mean_after_tell"), ("", "sigma"), ("", "_sigma_old"),
    ("", "pc"), ("", "pc2"), ("", "pc_neg"), ("", "countiter"),
    ("", "countevals"), ("", "itereigenupdated"), ("", "count_eigen"),
    ("sm", "C"), ("sm", "B"), ("sm", "D"), ("sm", "count_eigen"), ("sm", "count_tell"), ("sm", "last_update"),
    ("sm", "_corr_condition"), ("sm", "_corr_condition_count_eigen"),
    ("adapt_sigma", "ps"), ("adapt_sigma", "delta"), ("adapt_sigma", "_ps_updated_iteration"),
    ("sigma_vec", "scaling"),
    ("best", "x"), ("best", "x_geno"), ("best", "f"), ("best", "evals"), ("best", "evalsall"), ("best", "compared"),
    ("fit", "hist"), ("fit", "histbest"), ("fit", "histmedian"), ("fit", "median0"), ("fit", "median_min"),
    ("fit", "median_previous"), ("fit", "median_got_worse"), ("fit", "flatfit_iterations"),
)


_ABSENT = object()  # an attribute the strategy creates later (mean_old_old after two generations)


def _pack(v: Any) -> Any:
    """A value of the strategy as tensors and plain numbers, tagged so ``_unpack`` gives back the same type."""
    if v is _ABSENT:
        return {"absent": True}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.ndarray):  # memory order kept: BLAS may round differently on a transposed layout
        return {"array": torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)), "fortran": not v.flags.c_contiguous}
    if isinstance(v, list):
        return {"list": torch.tensor([float(x) for x in v], dtype=torch.float64)}
    if isinstance(v, (int, np.integer)):
        return int(v)
    return float(v)


def _unpack(v: Any) -> Any:
    if isinstance(v, dict) and "array" in v:
        a = v["array"].numpy()
        return np.asfortranarray(a) if v["fortran"] else a.copy()
    if isinstance(v, dict) and "list" in v:
        return v["list"].tolist()
    return v


def es_state(es: cma.CMAEvolutionStrategy) -> dict[str, Any]:
    """What ``restore_es`` needs to continue ``es`` exactly (call between ``tell`` and the next ``ask``)."""
    if not es._flgtelldone and es.countiter > 0:
        raise RuntimeError("save the CMA-ES state after tell(), before the next ask()")
    fields = {f"{obj}.{name}": _pack(getattr(getattr(es, obj) if obj else es, name, _ABSENT)) for obj, name in _FIELDS}
    return {"dim": int(es.N), "sigma0": float(es.sigma0), "popsize": int(es.popsize), "x0": torch.from_numpy(np.array(es.x0)),
            "fields": fields, "randn": es.opts["randn"].get_state()}


def restore_es(state: dict[str, Any]) -> cma.CMAEvolutionStrategy:
    """A fresh strategy continuing the one ``es_state`` described."""
    from cma.utilities import utils as cma_utils

    try:
        es = make_es(int(state["dim"]), float(state["sigma0"]), int(state["popsize"]), 0, state["x0"].numpy())
        es.adapt_sigma.initialize(es)  # otherwise done on the first tell(), which would zero the restored ps
        for obj, name in _FIELDS:
            value = state["fields"][f"{obj}.{name}"]
            if not (isinstance(value, dict) and "absent" in value):
                setattr(getattr(es, obj) if obj else es, name, _unpack(value))
        es.sm._inverse_root_C = None  # recomputed from C when needed
        es._updateBDfromSM()  # the strategy's C, B, D, dC are views of the sampler's
        es.timer = cma_utils.ElapsedWCTime()  # wall-clock bookkeeping that ask() expects after the first generation
        es.opts["randn"].set_state(state["randn"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"CMA-ES state does not fit this cma version or run ({type(e).__name__}: {e}); "
                        "choose a new out=") from None
    return es


def cma_generation(es: cma.CMAEvolutionStrategy, fitness: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """One generation MAXIMISING ``fitness`` (population (P, n) -> (P,)): ask, evaluate, tell; returns the fitnesses."""
    solutions = es.ask()
    values = np.asarray(fitness(np.stack(solutions)), dtype=np.float64)
    if values.shape != (len(solutions),) or not np.isfinite(values).all():
        raise RuntimeError(f"fitness returned {values.shape} values (finite: {np.isfinite(values).all()}), "
                           f"expected {len(solutions)} finite numbers")
    es.tell(solutions, (-values).tolist())
    return values
