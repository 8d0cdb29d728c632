"""Seed batching: S copies of one architecture trained as one grouped network, each as if
alone."""

from __future__ import annotations

import pytest
import torch

from nas.arch.build import build
from nas.arch.spec import ArchSpec, Block, Conv1x1, Conv3x3, Head, MaxPool
from nas.arch.zoo import REFERENCE
from nas.training.data import load_mnist
from nas.training.seedbatch import build_grouped, pack, train_seeds, unpack
from nas.training.trainer import TrainConfig, train


def _specs() -> list[ArchSpec]:
    c = Conv3x3(6)
    body = (Block((c,), (MaxPool(), Conv1x1(4, bn=True))), Block((Conv3x3(8, padding=0),)))
    return [REFERENCE["bn_dropout_16k"](), REFERENCE["pool_bn_19k"]()] + [
        ArchSpec(stem=c, blocks=body, head=Head(kind)) for kind in ("gap_linear", "gap_conv")]


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.head.kind + str(len(s.blocks)))
def test_a_grouped_network_is_its_copies_side_by_side(spec):
    copies = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        copies.append(build(spec).eval())
    grouped = build_grouped(spec, 3)
    pack(grouped, copies)
    grouped.eval()
    x = [torch.randn(5, 1, 28, 28) for _ in range(3)]
    out = grouped(torch.cat(x, 1))
    assert out.shape == (5, 3, 10)
    for s, m in enumerate(copies):
        torch.testing.assert_close(out[:, s], m(x[s]), atol=1e-5, rtol=1e-4)
    # Unpacked, each copy is the network it was.
    for m, back in zip(copies, unpack(grouped, spec, 3)):
        for (k, a), b in zip(m.state_dict().items(), back.state_dict().values()):
            assert torch.equal(a, b), k


def test_the_copies_share_no_gradient():
    spec = _specs()[2]
    grouped = build_grouped(spec, 2)
    pack(grouped, [build(spec), build(spec)])
    x = torch.randn(4, 2, 28, 28)
    grouped.train()
    grouped(x)[:, 0].sum().backward()  # copy 0's output only
    for name, p in grouped.named_parameters():
        g = p.grad
        if name.endswith("weight") and g is not None and p.ndim == 3:  # the classifier
            assert g[0].abs().sum() > 0 and g[1].abs().sum() == 0, name
        elif g is not None:
            half = g.shape[0] // 2
            assert g[:half].abs().sum() > 0 and g[half:].abs().sum() == 0, name
    # Perturbing copy 1's input changes nothing of copy 0's output.
    grouped.eval()
    y = grouped(x)
    x2 = x.clone()
    x2[:, 1] += 1.0
    assert torch.equal(grouped(x2)[:, 0], y[:, 0])


def test_each_batched_seed_trains_as_if_alone(tiny_mnist_dir):
    """Without dropout, same seed, fp32: the batched copies end with the weights and the
    accuracies of separate runs (the grouped kernels add only rounding)."""
    tr, val = load_mnist(tiny_mnist_dir, download=False).search_splits(val_size=200)
    spec = _specs()[3]
    cfg = TrainConfig(epochs=2, batch_size=50, lr=0.1, precision="fp32", channels_last=False,
                      eval_batch_size=100)
    batched = train_seeds(spec, tr, val, cfg, seeds=[3, 5])
    for seed, b in zip([3, 5], batched):
        alone = train(spec, tr, val, TrainConfig(**{**cfg.to_dict(), "seed": seed}), "cpu")
        assert b.train_losses == pytest.approx(alone.train_losses, rel=1e-4)
        assert b.accuracies == pytest.approx(alone.accuracies, abs=0.011)  # 2 of 200 images
        for (k, a), c in zip(alone.model.state_dict().items(), b.model.state_dict().values()):
            torch.testing.assert_close(a, c, atol=1e-4, rtol=1e-3, msg=k)
    assert batched[0].accuracies != batched[1].accuracies  # two seeds, two runs


def test_batched_seeds_with_dropout_and_ema_are_separate_runs(tiny_mnist_dir):
    tr, val = load_mnist(tiny_mnist_dir, download=False).search_splits(val_size=200)
    spec = REFERENCE["bn_dropout_16k"]()
    cfg = TrainConfig(epochs=2, batch_size=50, lr=0.1, ema=0.9, eval_batch_size=100)
    a, b = train_seeds(spec, tr, val, cfg, seeds=[0, 1])
    assert a.final_accuracy > 0.5 and b.final_accuracy > 0.5
    assert a.model is not b.model
    assert not torch.equal(next(a.model.parameters()), next(b.model.parameters()))
    assert a.correct is not None and a.correct.shape == (200,)
