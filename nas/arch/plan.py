"""The layer plan: one spec unrolled into the exact list of layers it builds.

This is the single source of truth shared by the builder (:mod:`nas.arch.build`), the
standalone source generator (:mod:`nas.export.codegen`), the parameter count and the
published-style layer table, and the one place that checks shapes: a spec whose map would
shrink below 1x1 has no plan.
It needs no torch: shapes, parameters and receptive fields are plain arithmetic.

Receptive field arithmetic (Araujo et al., "Computing receptive fields of CNNs", Distill 2019):
a layer with kernel k and stride s maps (r, j) -> (r + (k - 1) * j, j * s). So a 3x3 stride-1
convolution adds 2*j (a 5x5 one 4*j), a 2x2 stride-2 pool adds j and doubles j, 1x1 convolutions and pointwise
layers change nothing. The head's global pool or flatten sees the whole remaining map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

from nas.arch.spec import (ArchSpec, BatchNorm, Conv1x1, Conv3x3, Dropout, Head, MaxPool, SpecError,
                           TransitionOp)

HEAD_START = ("gap", "flatten")  # the layer kinds that begin a head: every layer from there on
# sees the whole feature map (a gap_conv head's 1x1 conv and a classifier included)
# No spec with more parameters has a plan: a spec read from a downloaded study is untrusted, and
# one within spec.py's size bounds could still ask for billions of weights (10^4 times the
# challenge's budget is far beyond anything nas searches).
MAX_PARAMS = 200_000_000


@dataclass(frozen=True)
class Layer:
    """One module of the built network and what it does to the tensor."""

    name: str  # module name inside the built nn.Sequential, e.g. "conv3", "maxpool1"
    kind: str  # conv | bn | relu | dropout | maxpool | gap | flatten | linear
    args: Mapping[str, Any] = field(hash=False)  # constructor arguments, see nas.arch.build
    out_shape: tuple[int, ...]  # (C, H, W) or (features,)
    params: int
    rf: int  # receptive field (pixels) of one output element
    jump: int  # distance in input pixels between adjacent outputs


@dataclass(frozen=True)
class Plan:
    """A spec's layers, in order, with what people quote about them."""

    spec: ArchSpec
    layers: tuple[Layer, ...]

    @property
    def params(self) -> int:
        """Trainable parameters of ``build(spec)``, computed without building it."""
        return sum(layer.params for layer in self.layers)

    @property
    def head_start(self) -> int:
        """Index of the head's first layer (its global pool or flatten)."""
        return next(i for i, layer in enumerate(self.layers) if layer.kind in HEAD_START)

    @property
    def receptive_field(self) -> int:
        """Receptive field of the feature map that enters the head (the figure people quote):
        the last layer before the head's pool or flatten, whatever the head does after it."""
        return self.layers[self.head_start - 1].rf

    def table(self) -> str:
        """The layer table as Markdown: layer, output shape, parameters, receptive field, jump.

        The head's rows (global pool or flatten, then the classifier) see the whole feature
        map, so their receptive-field cells say so instead of a number larger than the image.
        """
        rows = ["| layer | output shape | params | RF | jump |", "|---|---|---:|---:|---:|"]
        for i, layer in enumerate(self.layers):
            shape = "×".join(str(s) for s in layer.out_shape)
            rf, jump = ("all", "") if i >= self.head_start else (layer.rf, layer.jump)
            rows.append(f"| {layer.name} | {shape} | {layer.params:,} | {rf} | {jump} |")
        rows.append(f"| **total** | | **{self.params:,}** | {self.receptive_field} | |")
        return "\n".join(rows)


