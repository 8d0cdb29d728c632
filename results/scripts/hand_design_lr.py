"""Choose a hand design's learning rate on held-out *training* images (never the test set).

For a reference network that nas's default recipe does not train (``hardmaru_fashion_83k``: no
BatchNorm, and lr 0.2 diverges in the first epoch), each candidate rate trains a short proxy —
``--epochs`` on the first ``--train`` training images — and is scored on training images
50,000-54,999, which it never trains on. The best rate is written as a recipe for
``nas.replay --spec NAME --recipe FILE`` (everything else nas's defaults, mirroring as the
data set says), with the scores in a Markdown note next to it.

    OMP_NUM_THREADS=1 python results/scripts/hand_design_lr.py hardmaru_fashion_83k \\
        --dataset fashion-mnist --out results/recipe-hardmaru_fashion_83k
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import torch

from nas.arch.zoo import REFERENCE
from nas.training.data import Split
from nas.training.host import cpu_flags, cpu_model
from nas.training.sources import load_data
from nas.training.trainer import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", choices=sorted(REFERENCE))
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--lrs", default="0.2,0.1,0.05,0.02")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train", type=int, default=12_000)
    p.add_argument("--out", type=Path, required=True, help="path without suffix: .json, .md")
    a = p.parse_args()
    torch.set_num_threads(1)
    m = load_data(a.dataset)
    tr = Split(m.train.x[:a.train], m.train.y[:a.train])
    va = Split(m.train.x[50_000:55_000], m.train.y[50_000:55_000])
    rows = []
    for lr in (float(x) for x in a.lrs.split(",")):
        cfg = TrainConfig(epochs=a.epochs, lr=lr, hflip=m.dataset.hflip)
        r = train(REFERENCE[a.spec](), tr, va, cfg, torch.device("cpu"), dataset=m.dataset)
        rows.append({"lr": lr, "val_acc": r.accuracies, "train_loss": r.train_losses})
        print(f"lr {lr:g}: held-out accuracy by epoch {r.accuracies}, loss {r.train_losses}")
    best = max(rows, key=lambda row: row["val_acc"][-1])
    recipe = {"lr": best["lr"], "hflip": m.dataset.hflip}  # the rest: nas's defaults
    made = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(),
            "bf16": "avx512_bf16" in cpu_flags(), "python": platform.python_version(),
            "torch": torch.__version__}
    a.out.with_suffix(".json").write_text(json.dumps(
        {"train_config": recipe, "chosen_by": {"spec": a.spec, "dataset": a.dataset,
                                              "epochs": a.epochs, "train_images": a.train,
                                              "held_out": "training images 50,000-54,999",
                                              "runs": rows, **made}}, indent=2) + "\n")
    lines = [f"# Learning rate for `{a.spec}` on {a.dataset}, chosen on held-out training images",
             "", f"{a.epochs} epochs on the first {a.train:,} training images, scored on "
             f"training images 50,000-54,999 (never trained on; the test set is not read). "
             f"One seed each, nas's default recipe otherwise (hflip {m.dataset.hflip}). "
             f"{made['date']}, {made['cpu']}, bf16 units: {made['bf16']}, torch "
             f"{made['torch']}, one thread.", "", "| lr | held-out accuracy by epoch | "
             "training loss by epoch |", "|---:|---|---|"]
    for row in rows:
        lines.append(f"| {row['lr']:g} | " + ", ".join(f"{x:.2%}" for x in row["val_acc"])
                     + " | " + ", ".join(f"{x:.3g}" for x in row["train_loss"]) + " |")
    lines += ["", f"Chosen: lr {best['lr']:g} (`{a.out.with_suffix('.json').name}`, for "
              f"`nas.replay --spec {a.spec} --recipe ...`)."]
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
