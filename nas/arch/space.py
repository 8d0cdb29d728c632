"""The architecture space: with :mod:`nas.training.space`, the only place that calls
``trial.suggest_*``.

``sample_spec(trial)`` turns an Optuna trial's suggestions into an :class:`~nas.arch.spec.ArchSpec`
(NNI's ``freeze(sample)``): everything downstream (building, counting, training, export, replay)
sees only the spec. Parameter labels are stable across releases: a study keeps its meaning.

The family: a stem conv, 2-4 blocks of 1-3 3x3 convs (one width per block, padding per conv),
after each block an optional 2x2 max-pool and/or 1x1 conv to fewer channels, BatchNorm either
inside every conv unit or after each transition, dropout at the end of every block but the last,
and one of three heads. Both reference networks of :mod:`nas.arch.zoo` are members.

Every function that makes a spec takes the data's :class:`Input` (channels, image size,
classes; default MNIST's 1, 28, 10): the same suggestions make the same network shape on any
data, and the parameter count (first and last layers, a flatten head) is the data's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import optuna
from optuna.trial import FixedTrial

from nas.arch.plan import Plan, plan
from nas.arch.spec import (HEAD_KINDS, ORDERS, ArchSpec, BatchNorm, Block, Conv1x1, Conv3x3,
                           Dropout, Head, MaxPool, SpecError, TransitionOp)

CHANNELS = (8, 10, 12, 16, 20, 24, 28, 32)
TRANSITION_CHANNELS = (0, 8, 10, 12, 16)  # 0: no 1x1 conv
MAX_BLOCKS = 4
MAX_CONVS = 3


@dataclass(frozen=True)
class Input:
    """What a spec takes from its data: image channels, image size (square), classes."""

    channels: int = 1
    size: int = 28
    classes: int = 10

    @classmethod
    def of(cls, spec: ArchSpec) -> Input:
        return cls(spec.in_channels, spec.input_size, spec.num_classes)

    def apply(self, spec: ArchSpec) -> ArchSpec:
        """``spec`` taking this input (the defaults give back an equal spec)."""
        return replace(spec, in_channels=self.channels, input_size=self.size,
                       num_classes=self.classes)


MNIST_INPUT = Input()  # ArchSpec's defaults: what every study before --dataset sampled


class Suggester(Protocol):
    """What ``sample_spec`` needs of an ``optuna.Trial`` (FixedTrial and FrozenTrial fit too)."""

    def suggest_categorical(self, name: str, choices: tuple) -> object: ...  # noqa: E704

    def suggest_int(self, name: str, low: int, high: int) -> int: ...  # noqa: E704

    def suggest_float(self, name: str, low: float, high: float, *,  # noqa: E704
                      step: float | None = None) -> float: ...


def sample_spec(trial: Suggester, io: Input = MNIST_INPUT) -> ArchSpec:
    """One member of the family. May describe an impossible network (a map shrunk below 1x1):
    call ``spec.validate()`` before use."""
    order = str(trial.suggest_categorical("order", ORDERS))
    bn_at = trial.suggest_categorical("bn", ("conv", "transition", "none"))
    bias = bool(trial.suggest_categorical("bias", (True, False)))
    p = round(float(trial.suggest_float("dropout", 0.0, 0.15, step=0.05)), 2)
    dropout_at = trial.suggest_categorical("dropout_at", ("conv", "transition"))
    n_blocks = trial.suggest_int("n_blocks", 2, MAX_BLOCKS)

    def conv(out: int, pad: int, drop: float = 0.0) -> Conv3x3:
        return Conv3x3(out, padding=pad, bn=bn_at == "conv", relu=True, dropout=drop, bias=bias)

    stem = conv(int(trial.suggest_categorical("stem_channels", CHANNELS)), 1)
    blocks = []
    for b in range(1, n_blocks + 1):
        last = b == n_blocks
        n_convs = trial.suggest_int(f"b{b}_convs", 1, MAX_CONVS)
        width = int(trial.suggest_categorical(f"b{b}_channels", CHANNELS))
        pads = [int(trial.suggest_categorical(f"b{b}_c{i}_pad", (1, 0)))
                for i in range(1, n_convs + 1)]
        block_drop = p if (dropout_at == "conv" and not last) else 0.0
        convs = tuple(conv(width, pad, block_drop if i == n_convs - 1 else 0.0)
                      for i, pad in enumerate(pads))
        ops: list[TransitionOp] = []
        if trial.suggest_categorical(f"b{b}_pool", (True, False)):
            ops.append(MaxPool())
        t = int(trial.suggest_categorical(f"b{b}_1x1", TRANSITION_CHANNELS))
        if t:
            ops.append(Conv1x1(t, bn=False, relu=True, bias=True))
        if ops and bn_at == "transition":
            ops.append(BatchNorm())
        if ops and dropout_at == "transition" and not last and p > 0:
            ops.append(Dropout(p))
        blocks.append(Block(convs, tuple(ops)))
    head = Head(str(trial.suggest_categorical("head", HEAD_KINDS)))
    return io.apply(ArchSpec(stem=stem, blocks=tuple(blocks), head=head,
                             order=order))  # type: ignore[arg-type]


def smallest_spec(io: Input = MNIST_INPUT) -> ArchSpec:
    """The member with the fewest parameters: narrowest widths, fewest blocks and convs, no
    biases, no BatchNorm, a global-pool head. No candidate is smaller."""
    c = Conv3x3(min(CHANNELS), padding=1, bn=False, bias=False)
    return io.apply(ArchSpec(stem=c, blocks=tuple(Block((c,)) for _ in range(2)),
                             head=Head("gap_linear")))


def params_of(spec: ArchSpec) -> dict[str, object]:
    """The trial parameters that make ``sample_spec`` return ``spec``, for ``enqueue_trial``.

    Raises ValueError when ``spec`` is not a member of the family.
    """
    def has(ops: tuple[TransitionOp, ...], kind: type) -> bool:
        return any(isinstance(o, kind) for o in ops)

    units = [spec.stem] + [c for b in spec.blocks for c in b.convs]
    bn_at = ("conv" if spec.stem.bn else
             "transition" if any(has(b.transition, BatchNorm) for b in spec.blocks) else "none")
    drops = [c.dropout for c in units if c.dropout] + [
        o.p for b in spec.blocks for o in b.transition if isinstance(o, Dropout)]
    in_transition = any(has(b.transition, Dropout) for b in spec.blocks)
    params: dict[str, object] = {
        "order": spec.order, "bn": bn_at, "bias": spec.stem.bias,
        "dropout": drops[0] if drops else 0.0,
        "dropout_at": "transition" if in_transition else "conv",
        "n_blocks": len(spec.blocks), "stem_channels": spec.stem.out_channels,
        "head": spec.head.kind,
    }
    for b, block in enumerate(spec.blocks, 1):
        params[f"b{b}_convs"] = len(block.convs)
        params[f"b{b}_channels"] = block.convs[0].out_channels
        for i, c in enumerate(block.convs, 1):
            params[f"b{b}_c{i}_pad"] = c.padding
        params[f"b{b}_pool"] = has(block.transition, MaxPool)
        t = [o.out_channels for o in block.transition if isinstance(o, Conv1x1)]
        params[f"b{b}_1x1"] = t[0] if t else 0
    if sample_spec(FixedTrial(params), Input.of(spec)) != spec:
        raise ValueError("spec is not a member of the search space")
    return params


def _uniform(seed: int) -> optuna.Study:
    """An in-memory study whose ``ask()`` draws uniformly over a space (RandomSampler(seed))."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line on stderr
    try:
        return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    finally:
        optuna.logging.set_verbosity(level)


