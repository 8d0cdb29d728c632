"""Architecture specs: plain, frozen data that describes one CNN exactly.

A spec is a stem convolution, a sequence of blocks of convolutions (3x3 unless a unit says 5x5 or
7x7), each block followed by an optional transition (2x2 max-pool, 1x1 convolution, BatchNorm,
dropout, in the order given), and a head. A block may be a transition alone (a pool right after
the stem, as in many published networks). Specs are immutable, hashable, and round-trip through JSON exactly
(``ArchSpec.from_json(s.to_json()) == s``). This module is plain data and imports nothing of
``nas``: :meth:`ArchSpec.validate` checks fields (types and ranges); whether the shapes work out
is the planner's to say (:func:`nas.arch.plan.plan`), and building is :mod:`nas.arch.build`'s.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Union

from nas.errors import SpecError

SPEC_VERSION = 1

# Bounds on a spec's size. A spec may come from a downloaded study or file (untrusted input):
# without them a spec of 10^6 blocks took minutes and gigabytes to plan and wrote a 197 MB
# model.py. They lie far above the search space (4 blocks of 3 convs, 8-32 channels).
MAX_SPEC_CHARS = 200_000  # JSON text, checked before parsing
MAX_JSON_DEPTH = 8  # nesting of objects and lists (a spec needs 5), checked before parsing
MAX_BLOCKS = 32
MAX_CONVS = 16  # per block
MAX_OPS = 8  # transition ops per block
MAX_CHANNELS = 4096  # of any convolution
MAX_IN_CHANNELS = 64
MAX_INPUT_SIZE = 1024
MAX_CLASSES = 10_000
KERNELS = (3, 5, 7)  # a unit's kernel sizes; the search space samples 3 only

Order = Literal["conv-bn-relu", "conv-relu-bn"]
HeadKind = Literal["gap_linear", "gap_conv", "flatten_linear"]
ORDERS: tuple[str, ...] = ("conv-bn-relu", "conv-relu-bn")
HEAD_KINDS: tuple[str, ...] = ("gap_linear", "gap_conv", "flatten_linear")


@dataclass(frozen=True)
class Conv3x3:
    """A k x k stride-1 convolution unit: conv, optional BatchNorm and ReLU, optional dropout.

    ``kernel`` is 3 (the name says the common case, and all the search space samples) or 5 or
    7 for published designs; ``padding`` is from 0 to kernel // 2 ("same" at kernel // 2). A
    3x3 unit's JSON leaves ``kernel`` out, so specs written before it existed read and write
    byte for byte as before."""

    out_channels: int
    padding: int = 1
    bn: bool = True
    relu: bool = True
    dropout: float = 0.0
    bias: bool = True
    kernel: int = 3


@dataclass(frozen=True)
class MaxPool:
    """2x2 max-pool with stride 2 (floor): halves the map, doubles the jump."""

    op: Literal["maxpool"] = "maxpool"


@dataclass(frozen=True)
class Conv1x1:
    """A 1x1 convolution that changes the channel count (optional BatchNorm, ReLU)."""

    out_channels: int
    bn: bool = False
    relu: bool = True
    bias: bool = True
    op: Literal["conv1x1"] = "conv1x1"


@dataclass(frozen=True)
class BatchNorm:
    """BatchNorm over the current channels (e.g. after a pool)."""

    op: Literal["bn"] = "bn"


@dataclass(frozen=True)
class Dropout:
    p: float
    op: Literal["dropout"] = "dropout"


TransitionOp = Union[MaxPool, Conv1x1, BatchNorm, Dropout]
_OPS: dict[str, type] = {"maxpool": MaxPool, "conv1x1": Conv1x1, "bn": BatchNorm,
                         "dropout": Dropout}


@dataclass(frozen=True)
class Block:
    """Some convolutions, then the transition ops applied after them, in order; at least one
    of the two (a block of a pool alone puts it right after the previous block or the stem)."""

    convs: tuple[Conv3x3, ...]
    transition: tuple[TransitionOp, ...] = ()


@dataclass(frozen=True)
class Head:
    """The classifier.

    ``gap_linear``: global average pool, flatten, linear. ``gap_conv``: global average pool, 1x1
    conv to the classes, flatten. ``flatten_linear``: flatten the whole map, linear.
    """

    kind: HeadKind = "gap_linear"
    bias: bool = True


@dataclass(frozen=True)
class ArchSpec:
    """One network. ``order`` places BatchNorm and ReLU inside every convolution unit."""

    stem: Conv3x3
    blocks: tuple[Block, ...]
    head: Head = field(default_factory=Head)
    order: Order = "conv-bn-relu"
    in_channels: int = 1
    input_size: int = 28
    num_classes: int = 10

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, not tuples), with the spec format's version."""
        d = json.loads(json.dumps(asdict(self)))
        for unit in [d["stem"]] + [c for b in d["blocks"] for c in b["convs"]]:
            if unit["kernel"] == 3:  # the default, left out: older specs' JSON is unchanged
                del unit["kernel"]
        d["version"] = SPEC_VERSION
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        """Parse and validate; any malformed input raises :class:`SpecError`."""
        if not isinstance(d, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        version = d.pop("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(f"spec version {short_repr(version)} is not supported (expected "
                           f"{SPEC_VERSION})")
        try:
            spec = cls(
                stem=_conv3x3(d.pop("stem")),
                blocks=tuple(_block(b)
                             for b in _list(d.pop("blocks"), "blocks", MAX_BLOCKS)),
                head=Head(**_obj(d.pop("head", {}), "head")),
                **d,
            )
        except SpecError:
            raise
        except (KeyError, TypeError) as e:
            raise SpecError(f"malformed spec: {e}") from None
        spec.validate()
        return spec

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parse JSON text. Its size (:data:`MAX_SPEC_CHARS`) and nesting depth
        (:data:`MAX_JSON_DEPTH`) are checked before the parser sees it, so hostile text is a
        SpecError, never a RecursionError or minutes of parsing."""
        if not isinstance(text, str):
            raise SpecError(f"a spec must be JSON text, got {type(text).__name__}")
        if len(text) > MAX_SPEC_CHARS:
            raise SpecError(f"spec is {len(text):,} characters of JSON, more than the "
                            f"{MAX_SPEC_CHARS:,} any spec needs")
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise SpecError(f"spec JSON is nested {depth} deep, more than {MAX_JSON_DEPTH}")
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, or an int of 5,000 digits
            raise SpecError(f"spec is not valid JSON: {str(e).splitlines()[0]}") from None
        return cls.from_dict(d)

    # -- identity and validity ----------------------------------------------------------------
    def key(self) -> str:
        """A canonical string: two specs describe the same network iff their keys are equal."""
        def conv(c: Conv3x3) -> str:
            s = f"c{c.out_channels}" + ("" if c.kernel == 3 else f"k{c.kernel}")
            s += "" if c.padding == 1 else f"p{c.padding}"
            s += ("b" if c.bn else "") + ("r" if c.relu else "") + ("" if c.bias else "n")
            return s + (f"d{c.dropout:g}" if c.dropout else "")

        def op(o: TransitionOp) -> str:
            if isinstance(o, MaxPool):
                return "M"
            if isinstance(o, Conv1x1):
                return f"t{o.out_channels}" + ("b" if o.bn else "") + ("r" if o.relu else "") + (
                    "" if o.bias else "n")
            if isinstance(o, BatchNorm):
                return "B"
            return f"D{o.p:g}"

        blocks = "|".join(
            ",".join(conv(c) for c in b.convs) + ("/" + ",".join(op(o) for o in b.transition)
                                                   if b.transition else "")
            for b in self.blocks)
        head = self.head.kind + ("" if self.head.bias else "-nobias")
        return (f"{self.order};in{self.in_channels}x{self.input_size};stem:{conv(self.stem)};"
                f"{blocks};{head};{self.num_classes}")

    def validate(self) -> ArchSpec:
        """Raise :class:`SpecError` unless every field has its type and range; return self.

        Types are strict (``True`` is not a channel count, ``1.0`` not a padding, ``"false"``
        not a boolean), so a spec that passes builds exactly what its key says. Shapes are not
        checked here: :func:`nas.arch.plan.plan` raises SpecError for a map shrunk below 1x1.
        """
        if self.order not in ORDERS:
            raise SpecError(f"order must be one of {ORDERS}, got {short_repr(self.order)}")
        if not isinstance(self.head, Head) or self.head.kind not in HEAD_KINDS:
            raise SpecError(f"head kind must be one of {HEAD_KINDS}, got "
                            f"{short_repr(getattr(self.head, 'kind', self.head))}")
        _check_bool(self.head.bias, "head bias")
        for name, most in (("in_channels", MAX_IN_CHANNELS), ("input_size", MAX_INPUT_SIZE),
                           ("num_classes", MAX_CLASSES)):
            _positive_int(getattr(self, name), name, most)
        if not isinstance(self.blocks, tuple) or not self.blocks:
            raise SpecError("a spec needs at least one block")
        _at_most(len(self.blocks), MAX_BLOCKS, "blocks")
        _check_conv3x3(self.stem, "stem")
        for bi, block in enumerate(self.blocks, 1):
            if not isinstance(block, Block) or not isinstance(block.convs, tuple):
                raise SpecError(f"block {bi} convs must be a list of convolutions")
            _at_most(len(block.convs), MAX_CONVS, f"block {bi} convs")
            if not isinstance(block.transition, tuple):
                raise SpecError(f"block {bi} transition must be a list of ops")
            if not block.convs and not block.transition:
                raise SpecError(f"block {bi} has no convolutions and no transition ops")
            _at_most(len(block.transition), MAX_OPS, f"block {bi} transition ops")
            for ci, conv in enumerate(block.convs, 1):
                _check_conv3x3(conv, f"block {bi} conv {ci}")
            for o in block.transition:
                if isinstance(o, Conv1x1):
                    _positive_int(o.out_channels, f"block {bi} 1x1 out_channels", MAX_CHANNELS)
                    for flag in ("bn", "relu", "bias"):
                        _check_bool(getattr(o, flag), f"block {bi} 1x1 {flag}")
                elif isinstance(o, Dropout):
                    _check_p(o.p, f"block {bi} dropout")
                elif not isinstance(o, (MaxPool, BatchNorm)):
                    raise SpecError(f"block {bi} has an unknown transition op {short_repr(o)}")
        return self


# -- parsing helpers ------------------------------------------------------------------------------
def _obj(x: Any, what: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise SpecError(f"{what} must be a JSON object, got {type(x).__name__}")
    return x


def _list(x: Any, what: str, most: int) -> list[Any]:
    """``x`` as a list of at most ``most`` items (checked before anything is built of them)."""
    if not isinstance(x, list | tuple):
        raise SpecError(f"{what} must be a JSON list, got {type(x).__name__}")
    _at_most(len(x), most, what)
    return list(x)


def _at_most(n: int, most: int, what: str) -> None:
    if n > most:
        raise SpecError(f"{what}: {n:,} is more than the {most:,} a spec may have")


def json_depth(text: str) -> int:
    """The deepest nesting of objects and lists in JSON ``text`` (brackets inside strings do
    not count), found without parsing it; malformed text gets some number, and the parser
    then says what is wrong with it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _conv3x3(x: Any) -> Conv3x3:
    return Conv3x3(**_obj(x, "conv"))


def _block(x: Any) -> Block:
    x = _obj(x, "block")
    unknown = set(x) - {"convs", "transition"}
    if unknown:
        raise SpecError(f"block has unknown fields {sorted(unknown)}")
    ops = []
    for o in _list(x.get("transition", []), "transition", MAX_OPS):
        o = dict(_obj(o, "transition op"))
        kind = o.get("op")
        if kind not in _OPS:
            raise SpecError(f"unknown transition op {short_repr(kind)} (expected one of "
                            f"{sorted(_OPS)})")
        ops.append(_OPS[kind](**o))
    return Block(convs=tuple(_conv3x3(c) for c in _list(x["convs"], "convs", MAX_CONVS)),
                 transition=tuple(ops))


def _positive_int(v: Any, name: str, most: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= most:
        raise SpecError(f"{name} must be a positive integer, got {short_repr(v)} (at most "
                        f"{most:,})")


def short_repr(v: Any) -> str:
    """``repr(v)``, cut to one short line (a hostile value may be megabytes; an integer of
    thousands of digits has no repr at all in Python 3.11)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**30:
        return f"an integer of {v.bit_length():,} bits"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_p(p: Any, name: str) -> None:
    if not isinstance(p, int | float) or isinstance(p, bool) or not 0.0 <= p < 1.0:
        raise SpecError(f"{name} must be a probability in [0, 1), got {short_repr(p)}")


def _check_bool(v: Any, name: str) -> None:
    if not isinstance(v, bool):
        raise SpecError(f"{name} must be true or false, got {short_repr(v)}")


def _check_conv3x3(c: Any, name: str) -> None:
    if not isinstance(c, Conv3x3):
        raise SpecError(f"{name} must be a convolution unit, got {short_repr(c)}")
    _positive_int(c.out_channels, f"{name} out_channels", MAX_CHANNELS)
    if type(c.kernel) is not int or c.kernel not in KERNELS:
        raise SpecError(f"{name} kernel must be one of {', '.join(map(str, KERNELS))}, got "
                        f"{short_repr(c.kernel)}")
    most = c.kernel // 2
    if type(c.padding) is not int or not 0 <= c.padding <= most:
        raise SpecError(f"{name} padding must be {'0 or 1' if most == 1 else f'0 to {most}'}, "
                        f"got {short_repr(c.padding)}")
    for flag in ("bn", "relu", "bias"):
        _check_bool(getattr(c, flag), f"{name} {flag}")
    _check_p(c.dropout, f"{name} dropout")
