from __future__ import annotations

import torch

from nas.arch.build import build
from nas.arch.plan import plan
from nas.arch.zoo import bn_dropout_16k, pool_bn_19k
from tests.helpers import sampled_specs


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
    assert [name for name, _ in build(spec).named_children()] == \
        [layer.name for layer in plan(spec).layers]


def test_build_is_a_pure_function_of_the_spec():
    """Same spec, same network, whatever was built before; the spec is not changed; two
    networks share no parameter storage (nothing cached and handed out twice)."""
    spec, other = bn_dropout_16k(), pool_bn_19k()
    before = spec.to_json()
    torch.manual_seed(1)
    a = build(spec)
    build(other)  # building something else in between changes nothing about the next build
    torch.manual_seed(1)
    b = build(spec)
    assert spec.to_json() == before
    assert str(a) == str(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not {p.data_ptr() for p in a.parameters()} & {p.data_ptr() for p in b.parameters()}


def test_channels_last_forward_matches():
    spec = bn_dropout_16k()
    model = build(spec).eval()
    x = torch.randn(3, 1, 28, 28)
    ref = model(x)
    cl_model = model.to(memory_format=torch.channels_last)
    cl = cl_model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)