def random_members(n: int, max_params: int, seed: int,
                   io: Input = MNIST_INPUT) -> list[ArchSpec]:
    """The first ``n`` distinct buildable members within ``max_params`` drawn by a
    RandomSampler(seed): uniform over the space, kept only if they fit. The draw is a fixed
    sequence, so a larger ``n`` extends a smaller one. Raises ValueError when 1000 x ``n``
    draws hold fewer than ``n`` such members (a budget below, or at the edge of, the space)."""
    study = _uniform(seed)
    out: dict[str, ArchSpec] = {}
    for _ in range(1000 * n):  # a budget below every member must end, not spin
        spec = sample_spec(study.ask(), io)  # never told: the random sampler ignores history
        try:
            if plan(spec.validate()).params <= max_params:
                out.setdefault(spec.key(), spec)
        except SpecError:
            continue
        if len(out) == n:
            return list(out.values())
    raise ValueError(f"found only {len(out)} members with <= {max_params:,} parameters")


# -- version 2: a space that fills the budget ----------------------------------------------------
# Version 1 draws absolute widths, so under a tight budget most draws are over it and the
# feasible ones use a median of ~63 % of it (issue 16). Version 2 draws the *shape* (depth,
# padding, pools, 1x1 transitions, BatchNorm placement, head) and *relative* widths, then
# scales every width by the largest factor that fits ``max_params``: nearly every draw is
# feasible and uses most of the budget. It labels each network once: ``order`` is drawn only
# where BatchNorm follows the convolutions, a conv followed by BatchNorm has no bias (BN's
# shift makes it redundant), and of the two global-pool heads, which compute the same function
# with the same parameters, only ``gap_linear`` is drawn.
SPACE_VERSIONS = (1, 2)
RATIOS = (0.5, 0.75, 1.0, 1.5, 2.0)  # a block's width relative to the scale
GROW = (1.0, 1.5)  # a block's last conv is this times its first (widths change inside a block)
T_RATIOS = (0.0, 0.5, 1.0)  # a 1x1 transition to this times the block's width; 0: none
MIN_WIDTH, MAX_WIDTH = 4, 512  # channels of any conv; the scale is searched between them
V2_HEADS = ("gap_linear", "flatten_linear")


