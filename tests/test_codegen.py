from __future__ import annotations

import types

import pytest
import torch

from nas.builder import build
from nas.codegen import model_source
from nas.layers import param_count
from nas.zoo import REFERENCE
from tests.helpers import sampled_specs


def load_source(src: str) -> types.ModuleType:
    mod = types.ModuleType("generated_model")
    exec(compile(src, "model.py", "exec"), mod.__dict__)
    return mod


def test_generated_model_is_the_same_network():
    for spec in [f() for f in REFERENCE.values()] + sampled_specs(20, seed=3):
        mod = load_source(model_source(spec))
        standalone = mod.build()
        assert mod.PARAMS == param_count(spec)
        assert sum(p.numel() for p in standalone.parameters()) == param_count(spec)
        ours = build(spec).eval()
        standalone.load_state_dict(ours.state_dict(), strict=True)
        standalone.eval()
        x = torch.randn(2, 1, 28, 28)
        torch.testing.assert_close(standalone(x), ours(x))


def test_generated_source_needs_only_torch():
    src = model_source(REFERENCE["pool_bn_19k"]())
    imports = [line for line in src.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["from collections import OrderedDict", "import torch",
                       "from torch import nn"]


def test_generated_preprocess_is_the_trainers_normalisation():
    from nas.augment import normalize

    mod = load_source(model_source(REFERENCE["bn_dropout_16k"]()))
    pixels = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(mod.preprocess(pixels), normalize(pixels))
    torch.testing.assert_close(mod.preprocess(pixels[:, 0]), normalize(pixels))
    with pytest.raises(TypeError, match="uint8"):
        mod.preprocess(pixels.float() / 255)
