"""The search space: the only place that calls ``trial.suggest_*``.

``sample_spec(trial)`` turns an Optuna trial's suggestions into an :class:`~nas.spec.ArchSpec`
(NNI's ``freeze(sample)``): everything downstream (building, counting, training, export, replay)
sees only the spec. Parameter labels are stable across releases: a study keeps its meaning.

The family: a stem conv, 2-4 blocks of 1-3 3x3 convs (one width per block, padding per conv),
after each block an optional 2x2 max-pool and/or 1x1 conv to fewer channels, BatchNorm either
inside every conv unit or after each transition, dropout at the end of every block but the last,
and one of three heads. Both reference networks of :mod:`nas.zoo` are members.
"""

from __future__ import annotations

from typing import Protocol

import optuna
from optuna.trial import FixedTrial

from nas.layers import plan
from nas.spec import (ArchSpec, BatchNorm, Block, Conv1x1, Conv3x3, Dropout, HEAD_KINDS, Head,
                      MaxPool, ORDERS, SpecError, TransitionOp)

CHANNELS = (8, 10, 12, 16, 20, 24, 28, 32)
TRANSITION_CHANNELS = (0, 8, 10, 12, 16)  # 0: no 1x1 conv
MAX_BLOCKS = 4
MAX_CONVS = 3


class Suggester(Protocol):
    """What ``sample_spec`` needs of an ``optuna.Trial`` (FixedTrial and FrozenTrial fit too)."""

    def suggest_categorical(self, name: str, choices: tuple) -> object: ...  # noqa: E704

    def suggest_int(self, name: str, low: int, high: int) -> int: ...  # noqa: E704

    def suggest_float(self, name: str, low: float, high: float, *,  # noqa: E704
                      step: float | None = None) -> float: ...


def sample_spec(trial: Suggester) -> ArchSpec:
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
    return ArchSpec(stem=stem, blocks=tuple(blocks), head=head, order=order)  # type: ignore[arg-type]


def smallest_spec() -> ArchSpec:
    """The member with the fewest parameters: narrowest widths, fewest blocks and convs, no
    biases, no BatchNorm, a global-pool head. No candidate is smaller."""
    c = Conv3x3(min(CHANNELS), padding=1, bn=False, bias=False)
    return ArchSpec(stem=c, blocks=tuple(Block((c,)) for _ in range(2)), head=Head("gap_linear"))


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
    if sample_spec(FixedTrial(params)) != spec:
        raise ValueError("spec is not a member of the search space")
    return params


def random_members(n: int, max_params: int, seed: int) -> list[ArchSpec]:
    """The first ``n`` distinct buildable members within ``max_params`` drawn by a
    RandomSampler(seed): uniform over the space, kept only if they fit. The draw is a fixed
    sequence, so a larger ``n`` extends a smaller one. Raises ValueError when 1000 x ``n``
    draws hold fewer than ``n`` such members (a budget below, or at the edge of, the space)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line on stderr
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    finally:
        optuna.logging.set_verbosity(level)
    out: dict[str, ArchSpec] = {}
    for _ in range(1000 * n):  # a budget below every member must end, not spin
        spec = sample_spec(study.ask())  # never told: the random sampler ignores history
        try:
            if plan(spec.validate()).params <= max_params:
                out.setdefault(spec.key(), spec)
        except SpecError:
            continue
        if len(out) == n:
            return list(out.values())
    raise ValueError(f"found only {len(out)} members with <= {max_params:,} parameters")
