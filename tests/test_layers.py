"""Parameter counts worked out by hand, receptive fields from the published tables."""

from __future__ import annotations

import pytest

from nas.builder import build
from nas.layers import layer_table, param_count, plan, receptive_field
from nas.spec import ArchSpec, Block, Conv3x3, Head, MaxPool
from nas.zoo import bn_dropout_16k, pool_bn_19k
from tests.test_spec import sampled_specs


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_reference_16146():
    # 160 + 32 + 3 * (2320 + 32) + 4640 + 64 + 264 + 3930, worked out in the issue
    spec = bn_dropout_16k()
    assert param_count(spec) == 16_146
    assert n_params(build(spec)) == 16_146


def test_reference_19378():
    # 80 + 584 + 16 + 1168 + 2320 + 32 + 4640 + 9248 + 1290
    spec = pool_bn_19k()
    assert param_count(spec) == 19_378
    assert n_params(build(spec)) == 19_378


def test_param_count_matches_built_model_for_many_specs():
    for spec in sampled_specs(200, seed=1):
        assert param_count(spec) == n_params(build(spec)), spec.key()


def test_receptive_fields_and_jumps_match_the_published_table():
    # The table people publish for the 16k network: conv 3, conv 5, pool 6 (jump 2),
    # conv 10, conv 14, pool 16 (jump 4), conv 24, 1x1 24.
    rows = [(layer.name, layer.rf, layer.jump) for layer in plan(bn_dropout_16k())
            if layer.kind in ("conv", "maxpool")]
    assert rows == [("conv1", 3, 1), ("conv2", 5, 1), ("maxpool1", 6, 2), ("conv3", 10, 2),
                    ("conv4", 14, 2), ("maxpool2", 16, 4), ("conv5", 24, 4), ("conv6", 24, 4)]
    assert receptive_field(bn_dropout_16k()) == 24
    # Unpadded convolutions change shapes, not receptive-field arithmetic.
    assert receptive_field(pool_bn_19k()) == 32


def test_output_shapes_follow_padding_and_pools():
    shapes = {layer.name: layer.out_shape for layer in plan(pool_bn_19k())}
    assert shapes["conv4"] == (16, 12, 12)  # 14x14, unpadded
    assert shapes["maxpool2"] == (16, 6, 6)
    assert shapes["conv6"] == (32, 2, 2)
    assert shapes["flatten1"] == (128,)
    assert shapes["linear1"] == (10,)


@pytest.mark.parametrize("kind, head_params", [("gap_linear", 16 * 10 + 10),
                                               ("gap_conv", 16 * 10 + 10),
                                               ("flatten_linear", 16 * 7 * 7 * 10 + 10)])
def test_heads_by_hand(kind, head_params):
    c = Conv3x3(16, bn=False, bias=False)
    spec = ArchSpec(stem=Conv3x3(16, bn=False, bias=False),
                    blocks=(Block((c,), (MaxPool(), MaxPool())),), head=Head(kind))
    body = 1 * 16 * 9 + 16 * 16 * 9
    assert param_count(spec) == body + head_params
    assert n_params(build(spec)) == body + head_params


def test_layer_table_is_markdown_with_totals():
    table = layer_table(bn_dropout_16k())
    lines = table.splitlines()
    assert lines[0] == "| layer | output shape | params | RF | jump |"
    assert "| conv1 | 16×28×28 | 160 | 3 | 1 |" in lines
    assert lines[-1].startswith("| **total** | | **16,146** | 24 |")
