"""The CPU dropout mask: the trainer's against the one it replaced, on this machine.

    python bench/scripts/dropout_masks.py bench/results/dropout-<cpu>-<date> [THREADS]  # .json + .md

Two measurements, each in fp32 and bf16 (the precisions nas trains in on a CPU), on the
16k reference network (`bn_dropout_16k`: two dropouts, p = 0.1, after 16-channel 28x28 and
14x14 maps, batch 256):

- one dropout layer, forward and backward of a (256, 16, 28, 28) channels_last map, ms;
- training images per second of the trainer's step (augmentation, forward, backward, SGD), the
  dropouts swapped for: the trainer's ``_CpuDropout`` ("now"), the one it replaced ("before":
  32-bit thresholds from one generator, the bool mask cast to the float type), aten's
  ``nn.Dropout`` ("aten"), and a mask drawn once and reused ("no draws": not dropout, the
  bound on what any mask drawing could still give).

Rounds interleave the kinds so drift hits all of them; ratios are per round, then medians.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.build import build
from nas.arch.zoo import bn_dropout_16k
from nas.training.augment import normalize, random_affine
from nas.training.data import load_mnist
from nas.training.dataset import MNIST
from nas.training.host import cpu_flags, cpu_model, use_threads
from nas.training.trainer import (TrainConfig, _as_images, _CpuDropout, autocast,
                                  make_optimizer, optimizer_step, precision_for)

ROUNDS, STEPS, LAYER_REPS = 5, 40, 30


class Before(nn.Module):
    """The trainer's CPU dropout until 2026-12-03: 64-bit words read as two 32-bit draws, one
    generator, the bool mask cast straight to the float type."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel()
        bits = torch.empty((n + 1) // 2, dtype=torch.int64).random_(-2**63, None)
        keep = bits.view(torch.int32)[:n] >= -2**31 + round(self.p * 2**32)
        keep = keep.as_strided(x.shape, x.stride())
        return x * keep.to(x.dtype).div_(1.0 - self.p)


class NoDraws(nn.Module):
    """A mask drawn at the first call and reused: the cost of the product alone."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p, self.mask = p, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None or self.mask.shape != x.shape or self.mask.dtype != x.dtype:
            keep = torch.rand(x.shape) >= self.p
            self.mask = keep.to(x.dtype).div_(1.0 - self.p).contiguous(
                memory_format=torch.channels_last)
        return x * self.mask


KINDS = {"now": _CpuDropout, "before": Before, "aten": nn.Dropout, "no draws": NoDraws}


def layer_ms(kind: type[nn.Module], dtype: torch.dtype) -> float:
    x = torch.randn(256, 16, 28, 28).to(dtype).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    g, drop = torch.randn_like(x), kind(0.1).train()
    for _ in range(3):
        drop(x).backward(g)
    t = time.perf_counter()
    for _ in range(LAYER_REPS):
        drop(x).backward(g)
    return (time.perf_counter() - t) / LAYER_REPS * 1e3


def step_rate(kind: type[nn.Module], precision: str, x: torch.Tensor, y: torch.Tensor) -> float:
    cfg = TrainConfig(epochs=1, precision=precision)
    torch.manual_seed(0)
    model = build(bn_dropout_16k()).to(memory_format=torch.channels_last)
    view = nn.Sequential(OrderedDict((name, kind(m.p) if type(m) is nn.Dropout else m)
                                     for name, m in model.named_children()))
    opt, sched = make_optimizer(model, cfg, 10 * STEPS)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, len(y), (cfg.batch_size,), generator=gen)
        xb = random_affine(normalize(x[idx], MNIST), cfg.rotate_deg, cfg.translate, cfg.scale,
                           gen, MNIST).contiguous(memory_format=torch.channels_last)
        with autocast(torch.device("cpu"), precision):
            loss = F.cross_entropy(view(xb), y[idx])
        optimizer_step(loss, opt, sched, None, None)

    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(STEPS):
        step()
    return STEPS * cfg.batch_size / (time.perf_counter() - t)


def main(out: Path, threads: int) -> None:
    use_threads(threads)
    train, _ = load_mnist().search_splits(10_000, 0)
    x, y = _as_images(train, torch.device("cpu"))
    precisions = ["fp32"] + (["bf16"] if precision_for("cpu", "auto") == "bf16" else [])
    rows = []
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        layer = {k: [] for k in KINDS}
        rate = {k: [] for k in KINDS}
        for _ in range(ROUNDS):
            for k, kind in KINDS.items():
                layer[k].append(layer_ms(kind, dtype))
                rate[k].append(step_rate(kind, precision, x, y))
        for k in KINDS:
            row = {"precision": precision, "kind": k,
                   "layer_ms": statistics.median(layer[k]),
                   "images_per_s": statistics.median(rate[k]),
                   "step_ratio_to_before": statistics.median(
                       b / a for a, b in zip(rate["before"], rate[k])),
                   "rounds": [round(b / a, 3) for a, b in zip(rate["before"], rate[k])]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    flags = cpu_flags()
    host = {"cpu": cpu_model(), "threads": threads, "avx512_bf16": "avx512_bf16" in flags,
            "avx2": "avx2" in flags, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": f"python bench/scripts/dropout_masks.py {out} {threads}"}
    out.with_suffix(".json").write_text(json.dumps({"host": host, "rows": rows}, indent=2) + "\n")
    lines = [f"# CPU dropout masks on {host['cpu']} ({'with' if host['avx512_bf16'] else 'without'}"
             f" avx512_bf16, {threads} thread(s)), {host['date']}", "",
             f"`{host['command']}`: medians of {ROUNDS} interleaved rounds; a layer is one "
             f"(256, 16, 28, 28) map forward and backward; a step is the trainer's on the 16k "
             f"reference network, batch 256, {STEPS} steps.", "",
             "| precision | dropout | layer fwd+bwd, ms | training images/s | over `before` "
             "(per round) |", "|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['kind']} | {r['layer_ms']:.2f} | "
                     f"{r['images_per_s']:,.0f} | **{r['step_ratio_to_before']:.2f}×** "
                     f"({', '.join(f'{v:.2f}' for v in r['rounds'])}) |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2)
