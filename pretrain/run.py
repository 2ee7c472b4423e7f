"""Pretrain an encoder with a self-supervised method.

    python pretrain/run.py method=simclr data.path=data/walker
    python pretrain/run.py method=byol data.kind=imagefolder data.path=data/dmc_images/train
    python pretrain/run.py method=mae data.path=data/walker out=runs/mae1     # rerun resumes
    torchrun --nproc_per_node=2 pretrain/run.py method=simclr data.path=data/walker   # DDP
"""

import ssl4rl  # noqa: F401
from ssl4rl.cli import run_app, to_yaml
from ssl4rl.errors import UserError
from ssl4rl.parts import dist
from ssl4rl.pretrain import CHECKPOINT, pretrain
from ssl4rl.runs import log, claim_run_dir
from ssl4rl.utils import resolve_device

# display only: the result is bit-identical whatever their value. Everything else (steps= included: it sets
# the LR schedule's horizon) must match the run's config.yaml for a rerun with the same out= to resume.
SAFE_ON_RESUME = ("progress",)


def main(cfg) -> None:
    from omegaconf import OmegaConf

    from ssl4rl.pretrain import check_data_path

    check_data_path(cfg.data)  # fail fast, before creating the run folder
    dist.init_from_env(resolve_device(cfg.device).type)
    error = ""
    if dist.rank() == 0:
        try:
            claim_run_dir(cfg.out, to_yaml(cfg), resume_file=CHECKPOINT, safe_keys=SAFE_ON_RESUME)
        except UserError as e:
            error = str(e)
    error = dist.from_rank0(error)  # every process stops when rank 0 refuses the folder
    if error:
        raise UserError(error)
    res = pretrain(OmegaConf.to_object(cfg), cfg.out)
    if dist.rank() == 0:
        log.info(f"encoder saved to {res['encoder']} (held-out loss {res['final_val_loss']:.4f})")


if __name__ == "__main__":
    run_app(__file__, "pretrain", main)
