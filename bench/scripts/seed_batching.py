"""Seed batching against separate runs, and the CPU settings of the trainer, on this machine.

    python bench/scripts/seed_batching.py bench/results/seedbatch-<cpu>-<date>   # .json + .md

For the 8k hand pick (results/probe-7838p-arch.json, 7,838 parameters) and the 16k reference
network: training images per second, all S seeds together (S x 5,000 images over the wall
time, evaluation of 1,000 images per seed included), of S seeds trained as one grouped network
(nas.training.seedbatch.train_seeds) against S separate runs (nas.training.trainer.train), S = 1, 2, 3, 5, one
epoch of 5,000 images each, rounds alternating separate/batched so drift hits both. One
process, the trainer's defaults (precision auto), torch threads as given (default 1: the way
a search's workers run).
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from nas.arch.spec import ArchSpec
from nas.arch.zoo import bn_dropout_16k
from nas.training.data import load_mnist
from nas.training.host import cpu_flags, use_threads
from nas.training.seedbatch import train_seeds
from nas.training.trainer import TrainConfig, precision_for, train

IMAGES, ROUNDS, SEEDS = 5_000, 3, (1, 2, 3, 5)


def main(out: Path, threads: int = 1) -> None:
    use_threads(threads)
    root = Path(__file__).resolve().parents[2]
    nets = {"probe_7838": ArchSpec.from_json((root / "results/probe-7838p-arch.json").read_text()),
            "bn_dropout_16k": bn_dropout_16k()}
    tr, val = load_mnist().search_splits(10_000, 0)
    tr, val = tr.subset(IMAGES), val.subset(1_000)
    cfg = TrainConfig(epochs=1)
    rows = []
    for name, spec in nets.items():
        for s in SEEDS:
            sep, bat = [], []
            for _ in range(ROUNDS):
                t = time.perf_counter()
                for seed in range(s):
                    train(spec, tr, val, TrainConfig(epochs=1, seed=seed))
                sep.append(s * IMAGES / (time.perf_counter() - t))  # seed-images/s, all seeds
                t = time.perf_counter()
                train_seeds(spec, tr, val, cfg, list(range(s)))
                bat.append(s * IMAGES / (time.perf_counter() - t))
            row = {"network": name, "seeds": s,
                   "separate_seed_images_per_s": statistics.median(sep),
                   "batched_seed_images_per_s": statistics.median(bat),
                   "ratio": statistics.median(b / a for a, b in zip(sep, bat)),
                   "rounds": [round(b / a, 3) for a, b in zip(sep, bat)]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    flags = cpu_flags()
    host = {"cpu": platform.processor() or platform.machine(), "cores": torch.get_num_threads(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "avx2": "avx2" in flags, "threads": threads,
            "precision": precision_for("cpu", "auto"), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": "python bench/scripts/seed_batching.py " + str(out)}
    out.with_suffix(".json").write_text(json.dumps({"host": host, "rows": rows}, indent=2) + "\n")
    lines = [f"# Seed batching on {host['cpu']} ({'with' if host['avx512_bf16'] else 'without'} "
             f"avx512_bf16, {threads} thread(s), {host['precision']}), {host['date']}", "",
             f"`{host['command']}`: one epoch of {IMAGES:,} images per seed, medians of "
             f"{ROUNDS} alternating rounds.", "",
             "| network | seeds | separate runs, training images/s (all seeds) | batched | "
             "batched / separate (per round) |", "|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['seeds']} | "
                     f"{r['separate_seed_images_per_s']:,.0f} | "
                     f"{r['batched_seed_images_per_s']:,.0f} | **{r['ratio']:.2f}×** "
                     f"({', '.join(f'{x:.2f}' for x in r['rounds'])}) |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
