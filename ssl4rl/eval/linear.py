"""Linear probe: a linear classifier on frozen, precomputed features, and label fractions.

Protocol: features are standardised with the statistics of the samples the classifier
is fit on; a small weight-decay sweep is scored on a stratified validation split of
the train set (``val_fraction``, at least one sample per class stays in the fit part);
the best weight decay is refit on the whole train set and scored top-1 on test.
``lbfgs`` (default) minimises mean cross-entropy + ``wd/2 * ||W||²`` full-batch;
``adamw`` trains minibatches with decoupled weight decay ``wd``. Both start from zero
weights, so the only randomness (split, minibatch order) comes from ``generator``.

Label fractions (1%, 10% of the train labels) use :func:`stratified_split`: the same
fraction of every class, and at least one sample per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
OPTIMIZERS = ("lbfgs", "adamw")


def stratified_split(
    labels: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (chosen, rest): ``round(fraction * n_c)`` of each class c, at least 1, chosen at random."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = labels.long().cpu()
    chosen, rest = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n = max(1, round(fraction * len(idx)))
        chosen.append(idx[:n])
        rest.append(idx[n:])
    return torch.cat(chosen).sort().values, torch.cat(rest).sort().values


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def _standardizer(x: torch.Tensor) -> Any:
    mean, std = x.mean(0), x.std(0, unbiased=False) + 1e-6
    return lambda z: (z.float() - mean) / std


def fit_linear(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    optimizer: str = "lbfgs",
    generator: torch.Generator | None = None,
    max_iter: int = 100,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-2,
) -> torch.nn.Linear:
    """A linear classifier fit on (already standardised) features ``x`` (N, D) and labels ``y``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{optimizer}'; valid: {', '.join(OPTIMIZERS)}")
    head = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(head(x), y) + 0.5 * weight_decay * head.weight.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        return head
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for idx in order.split(batch_size):
            opt.zero_grad()
            F.cross_entropy(head(x[idx]), y[idx]).backward()
            opt.step()
    return head


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int | None = None,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    optimizer: str = "lbfgs",
    val_fraction: float = 0.2,
    generator: torch.Generator | None = None,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """Sweep weight decay on a validation split, refit on all train features, score top-1 on test.

    Returns ``{'top1', 'weight_decay', 'val_top1': {wd: acc}, 'optimizer'}``. When no class
    can spare a validation sample, the middle of ``weight_decays`` is used unswept.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    train_y, test_y = train_y.long().to(train_x.device), test_y.long().to(test_x.device)
    if num_classes is None:
        num_classes = int(max(train_y.max().item(), test_y.max().item() if len(test_y) else 0)) + 1
    fit_idx, val_idx = stratified_split(train_y, 1.0 - val_fraction, generator)
    val_scores: dict[str, float] = {}
    if len(val_idx) and len(weight_decays) > 1:
        scale = _standardizer(train_x[fit_idx])
        x_fit, x_val = scale(train_x[fit_idx]), scale(train_x[val_idx])
        for wd in weight_decays:
            head = fit_linear(x_fit, train_y[fit_idx], num_classes, wd, optimizer, generator, **fit_kwargs)
            with torch.no_grad():
                val_scores[str(wd)] = top1(head(x_val), train_y[val_idx])
        best = max(weight_decays, key=lambda wd: val_scores[str(wd)])
    else:
        best = weight_decays[len(weight_decays) // 2]
    scale = _standardizer(train_x)
    head = fit_linear(scale(train_x), train_y, num_classes, best, optimizer, generator, **fit_kwargs)
    with torch.no_grad():
        acc = top1(head(scale(test_x)), test_y)
    return {"top1": acc, "weight_decay": float(best), "val_top1": val_scores, "optimizer": optimizer}
