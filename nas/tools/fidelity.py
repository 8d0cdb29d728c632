"""``python -m nas.fidelity``: how well cheap proxies rank architectures, against the full schedule.

Samples N members of the search space (seeded random sampler, <= --max-params parameters),
trains each on the search's split (50,000 train / 10,000 validation; the test set is never read)
with the full schedule and with cheap proxies: accuracy after epoch k of the full schedule (what
Hyperband sees), complete short schedules (their own one-cycle), and a short schedule on a subset
of the training images. For each proxy it reports the Spearman rank correlation with the full
schedule's final validation accuracy, how many of the true top-5 stay in its top-5, and its cost;
and the full schedule's seed-to-seed spread on the first few candidates, the noise floor.

Every finished run is one JSON line in ``<out>/fidelity-<P>p-<E>e-runs.jsonl``: a second start
skips the runs already there, so the study resumes across sessions. The report (``.json`` and
``.md`` next to it) is rewritten after every run, marked PARTIAL until every run is done.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import optuna
import torch
from optuna.trial import FixedTrial

from nas.arch.plan import plan
from nas.arch.space import SPACE_VERSIONS, random_members, sample, start_members
from nas.arch.spec import ArchSpec
from nas.cli.common import (DATA_DIR_HELP, DEVICE_HELP, Parser, describe, nonneg_int, positive_int,
                            run)
from nas.errors import UserError
from nas.study.config import make_pruner
from nas.study.processes import die_with_parent
from nas.training import checkpoint
from nas.training.data import DEFAULT_DATA_DIR, Split, load_mnist
from nas.training.host import cpu_flags, cpu_model, use_threads
from nas.training.trainer import (PRECISIONS, TrainConfig, TrainingDiverged, device_name,
                                  images_per_epoch, precision_for, resolve_device, train)

EPOCH_PROXIES = (1, 2, 4)  # accuracy after epoch k of the full schedule
TOP = 5
PRUNERS_REPLAYED = ("hyperband", "sha", "median")  # nas.search's --pruner choices that prune
LEARNED = 0.5  # full-schedule accuracy below this: the candidate never learned (chance is 0.1)


@dataclass(frozen=True)
class Job:
    """One training run of the study: candidate, proxy name, schedule, seed, training images."""

    candidate: int
    proxy: str  # "full", "short-2e", "subset-10000-4e"
    epochs: int
    seed: int = 0
    subset: int | None = None  # None: the whole training split


# -- sampling and planning ---------------------------------------------------------------------
def sample_candidates(n: int, max_params: int, seed: int, space: int = 1) -> list[ArchSpec]:
    """The study's candidates: version 1, :func:`nas.arch.space.random_members`; version 2,
    its starting members (:func:`nas.arch.space.start_members`: spread over depth, BatchNorm
    placement and head, each filling the budget), what a version-2 search starts from."""
    try:
        if space == 1:
            return random_members(n, max_params, seed)
        return [sample(space, FixedTrial(params), max_params)
                for params in start_members(space, n, max_params, seed)]
    except ValueError as e:
        raise UserError(str(e)) from None


def plan_jobs(n: int, a: Any) -> list[Job]:
    """Every run, in the order that makes partial results useful: per candidate the full run and
    all proxies, then the extra seeds of the first --seeds-spread candidates."""
    jobs = []
    for i in range(n):
        jobs.append(Job(i, "full", a.epochs))
        jobs += [Job(i, f"short-{e}e", e) for e in a.short_epochs]
        jobs.append(Job(i, f"subset-{a.subset}-{a.subset_epochs}e", a.subset_epochs,
                        subset=a.subset))
    jobs += [Job(i, "full", a.epochs, seed=s)
             for i in range(min(a.seeds_spread, n)) for s in range(1, a.extra_seeds + 1)]
    return jobs


def identity(a: Any) -> dict[str, Any]:
    """What fixes the meaning of a run line; a resume with a different identity is refused.
    (--candidates and the seed spread only add runs, so they may change.)"""
    space = {} if a.space == 1 else {"space": a.space}  # version 1's run files say nothing
    return {"max_params": a.max_params, "epochs": a.epochs, "seed": a.seed, **space,
            "val_size": a.val_size, "split_seed": 0, "short_epochs": list(a.short_epochs),
            "subset": a.subset, "subset_epochs": a.subset_epochs,
            "train_config": {k: v for k, v in TrainConfig().to_dict().items()
                             if k not in ("epochs", "seed")}}


# -- the run file ------------------------------------------------------------------------------
def read_runs(path: Path, repair: bool = False) -> tuple[dict[str, Any] | None,
                                                        list[dict[str, Any]]]:
    """(header, run lines). A last line without its newline (cut by a crash, or being written
    by the running study) is ignored; ``repair`` cuts it from the file before appending."""
    if not path.exists():
        return None, []
    raw = path.read_bytes()
    whole = raw[:raw.rfind(b"\n") + 1]
    if repair and whole != raw:
        with open(path, "r+b") as f:
            f.truncate(len(whole))
    lines = [json.loads(line) for line in whole.decode().splitlines() if line.strip()]
    header = lines[0] if lines and lines[0].get("kind") == "header" else None
    return header, [x for x in lines if x.get("kind") == "run"]


def append_line(path: Path, obj: dict[str, Any]) -> None:
    """One line, one write, flushed and fsynced: an interruption loses at most this line."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def host_info(device: torch.device, precision: str = "auto") -> dict[str, Any]:
    """The device in words, the CPU model and the flags that decide its speed, and the
    arithmetic the runs train in (``precision`` resolved on ``device``: never "auto")."""
    flags = cpu_flags()
    resolved = precision_for(device, precision)
    return {"device": device_name(device), "cpu_model": cpu_model(), **code_version(),
            "cpu_flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")},
            "bf16_autocast": resolved == "bf16", "precision": resolved}