@dataclass(frozen=True)
class ShapeV2:
    """A member of space version 2 before its widths are scaled: everything but the scale."""

    bn_at: str  # conv | transition | none
    order: str
    dropout: float
    stem_ratio: float
    blocks: tuple[tuple[float, float, tuple[int, ...], bool, float], ...]
    # per block: (width ratio, growth inside the block, paddings, pool, 1x1 ratio)
    head: str

    def at(self, scale: int, io: Input = MNIST_INPUT) -> ArchSpec:
        """The network with every width ``round(scale * ratio)`` (within the width bounds)."""
        def width(r: float) -> int:
            return min(MAX_WIDTH, max(MIN_WIDTH, round(scale * r)))

        bn = self.bn_at == "conv"

        def conv(out: int, pad: int, drop: float = 0.0) -> Conv3x3:
            return Conv3x3(out, padding=pad, bn=bn, relu=True, dropout=drop, bias=not bn)

        blocks = []
        for b, (ratio, grow, pads, pool, t) in enumerate(self.blocks, 1):
            n = len(pads)
            drop = self.dropout if b < len(self.blocks) else 0.0  # every block but the last
            widths = [width(ratio * (1 + (grow - 1) * i / max(1, n - 1))) for i in range(n)]
            convs = tuple(conv(w, pad, drop if i == n - 1 else 0.0)
                          for i, (w, pad) in enumerate(zip(widths, pads)))
            ops: list[TransitionOp] = [MaxPool()] if pool else []
            if t:
                ops.append(Conv1x1(width(ratio * grow * t), bn=bn, relu=True, bias=not bn))
            if ops and self.bn_at == "transition":
                ops.append(BatchNorm())
            blocks.append(Block(convs, tuple(ops)))
        return io.apply(ArchSpec(stem=conv(width(self.stem_ratio), 1), blocks=tuple(blocks),
                                 head=Head(self.head), order=self.order))  # type: ignore[arg-type]

    def largest_scale(self, max_params: int, io: Input = MNIST_INPUT) -> int:
        """The largest scale whose network has at most ``max_params`` parameters; the
        smallest scale when none has (or when the shapes collapse at every scale)."""
        def fits(scale: int) -> bool:
            try:
                return plan(self.at(scale, io).validate()).params <= max_params
            except SpecError:  # shapes collapse whatever the widths: the objective says why
                return False

        # Parameters grow with the scale (every width does): bisect over integer scales.
        lo, hi = MIN_WIDTH, MAX_WIDTH
        if not fits(lo):
            return lo
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo


def sample_shape_v2(trial: Suggester) -> ShapeV2:
    """The suggestions of space version 2 (its labels start with ``v2_``)."""
    bn_at = str(trial.suggest_categorical("v2_bn", ("conv", "transition", "none")))
    order = str(trial.suggest_categorical("v2_order", ORDERS)) if bn_at == "conv" \
        else "conv-bn-relu"  # no BatchNorm inside the units: the order changes nothing
    p = round(float(trial.suggest_float("v2_dropout", 0.0, 0.1, step=0.05)), 2)
    n_blocks = trial.suggest_int("v2_blocks", 2, MAX_BLOCKS)
    stem_r = float(trial.suggest_categorical("v2_stem_ratio", RATIOS))
    blocks = []
    for b in range(1, n_blocks + 1):
        n_convs = trial.suggest_int(f"v2_b{b}_convs", 1, MAX_CONVS)
        ratio = float(trial.suggest_categorical(f"v2_b{b}_ratio", RATIOS))
        grow = float(trial.suggest_categorical(f"v2_b{b}_grow", GROW)) if n_convs > 1 else 1.0
        pads = tuple(int(trial.suggest_categorical(f"v2_b{b}_c{i}_pad", (1, 0)))
                     for i in range(1, n_convs + 1))
        pool = bool(trial.suggest_categorical(f"v2_b{b}_pool", (True, False)))
        t = float(trial.suggest_categorical(f"v2_b{b}_1x1", T_RATIOS))
        blocks.append((ratio, grow, pads, pool, t))
    head = str(trial.suggest_categorical("v2_head", V2_HEADS))
    return ShapeV2(bn_at, order, p, stem_r, tuple(blocks), head)


