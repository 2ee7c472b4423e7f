"""Evaluate frozen encoders: state R² (pose / velocity), kNN, linear probe, label fractions, fine-tuning.

    python pretrain/eval.py encoder=runs/pretrain/<run>/encoder data.path=data/walker
    python pretrain/eval.py encoders=runs/a/encoder,runs/b/encoder data.kind=cifar10 data.path=data/cifar10

Writes eval.json, eval.md, eval_bars.png, eval_projection.png (and probe.json / probe.md
for one frame dataset) into ``out=``; see ``ssl4rl.eval.harness``. An encoder from a C-SWM run
(``method=cswm``) is also ranked with its world model (Hits@1 / MRR at 1, 5, 10 steps):

    python pretrain/eval.py encoder=runs/cswm/encoder data.path=data/shapes2d_eval
"""

import sys

import ssl4rl  # noqa: F401
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.data import episode_paths
from ssl4rl.encoders import encoder_meta
from ssl4rl.eval.harness import evaluate
from ssl4rl.eval.ranking import ranking_markdown
from ssl4rl.eval.report import report_text
from ssl4rl.resolve import resolve_encoder_path
from ssl4rl.runs import claim_run_dir

LIST_KEYS = ("encoders", "data.path", "knn_k", "label_fractions")


def comma_lists(argv: list[str]) -> list[str]:
    """Let list settings be given as comma lists or one value: ``encoders=a,b`` -> ``encoders=[a,b]``,
    ``encoders=a`` -> ``encoders=[a]``."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in LIST_KEYS and value and value[:1] not in "[\"'" and value != "null":
            arg = f"{key}=[{value}]"
        out.append(arg)
    return out


def as_list(value) -> list:
    """A config value as a list: None -> [], 'a,b' -> ['a', 'b'], 20 -> [20], [a, b] -> [a, b]."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def main(cfg) -> None:
    names = as_list(cfg.encoders) or [cfg.encoder]
    encoders = [resolve_encoder_path(str(n), cfg.runs_root) for n in names]
    for enc in encoders:
        encoder_meta(enc)
    paths = [str(p) for p in as_list(cfg.data.path)]
    if cfg.data.kind == "frames":
        for p in paths:
            episode_paths(p)
    out, _ = claim_run_dir(cfg.out, to_yaml(cfg))
    result = evaluate(
        encoders, paths, kind=cfg.data.kind, out=out, holdout=cfg.data.holdout, seed=cfg.seed,
        knn_k=[int(k) for k in as_list(cfg.knn_k)], temperature=cfg.knn_temperature,
        label_fractions=[float(f) for f in as_list(cfg.label_fractions)], finetune=cfg.finetune,
        finetune_epochs=cfg.finetune_epochs, label_state=cfg.label_state, n_bins=cfg.n_bins,
        image_size=cfg.data.image_size, pixels_size=cfg.pixels_size, batch_size=cfg.batch_size,
        device=cfg.device, progress=cfg.progress,
    )
    print(report_text(result) + ranking_markdown(result))


if __name__ == "__main__":
    sys.argv[1:] = comma_lists(sys.argv[1:])
    run_app(__file__, "eval", main)
