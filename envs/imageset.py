"""Render a labelled DMC image set: an ImageFolder with train/ and test/ splits.

    python envs/imageset.py out=data/dmc_images per_class=200 image_size=64
    python envs/imageset.py labels=state_bin envs=[dmc_cartpole] state_dim=0 out=data/cartpole_bins
"""

import ssl4rl  # noqa: F401  (GL backend before dm_control)
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.data.images import make_dmc_imagefolder
from ssl4rl.envs import check_dmc_task
from ssl4rl.runs import log, claim_run_dir
from ssl4rl.utils import read_json


def main(cfg) -> None:
    envs = [cfg.envs] if isinstance(cfg.envs, str) else list(cfg.envs)
    for name in envs:
        check_dmc_task(name, "a labelled image set of dm_control domains")
    out, _ = claim_run_dir(cfg.out, to_yaml(cfg))
    make_dmc_imagefolder(
        out, envs, per_class=cfg.per_class, image_size=cfg.image_size, seed=cfg.seed, labels=cfg.labels,
        state_dim=cfg.state_dim, camera=cfg.camera, progress=cfg.progress,
    )
    meta = read_json(out / "meta.json")
    n_train, n_test = (sum(meta["counts"][s].values()) for s in ("train", "test"))
    log.info(
        f"wrote {n_train} train + {n_test} test images ({meta['image_size']} px, {len(meta['classes'])} classes: "
        f"{', '.join(meta['classes'])}) to {out} in {meta['seconds']:.0f} s"
    )


if __name__ == "__main__":
    run_app(__file__, "imageset", main)
