"""Which training settings the search stage's proxy prefers, in the committed sweep studies.

    python results/scripts/proxy_recipe_preference.py results/proxy-recipe-preference

Reads every trained search-stage candidate of the studies below (no training) and, for each
training setting of the sweep (``train_*``) and each of its values: how many candidates drew
it, their median proxy value, and how many of the 10 best proxy values it holds (against the
10 x its share that chance would give). Then the settings the finalists were promoted with.

What it can and cannot say: TPE draws the settings together with the architectures, so a
value's median mixes both; the top-10 counts say what the proxy promoted, not what trains
best on the full schedule (only full-schedule runs can say that).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import optuna

from nas.study import record

STUDIES = ("results/search-v2-8000p-15e.db", "results/search-pareto-20000p-15e.db")
SETTINGS = ("train_augment", "train_batch_size", "train_lr", "train_label_smoothing",
            "train_ema", "train_weight_decay")
TOP = 10


def readonly(path: str) -> str:
    return f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true"


def measure(path: str) -> dict[str, object]:
    study = optuna.load_study(study_name=None, storage=readonly(path))
    search = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE and record.stage_of(t) == "search"]
    value = {t.number: t.values[0] for t in search}
    top = sorted(search, key=lambda t: -value[t.number])[:TOP]
    out: dict[str, object] = {"study": path, "candidates": len(search), "settings": {}}
    for name in SETTINGS:
        rows = []
        for v in sorted({t.params[name] for t in search}):
            drew = [t for t in search if t.params[name] == v]
            rows.append({"value": v, "candidates": len(drew),
                         "median_proxy": statistics.median(value[t.number] for t in drew),
                         "in_top": sum(t.params[name] == v for t in top),
                         "chance": TOP * len(drew) / len(search)})
        out["settings"][name] = rows
    # A finalist retrains a search-stage candidate: its settings are that candidate's.
    by_number = {t.number: t for t in search}
    finalists = {}
    for t in study.get_trials(deepcopy=False):
        if record.stage_of(t) == "finalist" and record.finalist_of(t) in by_number:
            of = record.finalist_of(t)
            finalists[of] = {k: by_number[of].params[k] for k in SETTINGS}
    out["finalists"] = finalists
    return out


def markdown(results: list[dict[str, object]]) -> str:
    lines = ["# The proxy's preference among training settings",
             "", "`python results/scripts/proxy_recipe_preference.py results/proxy-recipe-preference`"
             " (reads the committed studies; no training). Median proxy value of the search-stage "
             f"candidates that drew each value, and how many of the {TOP} best proxy values it "
             f"holds (chance: {TOP} × its share).", ""]
    for r in results:
        lines += [f"## {r['study']} ({r['candidates']} search-stage candidates)", "",
                  "| setting | value | candidates | median proxy | in the top 10 | chance |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, rows in r["settings"].items():
            for row in rows:
                lines.append(f"| {name} | {row['value']} | {row['candidates']} | "
                             f"{row['median_proxy']:.2%} | {row['in_top']} | "
                             f"{row['chance']:.1f} |")
        lines += ["", "Finalists' settings (search-stage trial: " + ", ".join(
            s.removeprefix("train_") for s in SETTINGS) + "):", ""]
        for of, s in sorted(r["finalists"].items()):
            lines.append(f"- #{of}: " + ", ".join(str(s[k]) for k in SETTINGS))
        lines.append("")
    return "\n".join(lines)


def main(out: str) -> None:
    results = [measure(p) for p in STUDIES]
    Path(out + ".json").write_text(json.dumps(results, indent=2) + "\n")
    Path(out + ".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main(sys.argv[1] if len(sys.argv) > 1 else "results/proxy-recipe-preference")
