"""Save the random-init baseline of a pretrained encoder: same architecture, same input
normalisation, untrained (seeded) weights. Evaluate and train agents on it like any encoder.

    python pretrain/random_init.py like=runs/pretrain/<run>/encoder out=runs/random/<name>
"""

import ssl4rl  # noqa: F401
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.encoders import encoder_meta, random_like, save_encoder
from ssl4rl.resolve import resolve_encoder_path
from ssl4rl.runs import log, claim_run_dir


def main(cfg) -> None:
    like = resolve_encoder_path(cfg.like, cfg.runs_root)
    meta = encoder_meta(like)
    encoder = random_like(like, cfg.seed)  # fails before out= is made
    out, _ = claim_run_dir(cfg.out, to_yaml(cfg))
    path = save_encoder(encoder, out / "encoder", method="random", like=str(like), seed=cfg.seed)
    log.info(f"random-init {meta['arch']} ({meta['feature_dim']}-d, normalised like {like}) saved to {path}")


if __name__ == "__main__":
    run_app(__file__, "random_init", main)
