"""``python -m nas.bench``: nas's trainer against the conventional pipeline, on this device.

Three measurements, all in one run, written as JSON and Markdown with the device, the library
versions and the command line:

1. **Throughput**, the same reference network (16,146 parameters on MNIST) trained on the same
   number of images two ways: (a) the conventional pipeline people use for this challenge —
   ``torchvision.datasets.MNIST`` with ``RandomRotation``, ``ToTensor``, ``Normalize``, a
   shuffled ``DataLoader`` (batch 128, 2 workers), fp32, default memory format, SGD with
   momentum; (b) ``nas.training.trainer.train`` with its defaults. ``--dataset`` measures on
   other data (:class:`Data`): the reference network's layers on its input, (a) reading it
   with its torchvision class where it has one (``FashionMNIST``), else from its arrays
   through the same PIL transforms. Rounds alternate a, b, a,
   b … so drift on a shared machine hits both; each measurement runs in a fresh process so
   its peak host memory (VmHWM) is its own. Reported: images/s, seconds per 60,000-image
   epoch, peak memory, b/a.
2. **One candidate**: wall time of one complete candidate with the schedule ``nas.search``
   uses (``--candidate-epochs``, default the full default schedule), evaluation included.
3. **Search throughput**: trained candidates per hour of a real ``nas.search`` search stage
   (default sampler, pruner and proxy, so each candidate trains the proxy schedule, not
   ``--search-epochs``; no finalists) with 1, 2, 4 … workers on this device, each into a fresh
   study.

Next to the throughput it reports how close each pipeline comes to the device's limit: the
achieved training FLOP/s (:func:`train_flops_per_image` times images/s) as a share of the
dense-matmul peak measured in the same run (:func:`matmul_peak`, in the dtype that pipeline
computes in).

``--gpu-check`` runs instead the GPU acceptance check (:func:`acceptance`): search, replay,
export and one throughput round through the real command lines; any error fails it.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nas.arch.plan import plan
from nas.arch.space import Input
from nas.arch.spec import ArchSpec
from nas.arch.zoo import bn_dropout_16k
from nas.cli.common import (DATASET_HELP, DEVICE_HELP, NAMED_DATA_DIR_HELP, Parser, describe,
                            nonneg_int, positive_int, resolve_dataset, run)
from nas.errors import UserError
from nas.study import record
from nas.training import checkpoint
from nas.training.data import MNIST as Loaded
from nas.training.data import Split
from nas.training.host import cpu_flags, cpu_model, use_threads
from nas.training.sources import load_data
from nas.training.trainer import (PRECISIONS, TrainConfig, device_name, images_per_epoch,
                                  precision_for, resolve_device, train)

MiB = 2**20
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# -- how close to the limit --------------------------------------------------------------------
def forward_flops(spec: ArchSpec) -> int:
    """FLOPs of one image's forward pass through ``build(spec)``, from its layer plan: two per
    multiply-add of every convolution (2·Cin·Cout·k·k·Hout·Wout) and linear layer
    (2·in·out). Not counted: biases, BatchNorm, ReLU, pooling, dropout and the loss
    (elementwise work, a few per cent more; it is memory-bound, not what a matmul peak is)."""
    total = 0
    for layer in plan(spec).layers:
        a = layer.args
        if layer.kind == "conv":
            _, h, w = layer.out_shape
            total += 2 * a["in_channels"] * a["out_channels"] * a["kernel_size"] ** 2 * h * w
        elif layer.kind == "linear":
            total += 2 * a["in_features"] * a["out_features"]
    return total


def train_flops_per_image(spec: ArchSpec) -> int:
    """Forward + backward FLOPs of one training image: 3x :func:`forward_flops`, the usual
    count (the backward pass computes the gradients of the inputs and of the weights, each as
    many FLOPs as the forward; the first layer's input gradient is not needed, so this
    overcounts the stem conv slightly)."""
    return 3 * forward_flops(spec)


def matmul_peak(device: torch.device, dtypes: Sequence[str], n: int | None = None,
                reps: int = 5) -> dict:
    """Dense-matmul FLOP/s of ``device`` in each of ``dtypes`` (bf16, fp16, fp32): the best
    of ``reps`` timed n×n @ n×n products (2n³ FLOPs each) after a warm-up; n is 2048 on CPU
    and 8192 on CUDA, large enough to reach the library's best kernels. fp32 means fp32 (no
    TF32), as the fp32 trainer's ``autocast``-free path computes. On the CPU it uses the
    threads this process has (:func:`measure` gives each measurement ``--threads``)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    out = {}
    for name in dtypes:
        a = torch.randn(n, n, device=device).to(DTYPES[name])
        b = torch.randn(n, n, device=device).to(DTYPES[name])
        a @ b  # warm-up: kernel selection, thread pool
        best = math.inf
        for _ in range(reps):
            _sync(device)
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * n**3 / best
    return {"n": n, "flops_per_s": out}


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


