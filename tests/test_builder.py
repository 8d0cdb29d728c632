from __future__ import annotations

import torch

from nas.builder import build
from nas.layers import plan
from nas.zoo import bn_dropout_16k
from tests.test_spec import sampled_specs


def test_forward_backward_no_nan_over_many_sampled_specs():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    y = torch.randint(0, 10, (4,))
    for spec in sampled_specs(60, seed=2):
        model = build(spec)
        out = model(x)
        assert out.shape == (4, 10), spec.key()
        loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in model.parameters()), spec.key()


def test_module_names_are_the_plan_names():
    spec = bn_dropout_16k()
    assert [name for name, _ in build(spec).named_children()] == [l.name for l in plan(spec)]


def test_build_is_pure():
    spec = bn_dropout_16k()
    torch.manual_seed(1)
    a = build(spec).state_dict()
    torch.manual_seed(1)
    b = build(spec).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_channels_last_forward_matches():
    spec = bn_dropout_16k()
    model = build(spec).eval()
    x = torch.randn(3, 1, 28, 28)
    ref = model(x)
    cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)
