"""Every registered method, pretrained for the same small budget on env frames, in one evaluation
table: pose and velocity R² (the state probe), kNN and linear accuracy on free labels (which task a
frame comes from), and each pretext task's own accuracy.

    python benchmarks/all_methods.py                       # frames from benchmarks/repr_vs_control.py
    python benchmarks/all_methods.py --data D1 D2 --steps 300 --out runs/bench-all-methods

Every method trains the same small ViT (32 px, patch 4, dim 64, depth 2) for the same number of
steps at the same batch, with its own recipe otherwise; the budget is sized for a 2-core CPU (about
a minute per method), so the table shows that each method runs end to end and learns something, not
how the methods rank at convergence (benchmarks/repr_vs_control.py does that for the main ones).
Every stage skips what is already done, so an interrupted run continues when rerun with the same --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, run

SMALL_VIT = ["backbone=vit_tiny", "backbone.image_size=32", "backbone.patch_size=4", "backbone.embed_dim=64",
             "backbone.depth=2", "backbone.num_heads=2"]


def main() -> None:
    from ssl4rl.methods import METHODS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["runs/bench-repr-control/data/swingup", "runs/bench-repr-control/data/balance",
                                                 "runs/bench-repr-control/data/walker"],
                   help="frame folders from envs/collect.py; the first is probed for state, all give task labels")
    p.add_argument("--out", default="runs/bench-all-methods")
    p.add_argument("--methods", nargs="+", default=sorted(METHODS), choices=sorted(METHODS))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench.log"
    for d in a.data:
        if not (Path(d) / "meta.json").exists():
            sys.exit(f"error: {d}: no frame dataset there; make one with `python benchmarks/repr_vs_control.py --stages collect`")
    data = [f"data.path={a.data[0]}", f"data.extra_paths=[{','.join(a.data[1:])}]"]
    seconds = {}
    for m in a.methods:
        if not (out / m / "encoder" / "encoder.json").exists():
            seconds[m] = run(["pretrain/run.py", f"method={m}", *data, *SMALL_VIT, f"steps={a.steps}",
                              f"method.batch_size={a.batch}", f"out={out / m}"], log)
    encs = ",".join(str(out / m / "encoder") for m in a.methods)
    if not (out / "eval" / "eval.json").exists():
        run(["pretrain/eval.py", f"encoders=[{encs}]", f"data.path=[{','.join(a.data)}]", f"out={out / 'eval'}"], log)
    table = (out / "eval" / "eval.md").read_text()
    pretrain_s = {m: json.loads((out / m / "results.json").read_text())["seconds_this_session"] for m in a.methods}
    text = (header("Every method on env frames: one small budget, one evaluation table") + "\n" + table + "\n\n"
            + "Pretraining seconds: " + ", ".join(f"{m} {s:.0f}" for m, s in pretrain_s.items()) + "\n")
    print(text)
    (out / "report.md").write_text(text)


if __name__ == "__main__":
    main()
