"""Which world-model objective is better, offline: {recon, contrastive} x {scratch, frozen MAE, frozen best} on one
fixed cartpole dataset (swingup plus balance frames, so upright poles are seen).

    python benchmarks/wm_objectives.py --steps 1000
    python benchmarks/wm_objectives.py --objectives recon contrastive barlow --encoders scratch mae rotation

Every arm is the same RSSM (``ssl4rl.worldmodels.rssm``) trained with ``train_offline`` for ``--steps`` updates on
the same training episodes, then scored open loop on held-out episodes (``evaluate_world_model``): the k-step
state-probe R² (a ridge probe from predicted latents to the true future state; a collapsed model cannot pass it),
the cosine between the predicted and the encoded true embedding next to the constant-prediction control, and the
PSNR where there is a decoder. Frozen encoders are read from the representation-vs-control benchmark's runs
(``python benchmarks/repr_vs_control.py --stages data pretrain --methods mae rotation`` makes them); rotation is the
frozen encoder that did best on control there. Results: ``<root>/results.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl4rl.data import load_split  # noqa: E402
from ssl4rl.encoders import load_encoder  # noqa: E402
from ssl4rl.utils import read_json, seed_everything, write_json, write_text  # noqa: E402
from ssl4rl.worldmodels import encoder_spec, save_world_model  # noqa: E402
from ssl4rl.worldmodels.metrics import evaluate_world_model, train_offline  # noqa: E402
from ssl4rl.worldmodels.rssm import RSSM  # noqa: E402

REPR = ROOT / "runs/bench-repr-control"
ENCODERS = {"mae": REPR / "pretrain/mae_s0/encoder", "rotation": REPR / "pretrain/rotation_s0/encoder"}
KS = (1, 5, 10)


def build(objective: str, encoder: str, image_size: int) -> RSSM:
    """The arm's RSSM: scratch (a conv encoder trained with the model) or a frozen ssl4rl encoder."""
    if encoder == "scratch":
        return RSSM(1, objective, image_size=image_size)
    if not ENCODERS[encoder].exists():
        sys.exit(f"error: {ENCODERS[encoder]} not found; make it with "
                 f"`python benchmarks/repr_vs_control.py --stages data pretrain --methods {encoder}`")
    frozen = load_encoder(ENCODERS[encoder])
    model = RSSM(1, objective, encoder=encoder_spec(frozen), image_size=image_size)
    model.encoder.load_state_dict(frozen.state_dict())
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objectives", nargs="+", default=["recon", "contrastive"], choices=["recon", "contrastive", "barlow"])
    p.add_argument("--encoders", nargs="+", default=["scratch", "mae", "rotation"], choices=["scratch", *ENCODERS])
    p.add_argument("--steps", type=int, default=1000, help="updates per arm (batch 16 x 32 steps)")
    p.add_argument("--image-size", type=int, default=32, help="decoder / scratch-encoder resolution")
    p.add_argument("--root", default="runs/bench-wm-objectives")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    root = ROOT / args.root
    root.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for task in ("swingup", "balance"):
        tr, te = load_split(REPR / "data" / task, holdout=0.2, seed=0)
        train += tr
        test += te
    print(f"data: {len(train)} train / {len(test)} held-out episodes of cartpole swingup + balance", flush=True)
    results = read_json(root / "results.json")["arms"] if (root / "results.json").exists() else {}
    for objective in args.objectives:
        for encoder in args.encoders:
            arm = f"{objective}/{encoder}"
            if arm in results and results[arm]["steps"] == args.steps:
                continue
            seed_everything(args.seed)
            model = build(objective, encoder, args.image_size)
            t0 = time.time()
            logs = train_offline(model, train, args.steps, seed=args.seed, progress=False)
            seconds = time.time() - t0
            metrics = evaluate_world_model(model, test, KS, train_data=train)
            save_world_model(model, root / arm.replace("/", "_"), benchmark="wm_objectives", steps=args.steps)
            results[arm] = {"steps": args.steps, "train_seconds": seconds, "final_loss": logs[-1]["loss"], **metrics}
            write_json(root / "results.json", {"arms": results})
            print(f"{arm}: R² {[round(r, 3) for r in metrics.get('r2', [])]} cosine {metrics.get('cosine')} "
                  f"(constant {metrics.get('cosine_constant')}) PSNR {metrics.get('psnr')} in {seconds / 60:.1f} min", flush=True)
    fmt = lambda xs: " / ".join(f"{x:.3f}" for x in xs) if xs else "—"
    lines = [f"| {arm} | {fmt(r.get('r2'))} | {fmt(r.get('cosine'))} | {fmt(r.get('cosine_constant'))} | "
             f"{' / '.join(f'{x:.1f}' for x in r['psnr']) if r.get('psnr') else '—'} | {r['train_seconds'] / 60:.1f} |"
             for arm, r in results.items()]
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    text = (f"# World-model objectives, offline ({datetime.date.today()}, {torch.get_num_threads()} threads)\n\n`{cmd}`\n\n"
            f"Cartpole swingup + balance, {len(train)} train / {len(test)} held-out episodes (64 px; decoder and scratch "
            f"encoder at {args.image_size} px), {args.steps} updates per arm. Metrics at k = {', '.join(map(str, KS))} "
            "open-loop steps after 5 context frames.\n\n| objective/encoder | state R² | latent cosine | cosine of a "
            "constant prediction | PSNR dB | train min |\n|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    write_text(root / "results.md", text)
    print(text)


if __name__ == "__main__":
    main()
