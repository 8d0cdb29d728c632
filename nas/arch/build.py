"""``build(spec) -> nn.Module``: a pure function of the spec, no globals, no Optuna."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from nas.arch.plan import Layer, plan
from nas.arch.spec import ArchSpec

# Layer kind -> torch constructor. nas.export.codegen writes the same table out as source.
MODULES: dict[str, type[nn.Module]] = {
    "conv": nn.Conv2d,
    "bn": nn.BatchNorm2d,
    "relu": nn.ReLU,
    "dropout": nn.Dropout,
    "maxpool": nn.MaxPool2d,
    "gap": nn.AdaptiveAvgPool2d,
    "flatten": nn.Flatten,
    "linear": nn.Linear,
}


def make_layer(layer: Layer) -> nn.Module:
    return MODULES[layer.kind](**layer.args)


def build(spec: ArchSpec) -> nn.Sequential:
    """The network ``spec`` describes, as an ``nn.Sequential`` whose module names are the layer
    names of :func:`nas.arch.plan.plan` (so weights load into the standalone export unchanged).

    Raises :class:`nas.arch.spec.SpecError` if the spec is impossible.
    """
    return nn.Sequential(OrderedDict((layer.name, make_layer(layer))
                                     for layer in plan(spec).layers))
