"""Probe a frozen encoder: ridge regression from features to physical state, R² on held-out episodes.

    python pretrain/eval.py encoder=runs/pretrain/<run>/encoder data.path=data/walker
"""

import ssl4rl  # noqa: F401
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.data import episode_paths
from ssl4rl.encoders import encoder_meta
from ssl4rl.eval.report import markdown_table, probe_report
from ssl4rl.resolve import resolve_encoder_path
from ssl4rl.runs import prepare_run_dir
from ssl4rl.utils import write_json, write_text


def main(cfg) -> None:
    enc = resolve_encoder_path(cfg.encoder, cfg.runs_root)
    encoder_meta(enc)
    episode_paths(cfg.data.path)
    out, _ = prepare_run_dir(cfg.out, to_yaml(cfg))
    report = probe_report(
        enc, cfg.data.path, holdout=cfg.data.holdout, seed=cfg.seed, pixels_size=cfg.pixels_size,
        batch_size=cfg.batch_size, device=cfg.device,
    )
    write_json(out / "probe.json", report)
    table = markdown_table(report)
    write_text(out / "probe.md", table)
    print(table)


if __name__ == "__main__":
    run_app(__file__, "eval", main)
