"""``python -m nas.bench``: nas's trainer against the conventional pipeline, on this device.

Three measurements, all in one run, written as JSON and Markdown with the device, the library
versions and the command line:

1. **Throughput**, the same reference network (16,146 parameters) trained on the same number of
   images two ways: (a) the conventional pipeline people use for this challenge —
   ``torchvision.datasets.MNIST`` with ``RandomRotation``, ``ToTensor``, ``Normalize``, a
   shuffled ``DataLoader`` (batch 128, 2 workers), fp32, default memory format, SGD with
   momentum; (b) ``nas.train.train`` with its defaults. Rounds alternate a, b, a, b … so drift on
   a shared machine hits both; each measurement runs in a fresh process so its peak host memory
   (VmHWM) is its own. Reported: images/s, seconds per 60,000-image epoch, peak memory, b/a.
2. **One candidate**: wall time of one complete candidate with the schedule ``nas.search``
   uses (``--candidate-epochs``, default the full default schedule), evaluation included.
3. **Search throughput**: trained candidates per hour of a real ``nas.search`` run (default
   sampler and pruner) with 1, 2, 4 … workers on this device, each into a fresh study.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nas import record
from nas.cli import Parser, UserError, describe, nonneg_int, positive_int, run
from nas.data import DEFAULT_DATA_DIR, FILES, Split, load_mnist
from nas.train import TrainConfig, device_name, resolve_device, train
from nas.zoo import bn_dropout_16k

MiB = 2**20


# -- one measurement, in its own process ------------------------------------------------------
def _peak_host_bytes() -> int:
    """Peak resident memory of this process (VmHWM), in bytes; 0 where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conventional(images: int, device: torch.device, data_dir: str, threads: int) -> dict:
    """Pipeline (a): torchvision dataset, PIL transforms, DataLoader, fp32, plain SGD."""
    import torchvision.transforms as T
    from torchvision.datasets import MNIST

    from nas.builder import build

    torch.set_num_threads(threads)
    root = _torchvision_root(data_dir)
    ds = MNIST(str(root), train=True, download=False, transform=T.Compose([
        T.RandomRotation((-7.0, 7.0), fill=(0,)), T.ToTensor(), T.Normalize((0.1307,), (0.3081,))]))
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=2,
                                         pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = build(bn_dropout_16k()).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    seen = 0
    _sync(device)
    t0 = time.perf_counter()
    while seen < images:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            if seen >= images:
                break
    _sync(device)
    return {"images": seen, "seconds": time.perf_counter() - t0}


