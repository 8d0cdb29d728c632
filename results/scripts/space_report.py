"""How each search-space version covers a budget, from uniform draws (no training).

    python results/scripts/space_report.py results/space-report    # writes .json and .md

For each version and budget: the share of uniform draws (RandomSampler) that are buildable,
within the budget and not rejected by the space's own rules (feasible); the budget the feasible
ones use (quantiles); the share of feasible draws whose receptive field before the head is at
least 24 (the whole digit) or that have a flatten head; and the share of distinct networks
(canonical keys) among the feasible draws.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import optuna

from nas.arch.plan import plan
from nas.arch.space import rejection, sample
from nas.arch.spec import SpecError

BUDGETS = (5_000, 8_000, 10_000, 20_000)
DRAWS = 5_000


def measure(version: int, budget: int, draws: int, seed: int = 0) -> dict[str, object]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    used, keys, sees = [], [], 0
    for _ in range(draws):
        spec = sample(version, study.ask(), budget)
        try:
            p = plan(spec.validate())
        except SpecError:
            continue
        if p.params > budget or rejection(version, p):
            continue
        used.append(p.params / budget)
        keys.append(spec.key())
        sees += p.receptive_field >= 24 or spec.head.kind == "flatten_linear"
    q = statistics.quantiles(used, n=20) if len(used) > 1 else [float("nan")] * 19
    return {"version": version, "budget": budget, "draws": draws,
            "feasible": len(used) / draws,
            "feasible_and_80pct": sum(u >= 0.8 for u in used) / draws,
            "used_p10": q[1], "used_p50": q[9], "used_p90": q[17],
            "sees_digit": sees / max(len(used), 1),
            "distinct": len(set(keys)) / max(len(keys), 1)}


def main(out: Path) -> None:
    rows = [measure(v, b, DRAWS) for v in (1, 2) for b in BUDGETS]
    meta = {"command": "python results/scripts/space_report.py " + str(out),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "draws_per_cell": DRAWS, "seed": 0}
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Search-space coverage ({DRAWS:,} uniform draws per cell, seed 0, "
             f"{meta['date']})", "", f"`{meta['command']}`", "",
             "| space | budget | feasible | feasible and ≥ 80 % of budget | budget used p10 / p50 "
             "/ p90 | RF ≥ 24 or flatten head | distinct |",
             "|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| v{r['version']} | {r['budget']:,} | {r['feasible']:.1%} | "
                     f"{r['feasible_and_80pct']:.1%} | {r['used_p10']:.0%} / "
                     f"{r['used_p50']:.0%} / {r['used_p90']:.0%} | {r['sees_digit']:.1%} | "
                     f"{r['distinct']:.1%} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
