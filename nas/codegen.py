"""Standalone PyTorch source for a spec: a ``model.py`` that needs only torch.

The generated ``build()`` returns an ``nn.Sequential`` with the same module names as
:func:`nas.builder.build`, so a state dict saved by ``nas`` loads into it unchanged.
"""

from __future__ import annotations

from nas import __version__
from nas.augment import MNIST_MEAN, MNIST_STD
from nas.builder import MODULES
from nas.layers import plan
from nas.spec import ArchSpec


def model_source(spec: ArchSpec) -> str:
    """The source of a standalone ``model.py`` for ``spec``: ``build()``, ``PARAMS``,
    ``INPUT_SHAPE`` and ``preprocess`` (the input contract, the trainer's normalisation)."""
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

Input contract: ``build()``'s network takes NORMALISED float32 images, shape (N, 1, 28, 28).
Images as they come (MNIST's IDX convention: uint8 pixels 0-255, 0 = background, 255 = ink)
go through ``preprocess`` first: ``model(preprocess(pixels))``. Fed [0, 1] pixels instead, the
network silently loses accuracy. (``model.onnx``, when exported, has ``preprocess`` inside:
it takes the uint8 pixels directly.)
"""

from collections import OrderedDict

import torch
from torch import nn

PARAMS = {n}
INPUT_SHAPE = (1, {spec.in_channels}, {spec.input_size}, {spec.input_size})
MEAN, STD = {MNIST_MEAN}, {MNIST_STD}  # MNIST's training-set pixel mean and std, on [0, 1]


def preprocess(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0-255, shape (N, 1, 28, 28) or (N, 28, 28) -> the network's input:
    float32 (N, 1, 28, 28), (pixels / 255 - MEAN) / STD, exactly what nas trained on."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"preprocess takes uint8 pixels 0-255, got {{pixels.dtype}}")
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(1)
    return (pixels.float() / 255.0 - MEAN) / STD


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
    pixels = torch.zeros(INPUT_SHAPE, dtype=torch.uint8)
    print(f"{{n:,}} parameters; output shape {{tuple(model(preprocess(pixels)).shape)}}")
'''