def ours(images: int, device: torch.device, data_dir: str, threads: int,
         cfg: TrainConfig) -> dict:
    """Pipeline (b): nas's trainer, on ``images`` training images for one epoch."""
    torch.set_num_threads(threads)
    m = load_mnist(data_dir)
    n = min(images, len(m.train))
    reps = -(-images // n)
    train_split = Split(m.train.x[:n].repeat(reps, 1, 1)[:images],
                        m.train.y[:n].repeat(reps)[:images])
    # (a) evaluates nothing: (b) gets one token batch so its evaluation costs next to nothing.
    eval_split = Split(m.train.x[:256], m.train.y[:256])
    _sync(device)
    t0 = time.perf_counter()
    train(bn_dropout_16k(), train_split, eval_split, replace(cfg, epochs=1), device)
    _sync(device)
    bs = min(cfg.batch_size, images)
    return {"images": images // bs * bs,  # the trainer drops the ragged last batch
            "seconds": time.perf_counter() - t0}


def _child(kind: str, kwargs: dict, q: Any) -> None:
    try:
        device = torch.device(kwargs.pop("device"))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fn = conventional if kind == "a" else ours
        out = fn(device=device, **kwargs)
        out["peak_host_mib"] = _peak_host_bytes() / MiB
        out["peak_device_mib"] = (torch.cuda.max_memory_allocated(device) / MiB
                                  if device.type == "cuda" else None)
        q.put(out)
    except Exception as e:  # noqa: BLE001 - reported to the parent as a failed measurement
        q.put({"error": f"{type(e).__name__}: {e}"})


def measure(kind: str, **kwargs: Any) -> dict:
    """Run one measurement in a fresh spawned process; returns its numbers."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, kwargs, q))
    p.start()
    out = q.get()
    p.join()
    if "error" in out:
        raise RuntimeError(f"pipeline ({kind}) failed: {out['error']}")
    out["images_per_s"] = out["images"] / out["seconds"]
    out["s_per_epoch"] = 60_000 / out["images_per_s"]
    return out


def _torchvision_root(data_dir: str) -> Path:
    """torchvision reads decompressed files from ROOT/MNIST/raw: make them once, in /tmp."""
    from torchvision.datasets.utils import extract_archive

    src = Path(load_mnist(data_dir).source)
    # Keyed by the source's path and files, so another copy never reads a stale extraction.
    stamp = repr([(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns)
                  for f in sorted(src.iterdir())])
    root = Path(tempfile.gettempdir()) / ("nas-bench-mnist-" +
                                          hashlib.sha1(stamp.encode()).hexdigest()[:12])
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in FILES.values():
        if not (raw / stem).is_file():
            if (src / stem).is_file():
                (raw / stem).write_bytes((src / stem).read_bytes())
            else:
                extract_archive(str(src / (stem + ".gz")), str(raw))
    return root


def _n_val(data_dir: str) -> int:
    """The search's 10,000 validation images, or a sixth of a smaller training set."""
    return min(10_000, len(load_mnist(data_dir).train) // 6)


# -- the three sections -----------------------------------------------------------------------
def throughput(rounds: int, images: int, device: torch.device, data_dir: str,
               threads: int, cfg: TrainConfig, log: Any,
               variants: dict[str, TrainConfig] | None = None) -> dict:
    """(a) against (b), and (b) against each named variant of its settings, interleaved."""
    variants = variants or {}
    runs: dict[str, list[dict]] = {"a": [], "b": [], **{v: [] for v in variants}}
    for r in range(rounds):
        for kind in runs:
            kw: dict[str, Any] = dict(images=images, device=str(device), data_dir=data_dir,
                                      threads=threads)
            if kind != "a":
                kw["cfg"] = variants.get(kind, cfg)
            m = measure("a" if kind == "a" else "b", **kw)
            runs[kind].append(m)
            log(f"  round {r + 1}/{rounds} ({kind}): {m['images_per_s']:,.0f} images/s")

    def summary(kind: str) -> dict:
        ms = runs[kind]
        return {"images_per_s": statistics.median(x["images_per_s"] for x in ms),
                "s_per_epoch": statistics.median(x["s_per_epoch"] for x in ms),
                "peak_host_mib": max(x["peak_host_mib"] for x in ms),
                "peak_device_mib": ms[0]["peak_device_mib"]}

    def ratios(kind: str, base: str) -> list[float]:
        """Per round, so each ratio compares neighbours in time."""
        return [x["images_per_s"] / y["images_per_s"] for x, y in zip(runs[kind], runs[base])]

    return {
        "images_per_measurement": images, "rounds": rounds, "order": "a, b alternating",
        "conventional": summary("a"), "nas": summary("b"),
        "ratio_b_over_a": statistics.median(ratios("b", "a")), "ratios": ratios("b", "a"),
        "runs": runs,
        "variants": {v: {"images_per_s": summary(v)["images_per_s"],
                         "ratio_over_b": statistics.median(ratios(v, "b")),
                         "settings": {k: val for k, val in variants[v].to_dict().items()
                                      if val != cfg.to_dict()[k]}}
                     for v in variants},
    }


def one_candidate(device: torch.device, data_dir: str, cfg: TrainConfig) -> dict:
    tr, val = load_mnist(data_dir).search_splits(_n_val(data_dir))
    t0 = time.perf_counter()
    result = train(bn_dropout_16k(), tr, val, cfg, device)
    _sync(device)
    return {"epochs": cfg.epochs, "seconds": time.perf_counter() - t0,
            "val_acc_final": result.final_accuracy,
            "epoch_seconds_median": statistics.median(result.epoch_seconds)}


def search_rate(workers: Sequence[int], trials: int, epochs: int, device: str, data_dir: str,
                log: Any) -> list[dict]:
    from nas.runner import search
    from nas.study import SearchConfig

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in workers:
            cfg = SearchConfig(storage=f"sqlite:///{tmp}/bench-{w}.db", study_name=f"bench-{w}",
                               trials=trials, workers=w, device=device, data_dir=data_dir,
                               n_val=_n_val(data_dir),
                               train=TrainConfig(epochs=epochs))
            t0 = time.perf_counter()
            study = search(cfg, progress=False)
            secs = time.perf_counter() - t0
            done = study.get_trials(deepcopy=False)
            n = sum(record.was_trained(t) for t in done)
            out.append({"workers": w, "trials": n, "seconds": secs,
                        "candidates_per_hour": n / secs * 3600,
                        "epochs_trained": sum(len(record.curve_of(t)) for t in done),
                        "rejected": record.count_outcome(done, record.REJECTED)})
            log(f"  {w} worker(s): {n} trained in {secs:.0f} s "
                f"({n / secs * 3600:,.0f} candidates/hour)")
    return out


# -- report -----------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    t = res["throughput"]
    a, b = t["conventional"], t["nas"]

    def mem(x: dict) -> str:
        dev = f", device {x['peak_device_mib']:.0f} MiB" if x["peak_device_mib"] else ""
        return f"host {x['peak_host_mib']:.0f} MiB{dev}"

    lines = [f"## {res['device']} — {res['date']}", "",
             f"`{res['command']}` (torch {res['versions']['torch']}, {t['rounds']} rounds of "
             f"{t['images_per_measurement']:,} images, a/b alternating; medians)", "",
             "| pipeline | images/s | s/epoch (60k) | peak memory |", "|---|---:|---:|---|",
             f"| (a) conventional: torchvision + DataLoader, fp32 | {a['images_per_s']:,.0f} | "
             f"{a['s_per_epoch']:.1f} | {mem(a)} |",
             f"| (b) nas trainer, defaults | {b['images_per_s']:,.0f} | {b['s_per_epoch']:.1f} | "
             f"{mem(b)} |",
             f"| **ratio b/a** | **{t['ratio_b_over_a']:.2f}×** | | |", ""]
    if t.get("variants"):
        lines += ["Variants of (b), interleaved with it:", "",
                  "| variant | images/s | ratio over (b) |", "|---|---:|---:|"]
        lines += [f"| {name} | {v['images_per_s']:,.0f} | {v['ratio_over_b']:.2f}× |"
                  for name, v in t["variants"].items()]
        lines.append("")
    c = res.get("candidate")
    if c:
        lines += [f"One candidate (reference network, {c['epochs']} epochs on 50k, evaluation "
                  f"included): **{c['seconds']:.1f} s**, final val acc {c['val_acc_final']:.2%}.",
                  ""]
    s = res.get("search")
    if s:
        lines += [f"Search throughput (`nas.search`, default sampler and pruner, "
                  f"{res['settings']['search_epochs']}-epoch schedule, fresh study each):", "",
                  "| workers | trained | seconds | candidates/hour | epochs trained |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['workers']} | {r['trials']} | {r['seconds']:.0f} | "
                  f"{r['candidates_per_hour']:,.0f} | {r['epochs_trained']} |" for r in s]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    p = Parser(prog="python -m nas.bench", description=describe(__doc__))
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--rounds", type=positive_int, default=3, help="a/b pairs (default 3)")
    p.add_argument("--images", type=positive_int, default=60_000,
                   help="images per measurement (default: one 60,000-image epoch)")
    p.add_argument("--candidate-epochs", type=nonneg_int, default=None,
                   help="schedule of the one-candidate timing (default: the search default; "
                        "0 skips it)")
    p.add_argument("--workers", default="1,2,4,8" if cuda else "1,2",
                   help="worker counts for the search throughput ('' skips it)")
    p.add_argument("--search-trials", type=positive_int, default=16 if cuda else 4)
    p.add_argument("--search-epochs", type=positive_int, default=None,
                   help="schedule of the search runs (default: 20 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=positive_int, default=torch.get_num_threads())
    p.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="also time the nas trainer with these settings changed, e.g. "
                        "channels_last=false or batch_size=512,lr=0.4 (repeatable)")
    p.add_argument("--out", type=Path, default=Path("bench") / "results")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    load_mnist(a.data_dir)
    cfg = TrainConfig()
    cand_epochs = cfg.epochs if a.candidate_epochs is None else a.candidate_epochs
    search_epochs = a.search_epochs or (cfg.epochs if device.type == "cuda" else 1)
    workers = [int(w) for w in a.workers.split(",") if w.strip()]
    variants = {v: parse_variant(cfg, v) for v in a.variant}
    res: dict[str, Any] = {
        "device": device_name(device), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python -m nas.bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "versions": _versions(), "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"rounds": a.rounds, "images": a.images, "candidate_epochs": cand_epochs,
                     "workers": workers, "search_trials": a.search_trials,
                     "search_epochs": search_epochs, "threads": a.threads,
                     "train_config": cfg.to_dict()}}

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"throughput on {res['device']}: (a) conventional vs (b) nas, {a.images:,} images each")
    res["throughput"] = throughput(a.rounds, a.images, device, a.data_dir, a.threads, cfg, log,
                                   variants)
    log(f"  ratio b/a = {res['throughput']['ratio_b_over_a']:.2f}")
    if cand_epochs > 0:
        log(f"one candidate, {cand_epochs} epochs")
        res["candidate"] = one_candidate(device, a.data_dir, replace(cfg, epochs=cand_epochs))
        log(f"  {res['candidate']['seconds']:.1f} s")
    if workers:
        log(f"search throughput, {a.search_trials} trials of {search_epochs} epoch(s)")
        res["search"] = search_rate(workers, a.search_trials, search_epochs, str(device),
                                    a.data_dir, log)
    a.out.mkdir(parents=True, exist_ok=True)
    slug = f"{device.type}-{time.strftime('%Y%m%d-%H%M%S')}"
    (a.out / f"{slug}.json").write_text(json.dumps(res, indent=2, default=str))
    md = markdown(res)
    (a.out / f"{slug}.md").write_text(md)
    print()
    print(md)
    print(f"written: {a.out / slug}.json, .md")
    return 0


def parse_variant(cfg: TrainConfig, text: str) -> TrainConfig:
    """``"batch_size=512,lr=0.4"`` -> cfg with those fields changed (typed like the field)."""
    changes: dict[str, Any] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in TrainConfig.__dataclass_fields__ or not value:
            raise UserError(f"--variant {text!r}: expected KEY=VALUE with KEY one of "
                            f"{', '.join(TrainConfig.__dataclass_fields__)}")
        current = getattr(cfg, key)
        try:
            if isinstance(current, bool) or current is None:  # None: an "auto" switch
                if value.lower() not in ("true", "false"):
                    raise ValueError(value)
                changes[key] = value.lower() == "true"
            else:
                changes[key] = type(current)(value)
        except ValueError:
            kind = "bool" if current is None else type(current).__name__
            raise UserError(f"--variant {text!r}: {key} takes a {kind}, "
                            f"got {value!r}") from None
    return replace(cfg, **changes)


def _versions() -> dict[str, str]:
    import torchvision

    return {**record.versions(), "torchvision": str(torchvision.__version__)}


def cli() -> None:
    run(main, "python -m nas.bench")


if __name__ == "__main__":
    cli()
