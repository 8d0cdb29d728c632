"""The hand designs on the search's validation split with the finalist recipe (15 epochs,
seeds 0-2, 50,000 training images): directly comparable with a search's finalist means.

    python results/scripts/handdesigns_val.py results/handdesigns-val-15e.jsonl

Appends one JSON line per finished run; running it again skips the runs already there.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from nas.arch.zoo import REFERENCE
from nas.training.data import load_mnist
from nas.training.trainer import TrainConfig, train


def main(out: Path) -> None:
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    have = {(d["network"], d["seed"]) for d in done}
    tr, val = load_mnist().search_splits(10_000, 0)  # the search's split (n_val, split seed)
    for name in ("bn_dropout_16k", "pool_bn_19k"):
        for seed in range(3):
            if (name, seed) in have:
                continue
            cfg = TrainConfig(epochs=15, seed=seed)
            r = train(REFERENCE[name](), tr, val, cfg, "cpu")
            line = {"network": name, "seed": seed, "val_acc_final": r.final_accuracy,
                    "val_curve": r.accuracies, "seconds": round(r.seconds, 1),
                    "precision": r.precision, "train_images": len(tr), "val_images": len(val),
                    "cfg": cfg.to_dict(), "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine(),
                    "date": time.strftime("%Y-%m-%d %H:%M %Z")}
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
            print(name, seed, r.final_accuracy, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