def precision_of(run: dict[str, Any]) -> str:
    """The arithmetic a run line trained in; lines written before they said so trained in
    bf16 autocast or fp32, as their ``bf16_autocast`` says. Whatever a broken line holds comes
    back as text, so that a refusal can name it."""
    said = run.get("precision") or ("bf16" if run.get("bf16_autocast") else "fp32")
    return said if isinstance(said, str) else repr(said)


def code_version() -> dict[str, str]:
    """The git commit and a hash of the trainer's sources as imported. The working tree may be
    edited between sessions: runs with different hashes were trained by different code."""
    import nas.arch.build
    import nas.training.augment
    import nas.training.trainer

    sources = (nas.training.trainer, nas.training.augment, nas.arch.build)
    h = hashlib.sha256(b"".join(Path(m.__file__).read_bytes()  # type: ignore[arg-type]
                                for m in sources))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent, check=False)
    return {"commit": git.stdout.strip() or "unknown", "trainer_sha256": h.hexdigest()[:12]}


# -- analysis ----------------------------------------------------------------------------------
def average_ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ascending; tied values share the mean of the ranks they span."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks. NaN with fewer than two
    points or when either side is constant."""
    if len(a) != len(b):
        raise ValueError("spearman needs two sequences of the same length")
    ra, rb = average_ranks(a), average_ranks(b)
    if len(a) < 2:
        return float("nan")
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else float("nan")


def top_overlap(truth: Sequence[float], proxy: Sequence[float], k: int = TOP) -> int:
    """How many of the ``k`` best by ``truth`` are among the ``k`` best by ``proxy`` (higher is
    better; ties go to the earlier index)."""
    def best(xs: Sequence[float]) -> set[int]:
        return set(sorted(range(len(xs)), key=lambda i: (-xs[i], i))[:k])

    return len(best(truth) & best(proxy))


def analyze(runs: list[dict[str, Any]], ident: dict[str, Any]) -> dict[str, Any]:
    """Per-candidate values, per-proxy rank statistics and cost, and the seed spread. A run that
    diverged is left out (and listed); a proxy is judged on the candidates that have it."""
    ok = {(r["candidate"], r["proxy"], r["seed"]): r for r in runs if r["final_acc"] is not None}
    full = {i: r for (i, name, seed), r in sorted(ok.items()) if name == "full" and seed == 0}
    e = ident["epochs"]
    names = [f"epoch-{k}" for k in EPOCH_PROXIES if k < e]
    names += [f"short-{s}e" for s in ident["short_epochs"]]
    names.append(f"subset-{ident['subset']}-{ident['subset_epochs']}e")

    def value(i: int, name: str) -> tuple[float, float, float] | None:
        """(accuracy, seconds, images) of proxy ``name`` for candidate ``i``."""
        f = full[i]
        if name.startswith("epoch-"):  # read off the full run: its first k epochs
            k = int(name[6:])
            return f["val_curve"][k - 1], sum(f["epoch_seconds"][:k]), f["images"] * k / e
        r = ok.get((i, name, 0))
        return None if r is None else (r["final_acc"], r["seconds"], r["images"])

    vals = {i: {n: v for n in names if (v := value(i, n)) is not None} for i in full}
    cands = [{"candidate": i, "key": f["key"], "params": f["params"], "full": f["final_acc"],
              "full_seconds": f["seconds"], "proxies": {n: v[0] for n, v in vals[i].items()}}
             for i, f in full.items()]

    def judge(ids: list[int]) -> dict[str, dict[str, Any]]:
        proxies = {}
        for name in names:
            have = [i for i in ids if name in vals[i]]
            truth, prox = [full[i]["final_acc"] for i in have], [vals[i][name][0] for i in have]
            rho = spearman(truth, prox)
            proxies[name] = {
                "n": len(have), "spearman": None if math.isnan(rho) else rho,
                f"top{TOP}_kept": top_overlap(truth, prox), "top_k": min(TOP, len(have)),
                "time_fraction": fmean(vals[i][name][1] / full[i]["seconds"] for i in have)
                if have else None,
                "images_fraction": fmean(vals[i][name][2] / full[i]["images"] for i in have)
                if have else None}
        return proxies

    # A candidate that never learned (chance-level at the end) is last for every proxy: the
    # ties at the bottom lift every correlation. What a search needs is the order among the
    # ones that learn, so the report gives both.
    learned = [i for i in full if full[i]["final_acc"] >= LEARNED]
    spread = []
    for i in full:
        accs = [r["final_acc"] for (c, name, _), r in sorted(ok.items())
                if c == i and name == "full"]
        if len(accs) > 1:
            spread.append({"candidate": i, "seeds": len(accs), "accs": accs,
                           "mean": fmean(accs), "std": stdev(accs)})
    curves = [full[i]["val_curve"] for i in full]
    # The noise floor is that of networks that learn: one stuck at chance on every seed would
    # pull the pooled std towards zero.
    viable = [x for x in spread if x["mean"] >= LEARNED]
    dof = sum(x["seeds"] - 1 for x in viable)
    pooled = math.sqrt(sum((x["seeds"] - 1) * x["std"] ** 2 for x in viable) / dof) if dof else None
    return {"candidates": cands, "proxies": judge(list(full)),
            "pruner": {name: replay_pruner(curves, e, name) for name in PRUNERS_REPLAYED}
            if len(curves) > 1 else {},
            "proxies_learned": judge(learned), "learned_threshold": LEARNED,
            "seed_spread": {"candidates": spread, "pooled_std": pooled},
            "diverged": [[r["candidate"], r["proxy"], r["seed"]] for r in runs
                         if r["final_acc"] is None],
            "trainer_versions": sorted({f"{r['commit']}/{r['trainer_sha256']}" for r in runs
                                        if "trainer_sha256" in r}),
            # Commits differ as the project moves on; what must not differ is the trainer.
            "trainer_hashes": sorted({r["trainer_sha256"] for r in runs
                                      if "trainer_sha256" in r})}


def replay_pruner(curves: list[list[float]], epochs: int, name: str, trials: int = 100,
                  seeds: int = 5) -> dict[str, Any]:
    """The search's pruner (:func:`nas.study.config.make_pruner`) run on recorded full-schedule
    curves, no training: each of ``trials`` candidates is one of ``curves`` drawn at random
    (with replacement), reports its curve epoch by epoch and stops where the pruner says.
    Over ``seeds`` draws: the epochs trained per candidate (the cost of a pruned search
    stage: x trials / epochs = full trainings) and in how many draws the best curve drawn
    was among those trained to the end (pruning it would lose the search's answer)."""
    per_candidate, best_finished = [], 0
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        for seed in range(seeds):
            study = optuna.create_study(direction="maximize", pruner=make_pruner(name, epochs))
            rng, trained, finished = random.Random(seed), 0, set()
            drawn = [rng.randrange(len(curves)) for _ in range(trials)]
            for i in drawn:
                t = study.ask()
                for e, acc in enumerate(curves[i], 1):
                    t.report(acc, e)
                    trained += 1
                    if e < epochs and t.should_prune():
                        study.tell(t, state=optuna.trial.TrialState.PRUNED)
                        break
                else:
                    study.tell(t, curves[i][-1])
                    finished.add(i)
            per_candidate.append(trained / trials)
            best = max(curves[i][-1] for i in drawn)
            best_finished += any(curves[i][-1] == best for i in finished)
    finally:
        optuna.logging.set_verbosity(level)
    mean = fmean(per_candidate)
    return {"trials": trials, "seeds": seeds, "epochs_per_candidate": mean,
            "full_trainings": trials * mean / epochs, "best_finished": best_finished}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _proxy_table(proxies: dict[str, dict[str, Any]]) -> list[str]:
    """One row per proxy. The last column is what a 100-candidate search stage built on the
    proxy costs in full-schedule trainings (100 x images / full); for an epoch-k proxy that is
    the floor a pruner reaches only if it stops every candidate at epoch k, hence the >=."""
    out = ["| proxy | n | Spearman | top-5 kept | time / full | images / full | "
           "100 candidates, in full trainings |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, p in proxies.items():
        rho, tf, imf = (("–" if x is None else f"{x:.3f}") for x in
                        (p["spearman"], p["time_fraction"], p["images_fraction"]))
        cost = "–" if p["images_fraction"] is None else (
            f"{'≥ ' if name.startswith('epoch-') else ''}{100 * p['images_fraction']:.1f}")
        out.append(f"| {name} | {p['n']} | {rho} | {p[f'top{TOP}_kept']}/{p['top_k']} | {tf} | "
                   f"{imf} | {cost} |")
    return out


def markdown(rep: dict[str, Any]) -> str:
    """The report as Markdown: settings, proxy table, per-candidate table, seed spread."""
    h, a = rep["host"], rep["analysis"]
    out = [f"# Fidelity study: {rep['identity']['max_params']:,} parameters, "
           f"{rep['identity']['epochs']} epochs", ""]
    if rep["partial"]:
        out += [f"**PARTIAL**: {rep['runs_done']} of {rep['runs_planned']} runs done.", ""]
    rewritten = (f" (this report written by `{rep['command']}`)"
                 if rep.get("first_command", rep["command"]) != rep["command"] else "")
    out += [f"- command: `{rep.get('first_command', rep['command'])}`{rewritten}",
            f"- date: {rep['date']}",
            f"- device: {h['device']}, CPU {h['cpu_model']}, avx512_bf16 "
            f"{'yes' if h['cpu_flags']['avx512_bf16'] else 'no'}, bf16 autocast "
            f"{'on' if h['bf16_autocast'] else 'off'}",
            f"- versions: {', '.join(f'{k} {v}' for k, v in rep['versions'].items())}; "
            f"trainer (commit/sha256 of train, augment, builder): "
            f"{', '.join(a['trainer_versions'])}",
            f"- candidates with a full run: {len(a['candidates'])} of {rep['candidates']}", "",
            "All candidates:", ""]
    out += _proxy_table(a["proxies"])
    if "proxies_learned" in a:
        out += ["", f"Only the candidates that learned (full schedule ≥ "
                    f"{a['learned_threshold']:.0%}): the order a search needs among viable "
                    f"networks, without the ties of the failed ones at the bottom:", ""]
        out += _proxy_table(a["proxies_learned"])
    for name, r in a.get("pruner", {}).items():
        out += ["", f"`--pruner {name}` as the search configures it, replayed on the "
                    f"{len(a['candidates'])} full-schedule curves above ({r['trials']} candidates "
                    f"drawn from them with replacement, {r['seeds']} draws, no training): "
                    f"{r['epochs_per_candidate']:.1f} epochs per candidate, i.e. "
                    f"{r['full_trainings']:.1f} full trainings per {r['trials']} candidates; the "
                    f"best candidate drawn was trained to the end in {r['best_finished']} of "
                    f"{r['seeds']} draws."]
    names = list(a["proxies"])
    out += ["", "| # | params | full | s | " + " | ".join(names) + " | architecture |",
            "|---:|---:|---:|---:|" + "---:|" * len(names) + "---|"]
    for c in a["candidates"]:
        cells = " | ".join(_pct(c["proxies"].get(n)) for n in names)
        key = c["key"].replace("|", "\\|")  # GitHub tables split cells at a bare | even in code
        out.append(f"| {c['candidate']} | {c['params']:,} | {_pct(c['full'])} | "
                   f"{c['full_seconds']:.0f} | {cells} | `{key}` |")
    s = a["seed_spread"]
    out += ["", f"Seed spread of the full schedule (pooled std of the candidates that learned: "
                f"{_pct(s['pooled_std'])}):", "",
            "| # | seeds | mean | std | accuracies |", "|---:|---:|---:|---:|---|"]
    out += [f"| {x['candidate']} | {x['seeds']} | {_pct(x['mean'])} | {_pct(x['std'])} | "
            f"{', '.join(_pct(v) for v in x['accs'])} |" for x in s["candidates"]]
    if len(a.get("trainer_hashes", a["trainer_versions"])) > 1:
        out += ["", f"**Mixed trainer code** (commit/hash): {a['trainer_versions']}"]
    if a["diverged"]:
        out += ["", f"Diverged (left out): {a['diverged']}"]
    return "\n".join(out) + "\n"


def write_report(out: Path, stem: str, header: dict[str, Any], runs: list[dict[str, Any]],
                 jobs: list[Job], command: str, host: dict[str, Any]) -> dict[str, Any]:
    """Analyse ``runs`` and write ``<stem>.json`` and ``<stem>.md``; returns the report. PARTIAL
    while any of ``jobs`` has no line in ``runs``."""
    done = {(r["candidate"], r["proxy"], r["seed"]) for r in runs}
    todo = [j for j in jobs if (j.candidate, j.proxy, j.seed) not in done]
    rep = {"command": command, "first_command": header["command"],
           "date": time.strftime("%Y-%m-%d %H:%M %Z"), "host": host,
           "versions": checkpoint.versions(),
           "identity": header["identity"], "candidates": header.get("candidates"),
           "runs_done": len(jobs) - len(todo), "runs_planned": len(jobs), "partial": bool(todo),
           "analysis": analyze(runs, header["identity"])}
    for name, text in ((f"{stem}.json", json.dumps(rep, indent=2)), (f"{stem}.md", markdown(rep))):
        (out / f"{name}.tmp").write_text(text)
        os.replace(out / f"{name}.tmp", out / name)  # a reader never sees half a report
    return rep


# -- the command -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """The command: run (or resume) the study and write its report; exit status 0."""
    p = Parser(prog="python -m nas.fidelity", description=describe(__doc__))
    add = p.add_argument
    add("--candidates", type=positive_int, default=16, help="architectures (default 16)")
    add("--max-params", type=positive_int, default=20_000, help="budget (default 20,000)")
    add("--space", type=int, choices=SPACE_VERSIONS, default=1,
        help="search space version the candidates come from (nas.search --space); 2: its "
             "starting members, spread over depth, BatchNorm and head (default %(default)s)")
    add("--epochs", type=positive_int, default=15, help="the full schedule (default 15)")
    add("--seed", type=nonneg_int, default=0,
        help="seeds the random draw of the candidate architectures (training uses seed 0 and "
             "the --extra-seeds) (default %(default)s)")
    add("--seeds-spread", type=nonneg_int, default=3,
        help="candidates trained on extra seeds (default 3)")
    add("--extra-seeds", type=nonneg_int, default=2, help="extra seeds for those (default 2)")
    add("--short-epochs", type=lambda t: [positive_int(x) for x in t.split(",")], default=[2, 4],
        help="complete short schedules, comma-separated (default 2,4)")
    add("--subset", type=positive_int, default=10_000,
        help="training images of the subset proxy (default 10,000)")
    add("--subset-epochs", type=positive_int, default=4, help="its schedule (default 4)")
    add("--val-size", type=positive_int, default=10_000, help="validation images (default 10,000)")
    add("--data-dir", default=str(DEFAULT_DATA_DIR), help=DATA_DIR_HELP)
    add("--device", default="auto", choices=("auto", "cuda", "cpu"), help=DEVICE_HELP)
    add("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    add("--threads", type=positive_int, default=torch.get_num_threads(),
        help="CPU threads (default %(default)s: torch's default on this machine)")
    add("--precision", default="auto", choices=PRECISIONS,
        help="training arithmetic (default %(default)s: as nas.search, bf16 autocast on CPUs "
             "with bf16 units); a resume must train as the runs already in the file did")
    add("--workers", type=positive_int, default=1,
        help="runs trained at once, each in its own process with --threads threads "
             "(default %(default)s)")
    add("--analyze-only", action="store_true", help="rewrite the report from the run file")
    a = p.parse_args(argv)
    command = "python -m nas.fidelity " + shlex.join(sys.argv[1:] if argv is None else argv)
    stem = f"fidelity-{'' if a.space == 1 else f'v{a.space}-'}{a.max_params}p-{a.epochs}e"
    path = a.out / f"{stem}-runs.jsonl"
    ident = identity(a)
    header, runs = read_runs(path)  # read-only: the running study may be appending
    if header is not None and header["identity"] != ident:
        diff = sorted(k for k in ident if header["identity"].get(k) != ident[k])
        raise UserError(f"{path} was made with other settings ({', '.join(diff)}): "
                        f"use another --out")
    device = resolve_device(a.device)
    use_threads(a.threads)  # before host_info: the device string names the threads
    host = host_info(device, a.precision)
    jobs = plan_jobs(a.candidates, a)
    if a.analyze_only:
        if header is None:
            raise UserError(f"no run file at {path}")
        if runs:  # the runs' machine, not this one: the report describes how they ran
            host = {**host, **{k: runs[-1][k] for k in host if k in runs[-1]}}
        write_report(a.out, stem, header, runs, jobs, command, host)
        print(f"written: {a.out / stem}.json, .md ({len(runs)} runs)")
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:  # held while training: one study per run file
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another nas.fidelity is running on {path}") from None
        header, runs = read_runs(path, repair=True)
        # One study, one arithmetic: bf16 and fp32 runs would differ by more than the ranks
        # measure. The identity predates --precision, so the runs themselves say.
        ran = {precision_of(r) for r in runs}
        if ran - {host["precision"]}:
            (one,) = ran if len(ran) == 1 and ran <= set(PRECISIONS) else (None,)
            fix = f"pass --precision {one} (or another --out)" if one else "use another --out"
            raise UserError(f"{path} holds runs trained in {', '.join(sorted(ran))}; this "
                            f"would train in {host['precision']}: {fix}")
        study(a, command, stem, header, runs, jobs, device, host)
    return 0


def study(a: Any, command: str, stem: str, header: dict[str, Any] | None,
          runs: list[dict[str, Any]], jobs: list[Job], device: torch.device,
          host: dict[str, Any]) -> None:
    """Train every job not yet in the run file, appending a line and rewriting the report after
    each; SIGTERM ends it like Ctrl-C, losing only the run in progress."""
    path = a.out / f"{stem}-runs.jsonl"
    tr, val = load_mnist(a.data_dir).search_splits(a.val_size, 0)
    if a.subset >= len(tr):
        raise UserError(f"--subset must be below the {len(tr):,} training images")
    splits = {None: tr, a.subset: tr.subset(a.subset, 0)}  # every candidate, the same images
    specs = sample_candidates(a.candidates, a.max_params, a.seed, a.space)
    for r in runs:
        if r["candidate"] < len(specs) and r["key"] != specs[r["candidate"]].key():
            raise UserError(f"{path}: candidate {r['candidate']} is not the sampled one "
                            f"(the search space changed?): use another --out")
    if header is None:
        header = {"kind": "header", "identity": identity(a), "command": command,
                  "candidates": a.candidates, "date": time.strftime("%Y-%m-%d %H:%M %Z")}
        append_line(path, header)
    header = {**header, "candidates": max(a.candidates, header.get("candidates", 0))}
    done = {(r["candidate"], r["proxy"], r["seed"]) for r in runs}
    todo = [j for j in jobs if (j.candidate, j.proxy, j.seed) not in done]
    print(f"{path}: {len(jobs)} runs planned, {len(jobs) - len(todo)} done, {len(todo)} to do, "
          f"on {host['device']}", flush=True)
    old = signal.signal(signal.SIGTERM, _interrupt)
    secs = imgs = 0.0
    waiting = {(j.candidate, j.proxy, j.seed): j for j in todo}
    try:
        results = (_in_parallel(todo, specs, a, device, host) if a.workers > 1 else
                   (run_job(j, specs[j.candidate], splits[j.subset], val, device, host)
                    for j in todo))
        for n, r in enumerate(results, 1):  # in the order they finish
            job = waiting.pop((r["candidate"], r["proxy"], r["seed"]))
            runs.append(r)
            append_line(path, r)
            secs, imgs = secs + r["seconds"], imgs + r["images"]
            left = sum(j.epochs * len(splits[j.subset]) for j in waiting.values()) * secs / imgs
            left /= a.workers
            print(f"[{n}/{len(todo)}] candidate {job.candidate} {job.proxy} seed {job.seed}: "
                  f"{_pct(r['final_acc'])} in {r['seconds']:.0f} s "
                  f"({r['seconds'] / job.epochs:.1f} s/epoch), ~{left / 3600:.1f} h left",
                  flush=True)
            write_report(a.out, stem, header, runs, jobs, command, host)
    finally:
        signal.signal(signal.SIGTERM, old)
    write_report(a.out, stem, header, runs, jobs, command, host)
    print(f"written: {a.out / stem}.json, .md")



def _in_parallel(todo: list[Job], specs: list[ArchSpec], a: Any, device: torch.device,
                 host: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The run lines of ``todo``, trained by ``a.workers`` processes, in the order they finish
    (handed out in plan order). However this ends (done, Ctrl-C, SIGTERM), the workers are
    gone when it returns: terminated, and they die with this process even if it is killed."""
    pool = multiprocessing.get_context("spawn").Pool(a.workers, initializer=_worker_init,
                                                     initargs=(a.threads,))
    try:
        yield from pool.imap_unordered(_worker_run, [
            (job, specs[job.candidate].to_json(), a.data_dir, a.val_size, str(device), host)
            for job in todo])
    finally:
        pool.terminate()
        pool.join()


def _worker_init(threads: int) -> None:
    """A pool process's start: it dies with the parent, leaves Ctrl-C to it, and trains
    every job on ``threads`` threads (--threads, as one process would)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which ends us
    use_threads(threads)


def _worker_run(args: tuple[Any, ...]) -> dict[str, Any]:
    """One job in a worker process: its data is loaded once per process (load_mnist caches)."""
    job, spec_json, data_dir, val_size, device, host = args
    tr, val = load_mnist(data_dir).search_splits(val_size, 0)
    tr = tr if job.subset is None else tr.subset(job.subset, 0)
    dev = torch.device(device)
    return run_job(job, ArchSpec.from_json(spec_json), tr.to(dev), val.to(dev), dev, host)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the study like Ctrl-C: the run in progress is lost, the file stays whole.
    ``signum`` on the exception lets the CLI say which signal and exit 128 + signum."""
    e = KeyboardInterrupt()
    e.signum = signum  # type: ignore[attr-defined]
    raise e


def run_job(job: Job, spec: ArchSpec, tr: Split, val: Split, device: torch.device,
            host: dict[str, Any]) -> dict[str, Any]:
    """Train one job with the search's recipe (only epochs, seed and, as ``host`` says, the
    precision changed); its run line.
    A diverged run is recorded with ``final_acc`` None, so it is not retried forever."""
    cfg = replace(TrainConfig(), epochs=job.epochs, seed=job.seed, precision=host["precision"])
    t0 = time.perf_counter()
    try:
        res = train(spec, tr, val, cfg, device, callback=lambda e: print(
            f"  candidate {job.candidate} {job.proxy} seed {job.seed} epoch {e.epoch}/"
            f"{job.epochs}: {_pct(e.accuracy)} ({e.seconds:.1f} s)", flush=True))
        curve, ep_s, err = res.accuracies, res.epoch_seconds, None
    except TrainingDiverged as e:
        curve, ep_s, err = [], [], str(e)
    images = images_per_epoch(len(tr), cfg.batch_size) * job.epochs  # the ragged batch dropped
    return {"kind": "run", "candidate": job.candidate, "proxy": job.proxy, "seed": job.seed,
            "epochs": job.epochs, "images": images,
            "key": spec.key(), "spec": spec.to_dict(), "params": plan(spec).params,
            "val_curve": curve, "final_acc": curve[-1] if curve else None, "error": err,
            "epoch_seconds": ep_s, "seconds": time.perf_counter() - t0,
            **host, "torch": str(torch.__version__), "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def cli() -> None:
    run(main, "python -m nas.fidelity")


if __name__ == "__main__":
    cli()