class _Planner:
    """Walks one spec's shapes, appending layers; raises SpecError on an impossible shape."""

    def __init__(self, spec: ArchSpec) -> None:
        self.order = spec.order
        self.shape: tuple[int, ...] = (spec.in_channels, spec.input_size, spec.input_size)
        self.rf, self.jump = 1, 1
        self.layers: list[Layer] = []
        self.counts: dict[str, int] = {}

    def _add(self, kind: str, args: dict[str, Any], params: int = 0) -> None:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        self.layers.append(Layer(f"{kind}{n}", kind, MappingProxyType(args), self.shape, params,
                                 self.rf, self.jump))

    def _conv(self, out: int, k: int, pad: int, bias: bool, where: str) -> None:
        c, h, _ = self.shape
        h2 = h + 2 * pad - k + 1
        if h2 < 1:
            raise SpecError(f"{where}: a {k}x{k} conv (padding {pad}) on a {h}x{h} map "
                            f"leaves nothing")
        self.shape, self.rf = (out, h2, h2), self.rf + (k - 1) * self.jump
        self._add("conv", dict(in_channels=c, out_channels=out, kernel_size=k, padding=pad,
                               bias=bias), c * out * k * k + (out if bias else 0))

    def _post(self, bn: bool, relu: bool) -> None:
        """BatchNorm and ReLU after a convolution, in the spec's order."""
        for op in self.order.split("-")[1:]:
            if op == "bn" and bn:
                self._bn()
            elif op == "relu" and relu:
                self._add("relu", {})

    def _bn(self) -> None:
        c = self.shape[0]
        self._add("bn", dict(num_features=c), 2 * c)

    def _dropout(self, p: float) -> None:
        if p > 0:
            self._add("dropout", dict(p=p))

    def _pool(self, where: str) -> None:
        c, h, _ = self.shape
        if h < 2:
            raise SpecError(f"{where}: a 2x2 max-pool on a {h}x{h} map leaves nothing")
        self.shape = (c, h // 2, h // 2)
        self.rf, self.jump = self.rf + self.jump, self.jump * 2
        self._add("maxpool", dict(kernel_size=2, stride=2))

    # -- the spec's parts ----------------------------------------------------------------------
    def unit(self, c: Conv3x3, where: str) -> None:
        self._conv(c.out_channels, c.kernel, c.padding, c.bias, where)
        self._post(c.bn, c.relu)
        self._dropout(c.dropout)

    def transition(self, o: TransitionOp, where: str) -> None:
        if isinstance(o, MaxPool):
            self._pool(where)
        elif isinstance(o, Conv1x1):
            self._conv(o.out_channels, 1, 0, o.bias, where)
            self._post(o.bn, o.relu)
        elif isinstance(o, BatchNorm):
            self._bn()
        elif isinstance(o, Dropout):
            self._dropout(o.p)

    def head(self, head: Head, classes: int) -> None:
        """Global pool (gap heads) or flatten, then the classifier; the output is (classes,)."""
        c, h, _ = self.shape
        self.rf += (h - 1) * self.jump  # the whole remaining map
        if head.kind == "flatten_linear":
            self._flatten()
        else:
            self.shape = (c, 1, 1)
            self._add("gap", dict(output_size=1))
            if head.kind == "gap_conv":
                self._conv(classes, 1, 0, head.bias, "head")
                self._flatten()
                return
            self._flatten()
        feats = self.shape[0]
        self.shape = (classes,)
        self._add("linear", dict(in_features=feats, out_features=classes, bias=head.bias),
                  feats * classes + (classes if head.bias else 0))

    def _flatten(self) -> None:
        c, h, w = self.shape
        self.shape = (c * h * w,)
        self._add("flatten", {})


@lru_cache(maxsize=4096)
def plan(spec: ArchSpec) -> Plan:
    """Unroll ``spec`` into layers. Raises :class:`SpecError` if a shape collapses or the
    network has more than :data:`MAX_PARAMS` parameters.

    A pure function of an immutable spec, so it is memoised: the builder, the parameter count
    and the table of one candidate share one plan.
    """
    p = _Planner(spec)
    p.unit(spec.stem, "stem")
    for bi, block in enumerate(spec.blocks, 1):
        for ci, c in enumerate(block.convs, 1):
            p.unit(c, f"block {bi} conv {ci}")
        for o in block.transition:
            p.transition(o, f"block {bi} transition")
    p.head(spec.head, spec.num_classes)
    out = Plan(spec, tuple(p.layers))
    if out.params > MAX_PARAMS:
        raise SpecError(f"the spec has {out.params:,} parameters, more than the {MAX_PARAMS:,} "
                        f"nas plans")
    return out


def param_count(spec: ArchSpec) -> int:
    """Trainable parameters of ``build(spec)``, computed without building it."""
    return plan(spec).params
