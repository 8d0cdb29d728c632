"""Several seeds of one architecture trained as one network (seed batching).

S copies of ``build(spec)`` side by side: every convolution becomes one grouped convolution
(``groups=S``, copy ``s`` owns channels ``s*C .. (s+1)*C``), every BatchNorm one BatchNorm over
all S*C channels (statistics are per channel, so per copy), ReLU, dropout and pooling act
element by element as they are, and the classifier is a batched matrix product. Nothing is
shared between copies: no weight, no statistic, no gradient (the loss is the sum of the
copies' own losses, and SGD, momentum and weight decay act element by element). What differs
from S separate runs is only how many kernels are launched, which is why it can be faster
for tiny networks: ``python -m nas.bench`` measures it against separate runs.

Each copy ``s`` is initialised exactly as a separate run with seed ``seeds[s]`` is
(``torch.manual_seed(seed)`` then ``build(spec)``), draws its own batch order and augmentation
from its own generator seeded the same way, and is evaluated on its own. Dropout masks come
from one stream for all copies (each element its own draw), so with dropout the copies are
separate runs in distribution, not draw for draw.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.build import build, make_layer
from nas.arch.plan import Layer, plan
from nas.arch.spec import ArchSpec
from nas.training.augment import normalize, random_affine
from nas.training.data import Split
from nas.training.trainer import (EpochReport, TrainConfig, TrainingDiverged, TrainResult,
                                  WeightAverage, _as_images, _training_view, autocast,
                                  make_optimizer, optimizer_step, precision_for, seed_everything,
                                  steps_per_epoch)


class GroupedFlatten(nn.Module):
    """(N, S*C, H, W) -> (N, S, C*H*W): each copy's map flattened as ``nn.Flatten`` would."""

    def __init__(self, copies: int) -> None:
        super().__init__()
        self.copies = copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.copies, -1)


