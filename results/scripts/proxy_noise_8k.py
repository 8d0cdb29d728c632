"""How noisy is one draw of the search-stage proxy (4 epochs on 10,000 images) at 8k? The 8k
search's proxy winner (trial 493) and the hand-picked 7,838-parameter member, seeds 0 and 1.

    OMP_NUM_THREADS=1 python results/scripts/proxy_noise_8k.py

Prints one line per run: name, seed, final proxy validation accuracy (%), its curve, seconds.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna

from nas.arch.spec import ArchSpec
from nas.study import record
from nas.study.config import SearchConfig
from nas.study.storage import open_storage
from nas.training.data import load_mnist
from nas.training.trainer import TrainConfig, train


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = SearchConfig(max_params=8000, full_schedule=TrainConfig(epochs=15))
    proxy = cfg.proxy_schedule()
    tr, val = load_mnist().search_splits(cfg.val_size, cfg.split_seed)
    sub = tr.subset(cfg.proxy_subset, cfg.split_seed)  # the search stage's images
    url = "sqlite:///results/search-8000p-15e.db"
    study = optuna.load_study(study_name="mnist-8000p-15e",
                              storage=open_storage(url, create=False))
    specs = {"probe-7838": ArchSpec.from_json(Path("results/probe-7838p-arch.json").read_text()),
             "trial493": record.spec_of(study.trials[493])}
    for name, spec in specs.items():
        for seed in (0, 1):
            r = train(spec, sub, val, replace(proxy, seed=seed), "cpu")
            curve = [round(a * 100, 1) for a in r.accuracies]
            print(name, seed, round(r.final_accuracy * 100, 2), curve, round(r.seconds, 1),
                  flush=True)


if __name__ == "__main__":
    main()