@dataclass(frozen=True)
class Data:
    """What ``--dataset``/``--data-dir`` name, as a search records them
    (:func:`nas.cli.common.resolve_dataset`); small and picklable, so a spawned measurement
    loads the data itself."""

    arg: str = "mnist"
    data_dir: str | None = None

    def load(self) -> Loaded:
        return load_data(self.arg, self.data_dir)

    def spec(self) -> ArchSpec:
        """The reference network (``bn_dropout_16k``'s layers) on this data's input."""
        d = self.load().dataset
        return Input(d.shape[0], d.shape[1], len(d.classes)).apply(bn_dropout_16k())

    def cli_args(self) -> list[str]:
        """The command-line arguments that name this data."""
        return ["--dataset", self.arg, *(["--data-dir", self.data_dir] if self.data_dir else [])]


class _ArrayImages(torch.utils.data.Dataset):
    """uint8 images as PIL images through ``transform``, as torchvision's MNIST class serves
    its own: (a)'s reader for data that has no torchvision class (a folder, a .npz)."""

    def __init__(self, split: Split, transform: Any) -> None:
        self.x, self.y, self.transform = split.x, split.y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        x = self.x[i]  # H x W, or C x H x W (nas.training.sources): PIL takes H x W x C
        x = x.numpy() if x.ndim == 2 else x.permute(1, 2, 0).numpy()
        return self.transform(Image.fromarray(x)), int(self.y[i])


