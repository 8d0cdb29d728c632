from __future__ import annotations

import types

import pytest
import torch

from nas.arch.build import build
from nas.arch.plan import param_count
from nas.arch.zoo import REFERENCE
from nas.export.codegen import model_source
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
    from nas.training.augment import normalize

    mod = load_source(model_source(REFERENCE["bn_dropout_16k"]()))
    pixels = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(mod.preprocess(pixels), normalize(pixels))
    torch.testing.assert_close(mod.preprocess(pixels[:, 0]), normalize(pixels))
    with pytest.raises(TypeError, match="uint8"):
        mod.preprocess(pixels.float() / 255)


def test_generated_fit_trains_the_way_nas_does(tiny_mnist_dir):
    """The exported recipe, run by model.py's own fit() on a small subset, trains the same
    network nas's trainer trains: same initialisation, batches, augmentation and schedule,
    so (without dropout, whose masks nas draws with its own generator) the same weights."""

    from nas.arch.spec import ArchSpec, Block, Conv3x3, Head, MaxPool
    from nas.export.codegen import recipe_of
    from nas.training.data import load_mnist
    from nas.training.trainer import TrainConfig, evaluate, train

    spec = ArchSpec(stem=Conv3x3(8), blocks=(Block((Conv3x3(8),), (MaxPool(),)),
                                             Block((Conv3x3(16),), (MaxPool(),))),
                    head=Head("gap_linear"))
    tr, val = load_mnist(tiny_mnist_dir, download=False).search_splits(val_size=200)
    cfg = TrainConfig(epochs=3, batch_size=25, lr=0.2, ema=0.9, channels_last=False,
                      precision="fp32", seed=3)
    ours = train(spec, tr, val, cfg, "cpu")
    mod = load_source(model_source(spec, recipe_of(cfg.to_dict())))
    assert mod.RECIPE["ema"] == 0.9 and mod.RECIPE["seed"] == 3
    theirs = mod.fit(tr.x, tr.y)
    for (name, a), b in zip(ours.model.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3, msg=name)
    assert evaluate(theirs, val.x.unsqueeze(1), val.y, cfg) == ours.final_accuracy
    assert ours.train_losses[-1] < ours.train_losses[0]  # it did learn
    # Another recipe, another network: fit really reads it.
    other = mod.fit(tr.x, tr.y, {"seed": 4})
    assert not torch.equal(next(other.parameters()), next(theirs.parameters()))
