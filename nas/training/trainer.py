"""The trainer, the airbench way: the whole dataset on the device as one uint8 tensor, batches
indexed from an on-device permutation, normalisation and augmentation batched on the device, no
DataLoader and no per-image Python, and no host synchronisation inside an epoch.

It knows nothing of Optuna. After every epoch it calls ``callback(EpochReport)``; a callback that
wants to stop training (a pruner, say) raises, and the exception propagates unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.build import build
from nas.arch.spec import ArchSpec, short_repr
from nas.errors import ConfigError, DeviceError
from nas.training.augment import normalize, random_affine, random_hflip
from nas.training.data import DataError, Split
from nas.training.dataset import MNIST, Dataset
from nas.training.host import cpu_flags

PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # what TrainConfig.precision may ask for
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32: no autocast


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


MAX_EPOCHS = 1000  # far beyond the challenge's 20 (--allow-long): a sane bound, not a policy
MAX_BATCH = 1 << 20
# The range of every numeric field, both ends inclusive unless marked open: (low, high, open
# high end). A config read from a downloaded study is untrusted: epochs = -3 once replayed,
# printed "PASS epochs <= 20" and recorded NaN.
_INT_RANGES = {"epochs": (1, MAX_EPOCHS), "batch_size": (1, MAX_BATCH),
               "eval_batch_size": (1, MAX_BATCH), "seed": (0, 2**63 - 1)}
_FLOAT_RANGES = {"lr": (0.0, math.inf, True), "pct_start": (0.0, 1.0, False),
                 "momentum": (0.0, 1.0, True), "weight_decay": (0.0, 1.0, False),
                 "label_smoothing": (0.0, 1.0, True), "rotate_deg": (0.0, 180.0, False),
                 "translate": (0.0, 1.0, False), "scale": (0.0, 1.0, True),
                 "ema": (0.0, 1.0, True)}
_BOOLS = ("nesterov", "augment", "hflip", "channels_last", "fast_cpu_dropout", "compile",
          "deterministic")


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of one training run. Saved with every result that used it."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.2  # peak of the one-cycle schedule
    pct_start: float = 0.25  # fraction of steps spent warming up
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    # Exponential moving average of the weights (and BatchNorm statistics), decay per step;
    # 0: off. When on, the averaged network is what is evaluated, returned, saved and
    # exported (see WeightAverage).
    ema: float = 0.0
    augment: bool = True
    rotate_deg: float = 8.0
    translate: float = 0.08  # fraction of the image size
    scale: float = 0.08
    # With augment: mirror a random half of each batch left-right. Off by default and for
    # digits; the search turns it on where the data set says mirror images keep their class
    # (Dataset.hflip: Fashion-MNIST).
    hflip: bool = False
    eval_batch_size: int = 4096
    channels_last: bool = True
    # auto | bf16 | fp16 | fp32; "auto" picks by device (see resolve_precision). Replaces the
    # bf16 and bf16_cpu switches of 0.1 configs, whose keys from_dict ignores. On this
    # project's AMD EPYC (avx512_bf16), bf16 autocast gave 1.3x the fp32 training step and
    # 99.59 % test accuracy for the 16k reference network (fp32: 99.60-99.63 %), see results/.
    precision: str = "auto"
    # CPU only: dropout masks drawn 16 random bits an element, 64 a generator call, instead of
    # by aten's bernoulli_ (see _CpuDropout); the random stream differs, the math does not.
    fast_cpu_dropout: bool = True
    compile: bool = False
    seed: int = 0
    deterministic: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` (one line naming the field) unless every field has its
        type and range; return self. Types are strict: ``True`` is not an epoch count,
        ``"abc"`` not a number, ``1`` not a boolean; ints are fine where floats are asked."""
        for name, (low, high) in _INT_RANGES.items():
            v = getattr(self, name)
            if type(v) is not int or not low <= v <= high:
                raise ConfigError(f"{name} must be an integer from {low:,} to {high:,}, "
                                  f"got {short_repr(v)}")
        for name, (lo, hi, open_high) in _FLOAT_RANGES.items():
            v = getattr(self, name)
            ok = type(v) in (int, float) and math.isfinite(v) and lo <= v and (
                v < hi if open_high else v <= hi)
            if name == "lr" and ok:
                ok = v > 0  # any finite rate above 0: a huge one diverges, which is caught
            if not ok:
                where = "finite and above 0" if name == "lr" else \
                    f"from {lo:g} to {hi:g}{' (excluded)' if open_high else ''}"
                raise ConfigError(f"{name} must be a number {where}, got {short_repr(v)}")
        for name in _BOOLS:
            if type(getattr(self, name)) is not bool:
                raise ConfigError(f"{name} must be true or false, got "
                                  f"{short_repr(getattr(self, name))}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {short_repr(self.precision)}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs a momentum above 0")
        return self

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TrainConfig:
        """The config of ``d`` (unknown keys, such as 0.1's bf16 switches, are ignored;
        missing ones take their defaults). Raises :class:`ConfigError` for a field of the
        wrong type or range, or for ``d`` not a mapping."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(d).__name__}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)  # type: ignore[arg-type]


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    accuracy: float  # on the evaluation split, in [0, 1]
    train_loss: float
    seconds: float  # wall time of this epoch's training and evaluation


@dataclass
class TrainResult:
    accuracies: list[float] = field(default_factory=list)  # per epoch, evaluation split
    train_losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0  # total wall time, building and data transfer included
    model: nn.Module | None = None
    precision: str = ""  # what the run trained in: bf16, fp16 or fp32 (resolved, never auto)
    correct: torch.Tensor | None = None  # the last evaluation, per image (bool, on the CPU)

    @property
    def final_accuracy(self) -> float:
        return self.accuracies[-1] if self.accuracies else float("nan")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for ``cuda`` without it is a DeviceError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was requested but CUDA is not available on this machine")
    if name.split(":")[0] not in ("cuda", "cpu"):
        raise DeviceError(f"unknown device {name!r} (use auto, cuda or cpu)")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def one_cycle(step: int, total: int, pct_start: float) -> float:
    """Learning-rate multiplier: linear warm-up from 1/25 to 1 over ``pct_start`` of the steps,
    then linear decay to 0. Defined for any ``total`` >= 1 (torch's OneCycleLR is not for tiny
    schedules, which the tests and the smallest searches use)."""
    warm = max(1, round(pct_start * total))
    if step < warm:
        return 0.04 + 0.96 * step / warm
    return max(0.0, (total - step) / max(1, total - warm))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps of one epoch over ``n`` images in batches of ``batch_size``, as
    :func:`train` takes them: full batches only, the ragged last batch dropped (every step has
    the same shape), and a batch larger than the split is the whole split (one step).
    Raises ValueError unless both are at least 1."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"an epoch needs at least one image and a batch of at least one, "
                         f"got {n} images in batches of {batch_size}")
    return n // min(batch_size, n)


def images_per_epoch(n: int, batch_size: int) -> int:
    """Images one epoch of :func:`train` actually trains on, out of ``n``: the full batches
    of :func:`steps_per_epoch` (so ``n`` rounded down to a multiple of the batch, or ``n``
    itself when the batch is larger). What figures of images trained must count."""
    return steps_per_epoch(n, batch_size) * min(batch_size, n)


def check_data(spec: ArchSpec, split: Split, what: str) -> None:
    """Raise :class:`~nas.errors.DataError` unless ``split`` is what ``spec`` takes: at least
    one image, each ``in_channels`` x ``input_size`` x ``input_size`` (N x H x W is one channel),
    labels from 0 to ``num_classes - 1``. A network with a global-average-pool head runs on any
    image size, so without this 32x32 images trained an in1x28 spec and were recorded as
    complete; labels past the classes crashed inside the loss."""
    x, y = split.x, split.y
    shape = (1, *x.shape[1:]) if x.ndim == 3 else tuple(x.shape[1:])
    want = (spec.in_channels, spec.input_size, spec.input_size)
    if x.ndim not in (3, 4) or tuple(shape) != want:
        got = "x".join(map(str, shape)) if x.ndim in (3, 4) else f"shape {tuple(x.shape)}"
        raise DataError(f"the {what} images are {got} (channels x height x width), the spec "
                        f"takes {'x'.join(map(str, want))}")
    if len(y) == 0 or len(y) != len(x):
        raise DataError(f"the {what} split has {len(x):,} images and {len(y):,} labels")
    low, high = int(y.min()), int(y.max())  # one sync per run, before any training
    if low < 0 or high >= spec.num_classes:
        raise DataError(f"the {what} labels run from {low} to {high}, the spec has "
                        f"{spec.num_classes} classes (0 to {spec.num_classes - 1})")


def _as_images(split: Split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = split.x.to(device, non_blocking=True)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return x, split.y.to(device, non_blocking=True)


@torch.inference_mode()
def evaluate_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                     precision: str | None = None, dataset: Dataset = MNIST) -> torch.Tensor:
    """Which of the uint8 images ``x`` (already on the model's device) ``model`` classifies
    correctly, as a bool tensor, in ``precision`` (default: what ``cfg`` resolves to on that
    device), normalised with ``dataset``'s constants. Two models compared on the same images
    are compared pairwise with it."""
    model.eval()
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    precision = precision or precision_for(x.device, cfg.precision)
    out = []
    with autocast(x.device, precision):
        for i in range(0, len(y), cfg.eval_batch_size):
            xb = normalize(x[i:i + cfg.eval_batch_size], dataset).contiguous(memory_format=mf)
            out.append(model(xb).argmax(1) == y[i:i + cfg.eval_batch_size])
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=x.device)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
             precision: str | None = None, dataset: Dataset = MNIST) -> float:
    """Accuracy of ``model`` on uint8 images ``x`` (see :func:`evaluate_correct`)."""
    return evaluate_correct(model, x, y, cfg, precision, dataset).sum().item() / max(len(y), 1)


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics.

    After every optimiser step, ``update()`` moves each floating-point tensor of the average
    towards the live model's by ``1 - d``, where ``d = min(decay, (1 + t) / (10 + t))`` at
    step ``t``: early on the average forgets its random start quickly, later it averages
    over about ``1 / (1 - decay)`` steps. Integer buffers (BatchNorm's batch counter) are
    copied. ``model`` is the averaged network: evaluate, save and export it.
    """

    def __init__(self, live: nn.Module, decay: float) -> None:
        self.decay, self.steps = decay, 0
        self.model = copy.deepcopy(live).requires_grad_(False)
        pairs = list(zip(self.model.state_dict().values(), live.state_dict().values()))
        self._avg = [a for a, _ in pairs if a.is_floating_point()]
        self._live = [b for a, b in pairs if a.is_floating_point()]
        self._ints = [(a, b) for a, b in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        d = min(self.decay, self.steps / (9 + self.steps))
        torch._foreach_lerp_(self._avg, self._live, 1.0 - d)
        for a, b in self._ints:
            a.copy_(b)


# -- precision ---------------------------------------------------------------------------------
def resolve_precision(device_type: str, requested: str = "auto",
                      cuda_capability: tuple[int, int] | None = None,
                      cpu_bf16: bool | None = None) -> str:
    """The precision a training run uses: ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    An explicit ``requested`` precision is returned as it is. ``"auto"`` decides by device:

    - CUDA, compute capability >= 8.0 (A100, RTX 30xx, H100 ...): bf16 autocast.
    - CUDA 7.x (V100, T4, RTX 20xx): fp16 autocast with a gradient scaler. Below 8.0 cuDNN has
      no bf16 convolution engines, so bf16 would be emulated (slow) or fail; note that
      ``torch.cuda.is_bf16_supported()`` answers True on a T4, so it is not the test.
    - CUDA below 7.0: fp32 (no tensor cores to gain from).
    - CPU: what ``nas.bench`` measured best, bf16 autocast where the CPU computes bf16 natively
      (``cpu_bf16``, default :func:`cpu_has_bf16`), fp32 elsewhere (emulated bf16 only slows).
    - anything else: fp32.

    ``cuda_capability`` is ``(major, minor)``; it must be given for ``"auto"`` on CUDA (this
    function asks no device anything, so it is tested without a GPU: see
    :func:`precision_for`). Raises ValueError for an unknown request.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if device_type == "cuda":
        if cuda_capability is None:
            raise ValueError("resolve_precision: auto on CUDA needs the compute capability")
        if cuda_capability >= (8, 0):
            return "bf16"
        return "fp16" if cuda_capability[0] == 7 else "fp32"
    if device_type == "cpu":
        return "bf16" if (cpu_has_bf16() if cpu_bf16 is None else cpu_bf16) else "fp32"
    return "fp32"


def precision_for(device: torch.device | str, requested: str = "auto") -> str:
    """:func:`resolve_precision` for a real device (asks CUDA for its capability)."""
    device = torch.device(device)
    cap = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return resolve_precision(device.type, requested, cap)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a resolved precision; fp32 runs without one."""
    dtype = _AMP_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype)


def use_bf16(device: torch.device, cfg: TrainConfig) -> bool:
    """Whether ``cfg`` trains in bf16 autocast on ``device`` (the pre-``precision`` question,
    kept for its callers)."""
    return precision_for(device, cfg.precision) == "bf16"


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (without it, bf16 autocast only slows down)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


# -- dropout on CPU ----------------------------------------------------------------------------
class _CpuDropout(nn.Module):
    """``nn.Dropout(p)`` in training mode, with its mask drawn faster on CPU.

    aten's dropout draws its mask with ``bernoulli_``, one call of the serial CPU generator per
    element plus a float conversion: measured on this project's 2-core CPU it was ~40 % of a
    training step of the 16k reference network. Here each generator call yields 64 bits, read
    as four uniform 16-bit integers, and an element is dropped when its integer is below
    ``round(p * 2**16)`` (shifted to int16's range): P(drop) is p within 2**-17, a few
    millionths (32-bit draws, until 2026-12-03, took twice the generator's time, which was
    then the largest part of the mask's cost: ``bench/scripts/dropout_masks.py``). Kept
    elements are scaled by 1 / (1 - p), computed as torch does (in the input's dtype), so the
    output and the gradient (the same mask) are ``nn.Dropout``'s in distribution; only the
    random stream differs. Draws come from the default generator, so a seed still fixes them.
    Training only: evaluation uses the real modules.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None)
        keep = words.view(torch.int16)[:n] >= -2**15 + round(self.p * 2**16)
        # Lay the mask out like x (channels_last or not) so the product runs at full speed;
        # an i.i.d. mask does not care which element got which draw.
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        keep = keep.as_strided(x.shape, x.stride()) if dense else keep.view(x.shape)
        # Cast as uint8, whose conversion is vectorised; bool's took 1.5 ms where uint8's took
        # 0.2 (3.2M elements to bf16, 2 threads).
        return x * keep.view(torch.uint8).to(x.dtype).div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _training_view(model: nn.Module, device: torch.device, cfg: TrainConfig) -> nn.Module:
    """The module the training steps call: ``model`` itself, or on CPU (with
    ``cfg.fast_cpu_dropout``) a Sequential sharing all of ``model``'s modules except its
    dropouts, which become :class:`_CpuDropout`. ``model`` is left as built (same state dict,
    same modules), so what is evaluated, saved and exported is unchanged."""
    if device.type != "cpu" or not cfg.fast_cpu_dropout or not isinstance(model, nn.Sequential):
        return model
    if not any(type(m) is nn.Dropout for m in model):
        return model
    return nn.Sequential(OrderedDict(
        (name, _CpuDropout(m.p) if type(m) is nn.Dropout else m)
        for name, m in model.named_children()))


def make_optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int
                   ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """Nesterov SGD with weight decay on weights only (not on BatchNorm and biases), and the
    one-cycle schedule over ``total_steps`` (step it once per optimiser step)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BatchNorm and biases
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: one_cycle(t, total_steps, cfg.pct_start))
    return opt, sched


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer,
                   sched: torch.optim.lr_scheduler.LRScheduler,
                   scaler: torch.amp.GradScaler | None,
                   average: WeightAverage | None) -> None:
    """One training step after the forward pass, the same for every trainer: backward, the
    optimiser step (through ``scaler`` under fp16), the schedule's step, the weight average's
    update."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:  # skips a step whose gradients overflowed, and lowers the scale
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    sched.step()
    if average is not None:
        average.update()


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def train(spec: ArchSpec, train_split: Split, eval_split: Split, cfg: TrainConfig,
          device: torch.device | str = "cpu",
          callback: Callable[[EpochReport], None] | None = None,
          dataset: Dataset = MNIST,
          on_step: Callable[[int, int, int], None] | None = None) -> TrainResult:
    """Train ``build(spec)`` on ``train_split``, evaluating on ``eval_split`` after every epoch,
    both normalised with ``dataset``'s mean and std (what the export states: the data set the
    images come from).

    Raises :class:`~nas.training.data.DataError` before training when the data do not fit the spec
    (:func:`check_data`), :class:`TrainingDiverged` when the loss is not finite at an epoch's
    end, and whatever ``callback`` raises. ``on_step(epoch, step, steps)``, for progress
    inside an epoch, is called about 50 times an epoch (it costs no device sync).
    """
    check_data(spec, train_split, "training")
    check_data(spec, eval_split, "evaluation")
    t_start = time.perf_counter()
    device = torch.device(device)
    seed_everything(cfg.seed, cfg.deterministic)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    x_tr, y_tr = _as_images(train_split, device)
    x_ev, y_ev = _as_images(eval_split, device)
    n = len(y_tr)
    bs = min(cfg.batch_size, n)
    steps = steps_per_epoch(n, cfg.batch_size)
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    precision = precision_for(device, cfg.precision)  # once per run, not per step
    # fp16 gradients underflow without loss scaling; bf16 and fp32 have fp32's range.
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    model = build(spec).to(device=device, memory_format=mf)
    view = _training_view(model, device, cfg)
    step_model: nn.Module = torch.compile(view) if cfg.compile else view
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)

    average = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    evaluated = average.model if average is not None else model  # evaluated, returned, saved
    result = TrainResult(model=evaluated, precision=precision)
    every = max(1, steps // 50)  # on_step's pace
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        view.train()  # model's modules, and the view's own dropouts
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            xb = normalize(x_tr[idx], dataset)
            if cfg.augment:
                xb = random_affine(xb, cfg.rotate_deg, cfg.translate, cfg.scale, gen, dataset)
                if cfg.hflip:  # after the warp: without it the random stream is unchanged
                    xb = random_hflip(xb, gen)
            xb = xb.contiguous(memory_format=mf)
            with autocast(device, precision):
                loss = F.cross_entropy(step_model(xb), y_tr[idx],
                                       label_smoothing=cfg.label_smoothing)
            optimizer_step(loss, opt, sched, scaler, average)
            loss_sum += loss.detach()
            if on_step is not None and ((s + 1) % every == 0 or s + 1 == steps):
                on_step(epoch, s + 1, steps)
        train_loss = loss_sum.item() / max(steps, 1)  # the one sync of the epoch
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss is {train_loss} at epoch {epoch}")
        correct = evaluate_correct(evaluated, x_ev, y_ev, cfg, precision, dataset)
        acc = correct.sum().item() / max(len(y_ev), 1)  # the epoch's second and last sync
        result.correct = correct.cpu()
        secs = time.perf_counter() - t0
        result.accuracies.append(acc)
        result.train_losses.append(train_loss)
        result.epoch_seconds.append(secs)
        if callback is not None:
            callback(EpochReport(epoch, acc, train_loss, secs))
    result.seconds = time.perf_counter() - t_start
    return result