class GroupedLinear(nn.Module):
    """(N, S, F) -> (N, S, K): copy ``s`` applies its own ``nn.Linear(F, K)``."""

    def __init__(self, copies: int, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(copies, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(copies, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("nsf,skf->nsk", x, self.weight)
        return y if self.bias is None else y + self.bias


def _grouped_layer(layer: Layer, copies: int) -> nn.Module:
    a = dict(layer.args)
    if layer.kind == "conv":
        return nn.Conv2d(copies * a["in_channels"], copies * a["out_channels"],
                         a["kernel_size"], padding=a["padding"], bias=a["bias"], groups=copies)
    if layer.kind == "bn":
        return nn.BatchNorm2d(copies * a["num_features"])
    if layer.kind == "flatten":
        return GroupedFlatten(copies)
    if layer.kind == "linear":
        return GroupedLinear(copies, a["in_features"], a["out_features"], a["bias"])
    return make_layer(layer)  # element-wise or pooling: the same module serves every copy


def build_grouped(spec: ArchSpec, copies: int) -> nn.Sequential:
    """``copies`` copies of ``build(spec)`` as one network: input (N, S*C, H, W), copy ``s``
    reading channels ``s*C .. (s+1)*C``; output (N, S, classes). Module names are those of
    :func:`nas.arch.build.build`, so :func:`pack` and :func:`unpack` map weights by name."""
    return nn.Sequential(OrderedDict((layer.name, _grouped_layer(layer, copies))
                                     for layer in plan(spec).layers))


def _is_stacked(module: nn.Module) -> bool:
    return isinstance(module, GroupedLinear)


def pack(grouped: nn.Sequential, models: Sequence[nn.Module]) -> None:
    """Copy the weights and statistics of ``models`` (each ``build(spec)``) into ``grouped``:
    concatenated along the channel dimension, stacked for the classifier."""
    with torch.no_grad():
        for name, module in grouped.named_children():
            parts = [dict(m.named_children())[name].state_dict() for m in models]
            for key, t in module.state_dict().items():
                src = [p[key] for p in parts]
                if key == "num_batches_tracked":
                    t.copy_(src[0])
                elif _is_stacked(module):
                    t.copy_(torch.stack(src))
                else:
                    t.copy_(torch.cat(src))


def unpack(grouped: nn.Sequential, spec: ArchSpec, copies: int) -> list[nn.Sequential]:
    """The ``copies`` separate networks (``build(spec)``) inside ``grouped``."""
    models = [build(spec) for _ in range(copies)]
    with torch.no_grad():
        for name, module in grouped.named_children():
            for key, t in module.state_dict().items():
                if key == "num_batches_tracked":  # one counter, the same for every copy
                    pieces = [t] * copies
                elif _is_stacked(module):
                    pieces = list(t.unbind(0))
                else:
                    pieces = list(t.chunk(copies))
                for m, piece in zip(models, pieces):
                    dict(m.named_children())[name].state_dict()[key].copy_(piece)
    return [m.to(next(grouped.parameters()).device) for m in models]


def _stack_inputs(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """S batches (N, C, H, W) -> one (N, S*C, H, W), copy ``s`` in channels ``s*C ..``."""
    return torch.cat(list(xs), dim=1)


@torch.inference_mode()
def evaluate_copies(grouped: nn.Module, x: torch.Tensor, y: torch.Tensor, copies: int,
                    cfg: TrainConfig, precision: str) -> torch.Tensor:
    """Per copy, which images of uint8 ``x`` it classifies correctly: bool (S, N)."""
    grouped.eval()
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    out = []
    with autocast(x.device, precision):
        for i in range(0, len(y), cfg.eval_batch_size):
            xb = normalize(x[i:i + cfg.eval_batch_size])
            xb = xb.repeat(1, copies, 1, 1).contiguous(memory_format=mf)
            pred = grouped(xb).argmax(2)  # (n, S)
            out.append(pred == y[i:i + cfg.eval_batch_size, None])
    return torch.cat(out).T if out else torch.zeros(copies, 0, dtype=torch.bool)


def train_seeds(spec: ArchSpec, train_split: Split, eval_split: Split, cfg: TrainConfig,
                seeds: Sequence[int], device: torch.device | str = "cpu",
                callback: Callable[[int, EpochReport], None] | None = None
                ) -> list[TrainResult]:
    """Train ``build(spec)`` once per seed of ``seeds`` (``cfg.seed`` is ignored), all at once
    as one grouped network; returns one :class:`~nas.training.trainer.TrainResult` per seed,
    in order, as :func:`nas.training.trainer.train` would (its ``model`` a separate
    ``build(spec)``). ``callback`` gets ``(copy index, report)`` after every epoch for every
    copy. Raises :class:`~nas.training.trainer.TrainingDiverged` when any copy's loss is not
    finite."""
    t_start = time.perf_counter()
    device = torch.device(device)
    copies = len(seeds)
    if copies < 1:
        raise ValueError("train_seeds needs at least one seed")
    seed_everything(seeds[0], cfg.deterministic)
    models = []
    for s in seeds:  # each copy initialised as its own run would be
        torch.manual_seed(s)
        models.append(build(spec))
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    x_tr, y_tr = _as_images(train_split, device)
    x_ev, y_ev = _as_images(eval_split, device)
    n = len(y_tr)
    bs = min(cfg.batch_size, n)
    steps = steps_per_epoch(n, cfg.batch_size)  # the same steps as train's
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    precision = precision_for(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    grouped = build_grouped(spec, copies)
    pack(grouped, models)
    grouped = grouped.to(device=device, memory_format=mf)
    view = _training_view(grouped, device, cfg)
    step_model: nn.Module = torch.compile(view) if cfg.compile else view
    opt, sched = make_optimizer(grouped, cfg, cfg.epochs * steps)
    average = WeightAverage(grouped, cfg.ema) if cfg.ema > 0 else None
    evaluated = average.model if average is not None else grouped

    results = [TrainResult(precision=precision) for _ in seeds]
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        view.train()
        perms = [torch.randperm(n, device=device, generator=g) for g in gens]
        loss_sum = torch.zeros(copies, device=device)
        for s in range(steps):
            idx = [p[s * bs:(s + 1) * bs] for p in perms]
            xs = []
            for i, g in zip(idx, gens):
                xb = normalize(x_tr[i])
                if cfg.augment:
                    xb = random_affine(xb, cfg.rotate_deg, cfg.translate, cfg.scale, g)
                xs.append(xb)
            xb = _stack_inputs(xs).contiguous(memory_format=mf)
            yb = torch.stack([y_tr[i] for i in idx], 1)  # (bs, S)
            with autocast(device, precision):
                logits = step_model(xb)  # (bs, S, K)
                per_copy = F.cross_entropy(logits.permute(0, 2, 1), yb, reduction="none",
                                           label_smoothing=cfg.label_smoothing).mean(0)
                loss = per_copy.sum()  # each copy's gradient is its own loss's
            optimizer_step(loss, opt, sched, scaler, average)
            loss_sum += per_copy.detach().float()
        losses = (loss_sum / max(steps, 1)).tolist()
        if not all(math.isfinite(v) for v in losses):
            raise TrainingDiverged(f"training loss is {losses} at epoch {epoch}")
        correct = evaluate_copies(evaluated, x_ev, y_ev, copies, cfg, precision).cpu()
        secs = time.perf_counter() - t0
        for c, r in enumerate(results):
            acc = correct[c].sum().item() / max(len(y_ev), 1)
            r.accuracies.append(acc)
            r.train_losses.append(losses[c])
            r.epoch_seconds.append(secs)  # the copies share the wall time
            r.correct = correct[c]
            if callback is not None:
                callback(c, EpochReport(epoch, acc, losses[c], secs))
    for r, m in zip(results, unpack(evaluated, spec, copies)):
        r.model = m.to(memory_format=mf)
        r.seconds = time.perf_counter() - t_start
    return results
