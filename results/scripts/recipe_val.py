"""Training recipes on the search's validation split: one network, several settings, a few seeds.

    python results/scripts/recipe_val.py OUT.jsonl SPEC.json NAME=KEY:VALUE,KEY:VALUE ... [--seeds 0,1]

Each NAME is a recipe: TrainConfig fields changed from the default (15 epochs unless given). Runs
interleave recipes seed by seed (seed 0 of every recipe, then seed 1, ...), so a stopped run
still compares every recipe on the same seeds. Trains on the search's 50,000 training images,
evaluates on its 10,000 validation images (n_val 10,000, split seed 0), one thread. Appends one
JSON line per finished run, with the per-image correctness of the final model (as a bit string),
so recipes can be compared on the same images (paired); running it again skips finished runs.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from nas.arch.spec import ArchSpec
from nas.training.data import load_mnist
from nas.training.host import cpu_flags, use_threads
from nas.training.trainer import TrainConfig, train


def parse_recipe(text: str) -> tuple[str, dict[str, object]]:
    name, _, body = text.partition("=")
    types = {f.name: f.type for f in fields(TrainConfig)}
    changes: dict[str, object] = {"epochs": 15}
    for item in filter(None, body.split(",")):
        k, _, v = item.partition(":")
        t = types[k]
        changes[k] = (v == "true") if t in ("bool", bool) else type(getattr(TrainConfig(), k))(v)
    return name, changes


def main(argv: list[str]) -> None:
    seeds = [0, 1]
    if "--seeds" in argv:
        i = argv.index("--seeds")
        seeds = [int(s) for s in argv[i + 1].split(",")]
        argv = argv[:i] + argv[i + 2:]
    out, spec_path, recipes = Path(argv[0]), Path(argv[1]), [parse_recipe(r) for r in argv[2:]]
    use_threads(1)
    spec = ArchSpec.from_json(spec_path.read_text())
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    have = {(d["network"], d["recipe"], d["seed"]) for d in done}
    tr, val = load_mnist().search_splits(10_000, 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    for seed in seeds:
        for name, changes in recipes:
            if (spec_path.stem, name, seed) in have:
                continue
            cfg = replace(TrainConfig(), **changes, seed=seed)
            r = train(spec, tr, val, cfg, "cpu")
            correct = r.correct  # the final epoch's, per validation image
            line = {"network": spec_path.stem, "recipe": name, "changes": changes, "seed": seed,
                    "val_acc_final": r.final_accuracy, "val_curve": r.accuracies,
                    "correct_bits": "".join("1" if c else "0" for c in correct.tolist()),
                    "seconds": round(r.seconds, 1), "precision": r.precision,
                    "train_images": len(tr), "val_images": len(val), "cfg": cfg.to_dict(),
                    "commit": commit, "torch": torch.__version__,
                    "cpu_flags_bf16": "avx512_bf16" in cpu_flags(),
                    "machine": platform.processor() or platform.machine(),
                    "date": time.strftime("%Y-%m-%d %H:%M %Z")}
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
            print(name, seed, f"{r.final_accuracy:.4f}", f"{r.seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
