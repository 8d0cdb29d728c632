"""Parameter counts worked out by hand, receptive fields from the published tables."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from nas.arch.build import build
from nas.arch.plan import param_count, plan
from nas.arch.spec import ArchSpec, Block, Conv1x1, Conv3x3, Head, MaxPool
from nas.arch.zoo import bn_dropout_16k, pool_bn_19k
from tests.helpers import sampled_specs


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
    rows = [(layer.name, layer.rf, layer.jump) for layer in plan(bn_dropout_16k()).layers
            if layer.kind in ("conv", "maxpool")]
    assert rows == [("conv1", 3, 1), ("conv2", 5, 1), ("maxpool1", 6, 2), ("conv3", 10, 2),
                    ("conv4", 14, 2), ("maxpool2", 16, 4), ("conv5", 24, 4), ("conv6", 24, 4)]
    assert plan(bn_dropout_16k()).receptive_field == 24
    # Unpadded convolutions change shapes, not receptive-field arithmetic.
    assert plan(pool_bn_19k()).receptive_field == 32


def test_output_shapes_follow_padding_and_pools():
    shapes = {layer.name: layer.out_shape for layer in plan(pool_bn_19k()).layers}
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
    table = plan(bn_dropout_16k()).table()
    lines = table.splitlines()
    assert lines[0] == "| layer | output shape | params | RF | jump |"
    assert "| conv1 | 16×28×28 | 160 | 3 | 1 |" in lines
    assert lines[-1].startswith("| **total** | | **16,146** | 24 |")
    # The head sees the whole 7x7x8 map: its rows say so instead of a receptive field (36)
    # larger than the image and the total.
    assert "| flatten1 | 392 | 0 | all |  |" in lines
    assert "| linear1 | 10 | 3,930 | all |  |" in lines


@pytest.mark.parametrize("order, expected", [
    ("conv-bn-relu", ["conv", "bn", "relu"] * 3),
    ("conv-relu-bn", ["conv", "relu", "bn"] * 3),
])
def test_order_applies_to_3x3_units_and_1x1_transitions_alike(order, expected):
    spec = ArchSpec(stem=Conv3x3(8), order=order,
                    blocks=(Block((Conv3x3(8),), (Conv1x1(4, bn=True, relu=True),)),))
    kinds = [layer.kind for layer in plan(spec).layers if layer.kind not in ("gap", "flatten",
                                                                             "linear")]
    assert kinds == expected


def test_plan_is_computed_once_per_spec():
    """Memoised on the spec's value (plan's contract): an equal spec, built anew, gets the
    very same plan, and the parameter count and the builder plan nothing again. Counted
    through the memo's own public record (functools' cache_info), not the planner's insides."""
    plan.cache_clear()
    spec = pool_bn_19k()
    first = plan(spec)
    assert plan(pool_bn_19k()) is first and param_count(spec) == first.params
    build(spec)
    assert plan.cache_info().misses == 1 and plan.cache_info().hits == 3
    assert plan(bn_dropout_16k()) is not first and plan.cache_info().misses == 2


def test_receptive_field_is_the_one_before_a_gap_conv_head():
    # The 8k study's trial 547 was recorded with 30, the gap_conv head's own (its 1x1 conv
    # after the global pool). By hand: stem 3x3 -> 3; 3x3 unpadded -> 5; 2x2 pool -> 6, jump
    # 2; 1x1 -> 6; 3x3 at jump 2 -> 10; 1x1 -> 10. The head then sees the whole map.
    spec = ArchSpec.from_json(json.dumps({
        "stem": {"out_channels": 12, "bn": False},
        "blocks": [{"convs": [{"out_channels": 24, "padding": 0, "bn": False, "dropout": 0.1}],
                    "transition": [{"op": "maxpool"}, {"op": "conv1x1", "out_channels": 16},
                                   {"op": "bn"}]},
                   {"convs": [{"out_channels": 20, "padding": 0, "bn": False}],
                    "transition": [{"op": "conv1x1", "out_channels": 16}, {"op": "bn"}]}],
        "head": {"kind": "gap_conv"}, "order": "conv-relu-bn"}))
    p = plan(spec)
    assert p.params == 6_606
    assert p.receptive_field == 10
    lines = p.table().splitlines()
    assert "| conv6 | 10×1×1 | 170 | all |  |" in lines  # the head's conv, not "30"
    assert lines[-1].startswith("| **total** | | **6,606** | 10 |")
    # The same body with the other global-pool head: the same receptive field.
    assert plan(replace(spec, head=Head("gap_linear"))).receptive_field == 10
