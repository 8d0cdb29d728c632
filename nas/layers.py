"""The layer plan: one spec unrolled into the exact list of layers it builds.

This is the single source of truth shared by the builder (:mod:`nas.builder`), the standalone
source generator (:mod:`nas.codegen`), the parameter count and the published-style layer table.
It needs no torch: shapes, parameters and receptive fields are plain arithmetic.

Receptive field arithmetic (Araujo et al., "Computing receptive fields of CNNs", Distill 2019):
a layer with kernel k and stride s maps (r, j) -> (r + (k - 1) * j, j * s). So a 3x3 stride-1
convolution adds 2*j, a 2x2 stride-2 pool adds j and doubles j, 1x1 convolutions and pointwise
layers change nothing. The head's global pool and flatten see the whole remaining map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nas.spec import ArchSpec, BatchNorm, Conv1x1, Conv3x3, Dropout, MaxPool, SpecError


@dataclass(frozen=True)
class Layer:
    """One module of the built network and what it does to the tensor."""

    name: str  # module name inside the built nn.Sequential, e.g. "conv3", "pool1"
    kind: str  # conv | bn | relu | dropout | maxpool | gap | flatten | linear
    args: dict[str, Any] = field(hash=False)  # constructor arguments, see nas.builder
    out_shape: tuple[int, ...]  # (C, H, W) or (features,)
    params: int
    rf: int  # receptive field (pixels) of one output element
    jump: int  # distance in input pixels between adjacent outputs


class _Planner:
    """Accumulates layers while walking shapes; raises SpecError on an impossible shape."""

    def __init__(self, spec: ArchSpec) -> None:
        self.c, self.h = spec.in_channels, spec.input_size
        self.rf, self.jump = 1, 1
        self.layers: list[Layer] = []
        self.counts: dict[str, int] = {}

    def add(self, kind: str, args: dict[str, Any], params: int = 0) -> None:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        shape = (self.c,) if self.h == 0 else (self.c, self.h, self.h)
        self.layers.append(Layer(f"{kind}{n}", kind, args, shape, params, self.rf, self.jump))

    def conv(self, out: int, k: int, pad: int, bias: bool, where: str) -> None:
        h = self.h + 2 * pad - k + 1
        if h < 1:
            raise SpecError(f"{where}: a {k}x{k} conv (padding {pad}) on a {self.h}x{self.h} map "
                            f"leaves nothing")
        params = self.c * out * k * k + (out if bias else 0)
        args = dict(in_channels=self.c, out_channels=out, kernel_size=k, padding=pad, bias=bias)
        self.c, self.h, self.rf = out, h, self.rf + (k - 1) * self.jump
        self.add("conv", args, params)

    def bn(self) -> None:
        self.add("bn", dict(num_features=self.c), 2 * self.c)

    def relu(self) -> None:
        self.add("relu", {})

    def dropout(self, p: float) -> None:
        if p > 0:
            self.add("dropout", dict(p=p))

    def pool(self, where: str) -> None:
        if self.h < 2:
            raise SpecError(f"{where}: a 2x2 max-pool on a {self.h}x{self.h} map leaves nothing")
        self.h //= 2
        self.rf, self.jump = self.rf + self.jump, self.jump * 2
        self.add("maxpool", dict(kernel_size=2, stride=2))

    def unit(self, c: Conv3x3, order: str, where: str) -> None:
        self.conv(c.out_channels, 3, c.padding, c.bias, where)
        post = ["bn", "relu"] if order == "conv-bn-relu" else ["relu", "bn"]
        for p in post:
            if p == "bn" and c.bn:
                self.bn()
            elif p == "relu" and c.relu:
                self.relu()
        self.dropout(c.dropout)

    def whole_map(self) -> None:
        """Global pooling or flattening: the output sees the whole remaining map."""
        self.rf += (self.h - 1) * self.jump


def plan(spec: ArchSpec) -> list[Layer]:
    """Unroll ``spec`` into layers. Raises :class:`SpecError` if a shape collapses."""
    p = _Planner(spec)
    p.unit(spec.stem, spec.order, "stem")
    for bi, block in enumerate(spec.blocks, 1):
        for ci, c in enumerate(block.convs, 1):
            p.unit(c, spec.order, f"block {bi} conv {ci}")
        for o in block.transition:
            where = f"block {bi} transition"
            if isinstance(o, MaxPool):
                p.pool(where)
            elif isinstance(o, Conv1x1):
                p.conv(o.out_channels, 1, 0, o.bias, where)
                if spec.order == "conv-bn-relu":
                    if o.bn:
                        p.bn()
                    if o.relu:
                        p.relu()
                else:
                    if o.relu:
                        p.relu()
                    if o.bn:
                        p.bn()
            elif isinstance(o, BatchNorm):
                p.bn()
            elif isinstance(o, Dropout):
                p.dropout(o.p)
    k, bias = spec.num_classes, spec.head.bias
    if spec.head.kind == "flatten_linear":
        feats = p.c * p.h * p.h
        p.whole_map()
        p.c, p.h = feats, 0
        p.add("flatten", {})
        p.c = k
        p.add("linear", dict(in_features=feats, out_features=k, bias=bias),
              feats * k + (k if bias else 0))
    else:
        p.whole_map()
        p.h = 1
        p.add("gap", dict(output_size=1))
        if spec.head.kind == "gap_conv":
            p.conv(k, 1, 0, bias, "head")
            p.h = 0
            p.add("flatten", {})
        else:
            p.h, feats = 0, p.c
            p.add("flatten", {})
            p.c = k
            p.add("linear", dict(in_features=feats, out_features=k, bias=bias),
                  feats * k + (k if bias else 0))
    return p.layers


def param_count(spec: ArchSpec) -> int:
    """Trainable parameters of ``build(spec)``, computed without building it."""
    return sum(layer.params for layer in plan(spec))


def receptive_field(spec: ArchSpec) -> int:
    """Receptive field of the feature map that enters the head (the figure people quote)."""
    rf = 1
    for layer in plan(spec):
        if layer.kind in ("gap", "flatten"):
            break
        rf = layer.rf
    return rf


def layer_table(spec: ArchSpec) -> str:
    """The layer table as Markdown: layer, output shape, parameters, receptive field, jump."""
    rows = ["| layer | output shape | params | RF | jump |", "|---|---|---:|---:|---:|"]
    for layer in plan(spec):
        shape = "×".join(str(s) for s in layer.out_shape)
        rows.append(f"| {layer.name} | {shape} | {layer.params:,} | {layer.rf} | {layer.jump} |")
    rows.append(f"| **total** | | **{param_count(spec):,}** | {receptive_field(spec)} | |")
    return "\n".join(rows)
