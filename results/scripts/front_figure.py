"""The README's picture of the Pareto search's front, with the hand designs as reference points.

    python results/scripts/front_figure.py results/search-pareto-20000p-15e.db docs/pareto-front.svg

``nas.study.pareto.front_svg`` (what ``nas.export`` of a Pareto study writes as ``front.svg``) with
``references``: each hand design's mean final validation accuracy over the seeds recorded in
``results/handdesigns-val-15e.jsonl`` (``bn_dropout_16k``, ``pool_bn_19k``: the default recipe,
seeds 0-2) and ``results/recipe-val-probe7838p-15e.jsonl`` (the 8k hand pick, recipe ``base``
= the default, seeds 0-1): the search's split, 15 epochs, 50,000 training images, the same
validation images as the finalists'. Reads the study, writes only the SVG it is given.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import optuna

from nas.arch.plan import plan
from nas.arch.spec import ArchSpec
from nas.arch.zoo import REFERENCE
from nas.study import pareto, record

RESULTS = Path(__file__).resolve().parent.parent


def _mean_val(path: Path, network: str, recipe: str | None = None) -> float:
    runs = [json.loads(line) for line in path.read_text().splitlines()]
    accs = [r["val_acc_final"] for r in runs
            if r["network"] == network and r.get("recipe") == recipe]
    return statistics.fmean(accs)


def main(db: Path, out: Path) -> None:
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{db}")
    budgets = tuple(record.pareto_budgets_of(study))
    hand_pick = ArchSpec.from_json((RESULTS / "probe-7838p-arch.json").read_text())
    refs = [(name, plan(REFERENCE[name]()).params,
             _mean_val(RESULTS / "handdesigns-val-15e.jsonl", name))
            for name in ("bn_dropout_16k", "pool_bn_19k")]
    refs.append(("8k hand pick", plan(hand_pick).params,
                 _mean_val(RESULTS / "recipe-val-probe7838p-15e.jsonl", "probe-7838p-arch",
                           "base")))
    out.write_text(pareto.front_svg(study, budgets, refs))
    for name, params, acc in refs:
        print(f"{name}: {params:,} parameters, {acc:.2%}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