def conventional(images: int, device: torch.device, data: Data) -> dict:
    """Pipeline (a): torchvision dataset, PIL transforms, DataLoader, fp32, plain SGD."""
    import torchvision.datasets
    import torchvision.transforms as T

    from nas.arch.build import build

    loaded = data.load()
    d = loaded.dataset
    c = d.shape[0]
    transform = T.Compose([  # the constants (b) normalises with
        T.RandomRotation((-7.0, 7.0), fill=(0,) * c), T.ToTensor(),
        T.Normalize((d.mean,) * c, (d.std,) * c)])
    if d.torchvision is not None and c == 1:
        ds = getattr(torchvision.datasets, d.torchvision)(
            str(_torchvision_root(loaded)), train=True, download=False, transform=transform)
    else:
        ds = _ArrayImages(loaded.train, transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=2,
                                         pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = build(data.spec()).to(device)
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


def ours(images: int, device: torch.device, data: Data, cfg: TrainConfig) -> dict:
    """Pipeline (b): nas's trainer, on ``images`` training images for one epoch."""
    m = data.load()
    n = min(images, len(m.train))
    reps = -(-images // n)
    x = m.train.x[:n]
    train_split = Split(x.repeat(reps, *[1] * (x.ndim - 1))[:images],
                        m.train.y[:n].repeat(reps)[:images])
    # (a) evaluates nothing: (b) gets one token batch so its evaluation costs next to nothing.
    eval_split = Split(m.train.x[:256], m.train.y[:256])
    _sync(device)
    t0 = time.perf_counter()
    result = train(data.spec(), train_split, eval_split, replace(cfg, epochs=1), device,
                   dataset=m.dataset)
    _sync(device)
    return {"images": images_per_epoch(images, cfg.batch_size),
            "seconds": time.perf_counter() - t0, "precision": result.precision}


def _child(kind: str, kwargs: dict, q: Any) -> None:
    try:
        use_threads(kwargs.pop("threads"))  # the process's entry: the count is this run's alone
        device = torch.device(kwargs.pop("device"))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fn = {"a": conventional, "b": ours, "peak": matmul_peak}[kind]
        out = fn(device=device, **kwargs)
        out["peak_host_mib"] = _peak_host_bytes() / MiB
        out["peak_device_mib"] = (torch.cuda.max_memory_allocated(device) / MiB
                                  if device.type == "cuda" else None)
        q.put(out)
    except Exception as e:  # noqa: BLE001 - reported to the parent as a failed measurement
        q.put({"error": f"{type(e).__name__}: {e}"})


def measure(kind: str, **kwargs: Any) -> dict:
    """Run one measurement (``a``, ``b`` or ``peak``) in a fresh spawned process on
    ``threads`` torch threads (a keyword of ``kwargs``, with the measuring function's own);
    returns its numbers."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, kwargs, q))
    p.start()
    out = None
    while out is None:  # a child that dies without a word (killed, crashed) must not hang us
        try:
            out = q.get(timeout=5)
        except queue.Empty:
            if not p.is_alive() and q.empty():
                raise RuntimeError(f"pipeline ({kind}) died (exit code {p.exitcode}) "
                                   f"without a result") from None
    p.join()
    if "error" in out:
        raise RuntimeError(f"pipeline ({kind}) failed: {out['error']}")
    if "images" in out:
        out["images_per_s"] = out["images"] / out["seconds"]
        out["s_per_epoch"] = 60_000 / out["images_per_s"]
    return out


def _torchvision_root(loaded: Loaded) -> Path:
    """torchvision reads decompressed files from ROOT/<its class>/raw (MNIST/raw,
    FashionMNIST/raw): make them once, in /tmp."""
    from torchvision.datasets.utils import extract_archive

    d = loaded.dataset
    src = Path(loaded.source)
    # Keyed by the source's path and files, so another copy never reads a stale extraction.
    stamp = repr([(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns)
                  for f in sorted(src.iterdir())])
    root = Path(tempfile.gettempdir()) / (f"nas-bench-{d.name.lower()}-" +
                                          hashlib.sha1(stamp.encode()).hexdigest()[:12])
    raw = root / str(d.torchvision) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in d.files:
        if not (raw / stem).is_file():
            if (src / stem).is_file():
                (raw / stem).write_bytes((src / stem).read_bytes())
            else:
                extract_archive(str(src / (stem + ".gz")), str(raw))
    return root


def _n_val(data: Data) -> int:
    """The search's 10,000 validation images, or a sixth of a smaller training set."""
    return min(10_000, len(data.load().train) // 6)


# -- the three sections -----------------------------------------------------------------------
def throughput(rounds: int, images: int, device: torch.device, data: Data,
               threads: int, cfg: TrainConfig, log: Any,
               variants: dict[str, TrainConfig] | None = None) -> dict:
    """(a) against (b), and (b) against each named variant of its settings, interleaved; after
    each round, the matmul peak in every dtype they compute in (the best round counts)."""
    variants = variants or {}
    runs: dict[str, list[dict]] = {"a": [], "b": [], **{v: [] for v in variants}}
    # (a) is fp32 by definition; (b) and its variants compute in what their precision resolves
    # to on this device.
    precision = {"a": "fp32", **{k: precision_for(device, variants.get(k, cfg).precision)
                                 for k in runs if k != "a"}}
    dtypes = sorted(set(precision.values()))
    peaks: list[dict] = []
    for r in range(rounds):
        for kind in runs:
            kw: dict[str, Any] = dict(images=images, device=str(device), data=data,
                                      threads=threads)
            if kind != "a":
                kw["cfg"] = variants.get(kind, cfg)
            m = measure("a" if kind == "a" else "b", **kw)
            runs[kind].append(m)
            log(f"  round {r + 1}/{rounds} ({kind}): {m['images_per_s']:,.0f} images/s")
        peaks.append(measure("peak", device=str(device), dtypes=dtypes, threads=threads))
        log(f"  round {r + 1}/{rounds} matmul peak: " + ", ".join(
            f"{d} {f / 1e9:,.0f} GFLOP/s" for d, f in peaks[-1]["flops_per_s"].items()))
    peak = {d: max(p["flops_per_s"][d] for p in peaks) for d in dtypes}
    flops = train_flops_per_image(data.spec())

    def summary(kind: str) -> dict:
        ms = runs[kind]
        ips = statistics.median(x["images_per_s"] for x in ms)
        return {"images_per_s": ips,
                "s_per_epoch": statistics.median(x["s_per_epoch"] for x in ms),
                "peak_host_mib": max(x["peak_host_mib"] for x in ms),
                "peak_device_mib": ms[0]["peak_device_mib"],
                "precision": precision[kind],
                "flops_per_s": ips * flops, "share_of_peak": ips * flops / peak[precision[kind]]}

    def ratios(kind: str, base: str) -> list[float]:
        """Per round, so each ratio compares neighbours in time."""
        return [x["images_per_s"] / y["images_per_s"] for x, y in zip(runs[kind], runs[base])]

    return {
        "images_per_measurement": images, "rounds": rounds, "order": "a, b alternating",
        "conventional": summary("a"), "nas": summary("b"),
        "ratio_b_over_a": statistics.median(ratios("b", "a")), "ratios": ratios("b", "a"),
        "runs": runs,
        "variants": {v: {**{k: summary(v)[k] for k in ("images_per_s", "precision",
                                                        "flops_per_s", "share_of_peak")},
                         "ratio_over_b": statistics.median(ratios(v, "b")),
                         "ratios": ratios(v, "b"),
                         "settings": {k: val for k, val in variants[v].to_dict().items()
                                      if val != cfg.to_dict()[k]}}
                     for v in variants},
        "flops": {"train_per_image": flops, "forward_per_image": flops // 3,
                  "counted": "conv and linear multiply-adds x2, forward; backward = 2x forward"},
        "matmul_peak": {"n": peaks[0]["n"], "flops_per_s": peak, "rounds": peaks},
    }


def one_candidate(device: torch.device, data: Data, cfg: TrainConfig) -> dict:
    loaded = data.load()
    tr, val = loaded.search_splits(_n_val(data))
    t0 = time.perf_counter()
    result = train(data.spec(), tr, val, cfg, device, dataset=loaded.dataset)
    _sync(device)
    return {"epochs": cfg.epochs, "seconds": time.perf_counter() - t0,
            "val_acc_final": result.final_accuracy,
            "epoch_seconds_median": statistics.median(result.epoch_seconds)}


def search_rate(workers: Sequence[int], trials: int, epochs: int, device: str, data: Data,
                log: Any, train_cfg: TrainConfig | None = None) -> list[dict]:
    """One real search per worker count, each from nothing: its own directory, database,
    study and settings, and its figures read from its own study only. The search stage only
    (no finalists): the figure is candidates per hour; the finalists' retraining is a fixed
    cost after it. ``epochs`` is the full schedule; with the default proxy each candidate
    trains the search stage's own, shorter one, which every row states
    (``candidate_epochs`` on ``candidate_images``, as :func:`nas.study.budget.plan_stages`
    plans it)."""
    from nas.study.budget import plan_stages
    from nas.study.config import SearchConfig
    from nas.study.runner import search

    base = replace(train_cfg or TrainConfig(), epochs=epochs)
    n_val = _n_val(data)
    n_train = len(data.load().train) - n_val
    out = []
    for w in workers:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = SearchConfig(storage=f"sqlite:///{tmp}/bench.db", study_name=f"bench-{w}",
                               trials=trials, workers=w, device=device, dataset=data.arg,
                               data_dir=data.data_dir,
                               val_size=n_val, full_schedule=base, finalists=0)
            stage = plan_stages(cfg, trials, 0, n_train)[0]
            if w == workers[0]:
                log(f"  each candidate: {stage.epochs} epoch(s) on {stage.train_images:,} "
                    f"images (the default proxy of a {epochs}-epoch schedule)")
            t0 = time.perf_counter()
            study = search(cfg, progress=False)
            secs = time.perf_counter() - t0
            done = study.get_trials(deepcopy=False)
            n_trained = sum(record.was_trained(t) for t in done)
            out.append({"workers": w, "trials": n_trained, "seconds": secs,
                        "candidates_per_hour": n_trained / secs * 3600,
                        "candidate_epochs": stage.epochs,
                        "candidate_images": stage.train_images,
                        "epochs_trained": sum(len(record.curve_of(t)) for t in done),
                        "rejected": record.count_outcome(done, record.REJECTED)})
        log(f"  {w} worker(s): {n_trained} trained in {secs:.0f} s "
            f"({n_trained / secs * 3600:,.0f} candidates/hour)")
    return out


# -- report -----------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    t = res["throughput"]
    a, b = t["conventional"], t["nas"]

    def mem(x: dict) -> str:
        dev = f", device {x['peak_device_mib']:.0f} MiB" if x["peak_device_mib"] else ""
        return f"host {x['peak_host_mib']:.0f} MiB{dev}"

    def gflops(x: dict) -> str:
        return f"{x['flops_per_s'] / 1e9:,.1f} | {x['share_of_peak']:.1%} of {x['precision']}"

    fl, pk = t["flops"], t["matmul_peak"]
    peaks = ", ".join(f"{d} {f / 1e9:,.0f} GFLOP/s" for d, f in pk["flops_per_s"].items())
    lines = [f"## {res['device']} — {res['date']}", "",
             f"`{res['command']}` (torch {res['versions']['torch']}, {t['rounds']} rounds of "
             f"{t['images_per_measurement']:,} images, a/b alternating; medians)", "",
             _host_line(res.get("host", {})), "", *_data_line(res.get("data")),
             "| pipeline | precision | images/s | s/epoch (60k) | GFLOP/s | share of peak "
             "| peak memory |", "|---|---|---:|---:|---:|---:|---|",
             f"| (a) conventional: torchvision + DataLoader | fp32 | {a['images_per_s']:,.0f} | "
             f"{a['s_per_epoch']:.1f} | {gflops(a)} | {mem(a)} |",
             f"| (b) nas trainer, defaults | {b['precision']} | {b['images_per_s']:,.0f} | "
             f"{b['s_per_epoch']:.1f} | {gflops(b)} | {mem(b)} |",
             f"| **ratio b/a** | | **{t['ratio_b_over_a']:.2f}×** | | | | |", "",
             "Per round (neighbours in time): b/a " + _ratios(t["ratios"]) + "".join(
                 f"; {name} over (b) " + _ratios(v.get("ratios", []))
                 for name, v in t.get("variants", {}).items()) + ".", "",
             f"FLOP/s: {fl['train_per_image'] / 1e6:.1f} MFLOP per training image "
             f"({fl['counted']}) × images/s; peak: best {pk['n']}×{pk['n']} matmul of "
             f"{t['rounds']} round(s), {peaks}.", ""]
    if t.get("variants"):
        lines += ["Variants of (b), interleaved with it:", "",
                  "| variant | precision | images/s | ratio over (b) | GFLOP/s | share of peak |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {v['precision']} | {v['images_per_s']:,.0f} | "
                  f"{v['ratio_over_b']:.2f}× | {gflops(v)} |"
                  for name, v in t["variants"].items()]
        lines.append("")
    c = res.get("candidate")
    if c:
        lines += [f"One candidate (reference network, {c['epochs']} epochs on 50k, evaluation "
                  f"included): **{c['seconds']:.1f} s**, final val acc {c['val_acc_final']:.2%}.",
                  ""]
    s = res.get("search")
    if s:
        lines += [f"Search throughput (`nas.search` search stage, default sampler, pruner and "
                  f"proxy: each candidate {_what_a_candidate_trains(s[0])} of a "
                  f"{res['settings']['search_epochs']}-epoch schedule; no finalists; fresh "
                  f"study each):", "",
                  "| workers | trained | seconds | candidates/hour | epochs trained |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['workers']} | {r['trials']} | {r['seconds']:.0f} | "
                  f"{r['candidates_per_hour']:,.0f} | {r['epochs_trained']} |" for r in s]
    return "\n".join(lines) + "\n"


def _what_a_candidate_trains(row: dict[str, Any]) -> str:
    """``"4 epochs on 10,000 images"``; results written before the rows said it, ``"the
    proxy"``."""
    if "candidate_epochs" not in row:
        return "the proxy"
    e = row["candidate_epochs"]
    return f"{e} epoch{'s' if e != 1 else ''} on {row['candidate_images']:,} images"


def _ratios(xs: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}×" for x in xs)


def _data_line(d: dict[str, Any] | None) -> list[str]:
    """The data both pipelines read, as a paragraph (none for results written before
    ``--dataset``: MNIST)."""
    if not d:
        return []
    return [f"Data: {d['name']} ({'x'.join(map(str, d['shape']))}, {d['classes']} classes, "
            f"{d['train_images']:,} training images); the reference network's layers on it: "
            f"{d['reference_params']:,} parameters.", ""]


def _host_line(h: dict[str, Any]) -> str:
    return (f"Host: {h.get('cpu_model', '?')}, {h.get('cpus', '?')} CPUs, CPU flags "
            f"{', '.join(h.get('cpu_flags', [])) or 'none of note'}; CUDA: "
            f"{h.get('cuda') or 'none'}.")


def main(argv: Sequence[str] | None = None) -> int:
    from nas.study.config import SearchConfig

    cuda = torch.cuda.is_available()
    proxy = SearchConfig()  # the search stage's default proxy, which the search runs train
    p = Parser(prog="python -m nas.bench", description=describe(__doc__))
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help=DEVICE_HELP)
    p.add_argument("--dataset", default="mnist", help=DATASET_HELP)
    p.add_argument("--data-dir", default=None, help=NAMED_DATA_DIR_HELP)
    p.add_argument("--rounds", type=positive_int, default=3, help="a/b pairs (default 3)")
    p.add_argument("--images", type=positive_int, default=60_000,
                   help="images per measurement (default: one 60,000-image epoch)")
    p.add_argument("--candidate-epochs", type=nonneg_int, default=None,
                   help="schedule of the one-candidate timing (default: the search default; "
                        "0 skips it)")
    p.add_argument("--workers", default="1,2,4,8" if cuda else "1,2",
                   help="worker counts for the search throughput, comma-separated ('' skips "
                        "it) (default %(default)s: 1,2,4,8 on CUDA, 1,2 on CPU)")
    p.add_argument("--search-trials", type=positive_int, default=16 if cuda else 4,
                   help="trained trials per search-throughput run (default %(default)s: 16 on "
                        "CUDA, 4 on CPU)")
    p.add_argument("--search-epochs", type=positive_int, default=None,
                   help=f"full schedule (--epochs) of the search runs; their candidates "
                        f"train the default proxy, min({proxy.proxy_epochs}, this) epochs on at "
                        f"most {proxy.proxy_subset:,} images (default: 20 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=positive_int, default=torch.get_num_threads(),
                   help="CPU threads of each measured process (default %(default)s: torch's "
                        "default on this machine)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="precision of the nas trainer (b) and the search runs (default "
                        "%(default)s: bf16 on CUDA >= 8.0 and CPUs with bf16 units, fp16 with a "
                        "gradient scaler on CUDA 7.x, else fp32)")
    p.add_argument("--gpu-check", action="store_true",
                   help="instead of the benchmark, the GPU acceptance check: a 2-worker search, "
                        "a replay, an export and one throughput round, failing on any error "
                        "(needs CUDA unless --device cpu is given)")
    p.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="also time the nas trainer with these settings changed, e.g. "
                        "channels_last=false or batch_size=512,lr=0.4 (repeatable)")
    p.add_argument("--out", type=Path, default=Path("bench") / "results",
                   help="folder for the JSON and Markdown results (default %(default)s)")
    a = p.parse_args(argv)
    # The one-candidate timing runs in this process: with --threads too, like every measured
    # process (and the device line then says so).
    use_threads(a.threads)
    device = resolve_device(a.device)
    arg, data_dir = resolve_dataset(a.dataset, a.data_dir)
    # absolute: the acceptance check runs the command lines from a scratch folder
    data = Data(arg, str(Path(data_dir).resolve()) if data_dir is not None else None)
    loaded = data.load()  # bad data: one line, before anything is measured
    cfg = TrainConfig(precision=a.precision, hflip=loaded.dataset.hflip)
    if a.gpu_check:
        if device.type != "cuda" and a.device != "cpu":
            raise UserError("--gpu-check needs a CUDA device and this machine has none "
                            "(--device cpu runs the same check on the CPU)")
        return gpu_check(device, data, cfg, a.images, a.threads, a.out)
    cand_epochs = cfg.epochs if a.candidate_epochs is None else a.candidate_epochs
    search_epochs = a.search_epochs or (cfg.epochs if device.type == "cuda" else 1)
    workers = [int(w) for w in a.workers.split(",") if w.strip()]
    variants = {v: parse_variant(cfg, v) for v in a.variant}
    res: dict[str, Any] = {
        "device": device_name(device), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python -m nas.bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "versions": _versions(), "host": _host(),
        "data": {"name": loaded.dataset.name, "shape": list(loaded.dataset.shape),
                 "classes": len(loaded.dataset.classes), "train_images": len(loaded.train),
                 "source": loaded.source, "reference_params": plan(data.spec()).params},
        "precision": {"requested": a.precision, "resolved": precision_for(device, a.precision)},
        "settings": {"rounds": a.rounds, "images": a.images, "candidate_epochs": cand_epochs,
                     "workers": workers, "search_trials": a.search_trials,
                     "search_epochs": search_epochs, "threads": a.threads,
                     "train_config": cfg.to_dict()}}

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"throughput on {res['device']}: (a) conventional vs (b) nas, {a.images:,} images each")
    res["throughput"] = throughput(a.rounds, a.images, device, data, a.threads, cfg, log,
                                   variants)
    log(f"  ratio b/a = {res['throughput']['ratio_b_over_a']:.2f}")
    if cand_epochs > 0:
        log(f"one candidate, {cand_epochs} epochs")
        res["candidate"] = one_candidate(device, data, replace(cfg, epochs=cand_epochs))
        log(f"  {res['candidate']['seconds']:.1f} s")
    if workers:
        log(f"search throughput, {a.search_trials} trained candidates per run")
        res["search"] = search_rate(workers, a.search_trials, search_epochs, str(device),
                                    data, log, cfg)
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
    try:
        return replace(cfg, **changes)
    except ValueError as e:  # a value TrainConfig refuses, e.g. an unknown precision
        raise UserError(f"--variant {text!r}: {e}") from None


# -- the GPU acceptance check -------------------------------------------------------------------
class CheckFailed(Exception):
    """A step of the acceptance check failed; the message names it."""


def _cli(step: str, argv: list[str], cwd: Path, log: Any) -> str:
    """Run ``python -m <argv>`` as a user would; its stdout, or CheckFailed with its stderr."""
    log(f"  {step}: python -m {shlex.join(argv)}")
    p = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise CheckFailed(f"{step} failed (exit {p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def acceptance(device: torch.device, data: Data, cfg: TrainConfig, images: int,
               threads: int, log: Any, workdir: Path) -> dict:
    """The product path on ``device``, end to end, through the real command lines: a search of
    2 trained candidates with 2 workers (1 epoch, then 1 finalist on 1 seed), a replay of its
    best trial (1 seed, 1 epoch), an export of it (ONNX included), then one round of the
    throughput comparison. Checks what each step recorded (trained count, outcomes, the
    precision each trial resolved), and raises :class:`CheckFailed` (or the step's own error)
    at the first failure; it skips nothing. Device-independent: on CPU it is the same
    routine, which is how the tests run it without a GPU."""
    expected = precision_for(device, cfg.precision)
    url, name = f"sqlite:///{workdir / 'check.db'}", "gpu-check"
    common = ["--device", device.type, *data.cli_args()]
    # One finalist on one seed: the finalist stage runs too, at the least cost.
    _cli("search", ["nas.search", "--trials", "2", "--workers", "2", "--epochs", "1",
                    "--finalists", "1", "--finalist-seeds", "1",
                    "--storage", url, "--study-name", name, "--val-size", str(_n_val(data)),
                    "--precision", cfg.precision, "--no-progress", *common], workdir, log)
    import optuna

    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if record.was_trained(t)]
    _expect(len(trained) == 2, f"search: {len(trained)} trained trials, expected 2")
    for t in trained:
        _expect(record.outcome_of(t) == record.COMPLETE,
                f"search: trial {t.number} {record.outcome_of(t)}: {record.reason_of(t)}")
        _expect(record.precision_of(t) == expected,
                f"search: trial {t.number} trained in {record.precision_of(t)}, "
                f"expected {expected}")
    out = _cli("replay", ["nas.replay", "--storage", url, "--study-name", name, "--seeds", "1",
                          "--epochs", "1", "--out", "replay", "--no-progress", *common],
               workdir, log)
    report = json.loads((workdir / "replay" / "report.json").read_text())
    _expect(len(report["test_acc_final"]) == 1 and 0 <= report["test_acc_final"][0] <= 1,
            f"replay: no test accuracy in its report ({out.strip()})")
    _expect(report.get("precision") == expected,
            f"replay: trained in {report.get('precision')}, expected {expected}")
    files = _cli("export", ["nas.export", "--storage", url, "--study-name", name,
                            "--out", "export"], workdir, log).split()
    _expect(any(f.endswith("model.onnx") for f in files) and
            (workdir / "export" / "model.onnx").is_file(), f"export: no model.onnx in {files}")
    log("  throughput, one round")
    t = throughput(1, images, device, data, threads, cfg, log)
    _expect(math.isfinite(t["ratio_b_over_a"]) and t["ratio_b_over_a"] > 0,
            f"throughput: ratio b/a is {t['ratio_b_over_a']}")
    return {"device": device_name(device), "precision": expected, "trained": len(trained),
            "replay_test_acc": report["test_acc_final"][0], "export": files,
            "throughput": {k: t[k] for k in ("ratio_b_over_a", "conventional", "nas",
                                             "matmul_peak")}}


