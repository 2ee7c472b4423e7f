"""Pretrain an encoder with a self-supervised method.

    python pretrain/run.py method=mae data.path=data/walker
    python pretrain/run.py method=mae data.path=data/walker out=runs/mae1   # rerun resumes
"""

import ssl4rl  # noqa: F401
from ssl4rl.cli import run_app, to_dict, to_yaml
from ssl4rl.data import episode_paths
from ssl4rl.pretrain import CHECKPOINT, pretrain
from ssl4rl.runs import log, prepare_run_dir


def main(cfg) -> None:
    episode_paths(cfg.data.path)  # fail fast, before creating the run folder
    out, resuming = prepare_run_dir(cfg.out, to_yaml(cfg), resume_file=CHECKPOINT)
    method = to_dict(cfg.method)
    name = method.pop("name")
    res = pretrain(
        cfg.data.path, out, method=name, method_kwargs=method, backbone=to_dict(cfg.backbone),
        steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
        warmup=cfg.warmup, shift_pad=cfg.shift_pad, holdout=cfg.data.holdout, log_every=cfg.log_every,
        ckpt_every=cfg.ckpt_every, seed=cfg.seed, device=cfg.device, amp=cfg.amp,
        channels_last=cfg.channels_last, compile=cfg.compile, progress=cfg.progress,
    )
    log.info(f"encoder saved to {res['encoder']} (held-out loss {res['final_val_loss']:.4f})")


if __name__ == "__main__":
    run_app(__file__, "pretrain", main)