def sample_spec_v2(trial: Suggester, max_params: int, io: Input = MNIST_INPUT) -> ArchSpec:
    """One member of space version 2 at the largest width scale that fits ``max_params``
    (the narrowest one when none fits: the objective then rejects it as over budget). May
    describe an impossible network (shapes collapse): call ``plan(spec.validate())``."""
    shape = sample_shape_v2(trial)
    return shape.at(shape.largest_scale(max_params, io), io)


def smallest_spec_v2(io: Input = MNIST_INPUT) -> ArchSpec:
    """The member of version 2 with the fewest parameters: two one-conv blocks of the
    narrowest width, no BatchNorm, no 1x1, a global-pool head."""
    c = Conv3x3(MIN_WIDTH, padding=1, bn=False, bias=True)
    return io.apply(ArchSpec(stem=c, blocks=(Block((c,)), Block((c,))), head=Head("gap_linear")))


def min_receptive_field(input_size: int) -> int:
    """The receptive field a global-pool head needs before it (version 2 rejects less):
    about the whole digit, 24 pixels of MNIST's 28, scaled with the image. A flatten head's
    classifier sees every position itself, so it needs none."""
    return round(input_size * 24 / 28)


def sample(version: int, trial: Suggester, max_params: int,
           io: Input = MNIST_INPUT) -> ArchSpec:
    """A member of space ``version`` (1: :func:`sample_spec`, 2: :func:`sample_spec_v2`)."""
    if version == 1:
        return sample_spec(trial, io)
    if version == 2:
        return sample_spec_v2(trial, max_params, io)
    raise ValueError(f"search space version {version!r} does not exist ({SPACE_VERSIONS})")


def fills_budget(version: int) -> bool:
    """Whether space ``version`` scales its widths to the budget it is given (version 2),
    rather than drawing absolute widths (version 1)."""
    return version >= 2


def smallest(version: int, io: Input = MNIST_INPUT) -> ArchSpec:
    return smallest_spec(io) if version == 1 else smallest_spec_v2(io)


def rejection(version: int, p: Plan) -> str | None:
    """Why space ``version`` rejects a buildable candidate within the budget, or None.
    Version 2 rejects global-pool heads that see less than :func:`min_receptive_field`."""
    if version >= 2 and p.spec.head.kind != "flatten_linear":
        need = min_receptive_field(p.spec.input_size)
        if p.receptive_field < need:
            return f"receptive field {p.receptive_field} < {need} before a global-pool head"
    return None


def start_members(version: int, n: int, max_params: int, seed: int,
                  io: Input = MNIST_INPUT) -> list[dict[str, object]]:
    """Trial parameters of ``n`` distinct feasible members to start a study with.

    Version 1: :func:`random_members`. Version 2: spread over the choices that matter most,
    one member per (depth, BatchNorm placement, head) stratum, in the order a
    RandomSampler(seed) first reaches them, each feasible (within the budget, buildable, not
    rejected). Raises ValueError when 1000 x ``n`` draws hold fewer."""
    if version == 1:
        return [params_of(s) for s in random_members(n, max_params, seed, io)]
    study = _uniform(seed)
    strata = 3 * 3 * len(V2_HEADS)  # depths 2-4 x BatchNorm placements x heads
    out: list[dict[str, object]] = []
    keys: set[str] = set()
    seen: set[tuple] = set()
    for _ in range(1000 * n):
        trial = study.ask()  # never told: the random sampler ignores history
        spec = sample_spec_v2(trial, max_params, io)
        try:
            p = plan(spec.validate())
        except SpecError:
            continue
        stratum = (len(spec.blocks), trial.params["v2_bn"], spec.head.kind)
        if p.params > max_params or rejection(2, p) or spec.key() in keys or \
                (stratum in seen and len(seen) < strata):  # every stratum once, then any
            continue
        out.append(dict(trial.params))
        keys.add(spec.key())
        seen.add(stratum)
        if len(out) == n:
            return out
    raise ValueError(f"found only {len(out)} members with <= {max_params:,} parameters")