def gpu_check(device: torch.device, data: Data, cfg: TrainConfig, images: int,
              threads: int, out: Path) -> int:
    """``--gpu-check``: :func:`acceptance` in a scratch directory; writes its result as
    ``<out>/check-<device>-<time>.json`` and prints PASS, or raises (exit status 1)."""
    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"GPU acceptance check on {device_name(device)} ({cfg.precision} precision)")
    with tempfile.TemporaryDirectory() as tmp:
        res = acceptance(device, data, cfg, images, threads, log, Path(tmp))
    res.update(date=time.strftime("%Y-%m-%d %H:%M %Z"), versions=_versions(), host=_host())
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"check-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2, default=str))
    log(f"PASS: search (2 workers), replay, export, throughput ratio b/a "
        f"{res['throughput']['ratio_b_over_a']:.2f} on {res['device']}, {res['precision']}; "
        f"written: {path}")
    return 0


def _host() -> dict[str, Any]:
    """The machine: CPU count and model, the flags that decide CPU precision, the platform."""
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
            "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                               "avx512_fp16"}),
            "cuda": (f"{torch.cuda.get_device_name()}, compute capability "
                     f"{'.'.join(map(str, torch.cuda.get_device_capability()))}"
                     if torch.cuda.is_available() else None)}


def _versions() -> dict[str, str]:
    import torchvision

    return {**checkpoint.versions(), "torchvision": str(torchvision.__version__)}


def cli() -> None:
    run(main, "python -m nas.bench")


if __name__ == "__main__":
    cli()
