"""Standalone PyTorch source for a spec: a ``model.py`` that needs only torch.

The generated ``build()`` returns an ``nn.Sequential`` with the same module names as
:func:`nas.builder.build`, so a state dict saved by ``nas`` loads into it unchanged.
"""

from __future__ import annotations

from nas import __version__
from nas.builder import MODULES
from nas.layers import plan
from nas.spec import ArchSpec


def model_source(spec: ArchSpec) -> str:
    p = plan(spec)
    layers = []
    for layer in p.layers:
        args = ", ".join(f"{k}={v!r}" for k, v in layer.args.items())
        layers.append(f"        ({layer.name!r}, nn.{MODULES[layer.kind].__name__}({args})),")
    body = "\n".join(layers)
    n, rf = p.params, p.receptive_field
    return f'''"""A CNN found by nas {__version__}: {n:,} parameters, receptive field {rf}.

Spec key: {spec.key()}

Standalone: needs only torch. ``python model.py [weights.pt]`` builds it, checks the parameter
count, optionally loads weights, and runs one forward pass.
"""

from collections import OrderedDict

import torch
from torch import nn

PARAMS = {n}
INPUT_SHAPE = (1, {spec.in_channels}, {spec.input_size}, {spec.input_size})
MEAN, STD = 0.1307, 0.3081  # inputs are (pixels / 255 - MEAN) / STD


def build() -> nn.Sequential:
    return nn.Sequential(OrderedDict([
{body}
    ]))


if __name__ == "__main__":
    import sys

    model = build()
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMS, (n, PARAMS)
    if len(sys.argv) > 1:
        state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
    model.eval()
    print(f"{{n:,}} parameters; output shape {{tuple(model(torch.zeros(INPUT_SHAPE)).shape)}}")
'''
