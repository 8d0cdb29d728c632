from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import nas.arch.spec
from nas.arch.plan import plan
from nas.arch.spec import ArchSpec, Block, Conv1x1, Conv3x3, MaxPool, SpecError
from nas.arch.zoo import REFERENCE
from tests.helpers import sampled_specs


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_specs_round_trip_json_exactly(name):
    spec = REFERENCE[name]()
    text = spec.to_json()
    again = ArchSpec.from_json(text)
    assert again == spec
    assert again.to_json() == text
    assert hash(again) == hash(spec)


def test_sampled_specs_round_trip_and_keys_are_canonical():
    specs = sampled_specs(150)
    for spec in specs:
        assert ArchSpec.from_json(spec.to_json(indent=2)) == spec
    # Equal keys <=> equal specs.
    by_key = {}
    for spec in specs:
        by_key.setdefault(spec.key(), set()).add(spec)
    assert all(len(v) == 1 for v in by_key.values())
    assert len(by_key) == len(set(specs))


def test_key_distinguishes_small_differences():
    a = REFERENCE["bn_dropout_16k"]()
    b = REFERENCE["bn_dropout_16k"](dropout=0.05)
    assert a.key() != b.key()
    assert a.key() == REFERENCE["bn_dropout_16k"]().key()


def bad(**changes) -> dict:
    d = REFERENCE["pool_bn_19k"]().to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize("d, message", [
    (bad(stem={"out_channels": -8}), "positive integer"),
    (bad(stem={"out_channels": 8, "padding": 2}), "padding"),
    (bad(stem={"out_channels": 8, "dropout": 1.5}), "probability"),
    (bad(blocks=[]), "at least one block"),
    (bad(blocks=[{"convs": []}]), "no convolutions and no transition ops"),
    (bad(blocks=[{"transition": [{"op": "maxpool"}]}]), "malformed"),  # convs: [] says it
    (bad(stem={"out_channels": 8, "kernel": 4}), "kernel must be one of 3, 5, 7, got 4"),
    (bad(stem={"out_channels": 8, "kernel": 5.0}), "kernel must be one of 3, 5, 7, got 5.0"),
    (bad(stem={"out_channels": 8, "kernel": 5, "padding": 3}), "padding must be 0 to 2, got 3"),
    (bad(blocks=[{"convs": [{"out_channels": 8}], "transition": [{"op": "avgpool"}]}]),
     "unknown transition op"),
    (bad(head={"kind": "mlp"}), "head kind"),
    (bad(order="relu-first"), "order"),
    (bad(width=3), "malformed"),
    (bad(version=99), "version"),
    (bad(num_classes=0), "positive integer"),
    # Strict types: each of these would otherwise build something other than its key says.
    (bad(stem={"out_channels": 8, "padding": 1.0}), "padding must be 0 or 1, got 1.0"),
    (bad(stem={"out_channels": 8, "padding": True}), "padding must be 0 or 1, got True"),
    (bad(stem={"out_channels": 8, "bias": "false"}), "stem bias must be true or false"),
    (bad(stem={"out_channels": True}), "positive integer, got True"),
    (bad(stem={"out_channels": 8.0}), "positive integer, got 8.0"),
    (bad(blocks=[{"convs": [{"out_channels": 8, "bn": 0}]}]), "block 1 conv 1 bn must be"),
    (bad(blocks=[{"convs": [{"out_channels": 8}],
                  "transition": [{"op": "conv1x1", "out_channels": 4, "relu": "yes"}]}]),
     "1x1 relu must be true or false"),
    (bad(head={"kind": "gap_linear", "bias": 1}), "head bias must be true or false"),
    (bad(blocks=[{"convs": [{"out_channels": 8}], "transition": [{"op": "dropout", "p": "0.1"}]}]),
     "probability"),
])
def test_malformed_specs_are_rejected(d, message):
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_dict(d)


@pytest.mark.parametrize("d", [
    # 28 -> 14 -> 7 -> 3 -> 1 -> a fifth pool leaves nothing
    bad(blocks=[{"convs": [{"out_channels": 8}], "transition": [{"op": "maxpool"}]}] * 5),
    # unpadded 3x3 convs on a 1x1 map
    bad(input_size=2),
])
def test_impossible_shapes_are_the_planners_to_refuse(d):
    spec = ArchSpec.from_dict(d)  # well-formed data ...
    with pytest.raises(SpecError, match="leaves nothing"):
        plan(spec)  # ... that describes no network


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"spec"', '{"blocks": []}'])
def test_malformed_json_is_a_spec_error(text):
    with pytest.raises(SpecError):
        ArchSpec.from_json(text)


def test_planner_walks_shapes_of_directly_built_specs():
    c = Conv3x3(8, padding=0)
    spec = ArchSpec(stem=c, blocks=(Block((c,) * 13),))  # 28 - 2*14 = 0
    assert spec.validate() is spec  # every field is fine
    with pytest.raises(SpecError, match="block 1 conv 13: a 3x3 conv .* on a 2x2 map"):
        plan(spec)
    ok = ArchSpec(stem=c, blocks=(Block((c,), (MaxPool(), Conv1x1(4))),))
    assert plan(ok.validate()).layers[-1].out_shape == (10,)


def test_validate_checks_directly_built_specs_too():
    with pytest.raises(SpecError, match="padding must be 0 or 1"):
        ArchSpec(stem=Conv3x3(8, padding=1.0), blocks=(Block((Conv3x3(8),)),)).validate()
    with pytest.raises(SpecError, match="has no convolutions and no transition ops"):
        ArchSpec(stem=Conv3x3(8), blocks=(Block(()),)).validate()
    with pytest.raises(SpecError, match="block 1 conv 1 padding must be 0 to 3, got 4"):
        ArchSpec(stem=Conv3x3(8), blocks=(Block((Conv3x3(8, kernel=7, padding=4),)),)).validate()


def test_kernel_sizes_and_pool_only_blocks_plan_by_hand():
    """A 5x5 unit and a block of a pool alone: shapes, parameters and receptive fields as
    computed by hand (RF: 5; pool +1 -> 6, jump 2; 5x5 at jump 2 +8 -> 14; pool +2 -> 16)."""
    spec = REFERENCE["hardmaru_fashion_83k"]()
    p = plan(spec)
    assert [(x.name, x.out_shape, x.params, x.rf, x.jump) for x in p.layers[:6]] == [
        ("conv1", (32, 28, 28), 1 * 32 * 25 + 32, 5, 1), ("relu1", (32, 28, 28), 0, 5, 1),
        ("maxpool1", (32, 14, 14), 0, 6, 2), ("conv2", (64, 14, 14), 32 * 64 * 25 + 64, 14, 2),
        ("relu2", (64, 14, 14), 0, 14, 2), ("maxpool2", (64, 7, 7), 0, 16, 4)]
    assert p.params == 832 + 51_264 + 64 * 7 * 7 * 10 + 10 == 83_466
    assert p.receptive_field == 16
    assert spec.key() == "conv-bn-relu;in1x28;stem:c32k5p2r;/M|c64k5p2r/M;flatten_linear;10"
    # An unpadded 7x7 stem: 28 - 6 = 22, RF 7; the kernel is in the key, 3 is left out.
    small = ArchSpec(stem=Conv3x3(4, kernel=7, padding=0), blocks=(Block((Conv3x3(4),)),))
    assert plan(small).layers[0].out_shape == (4, 22, 22) and plan(small).layers[0].rf == 7
    assert small.key().startswith("conv-bn-relu;in1x28;stem:c4k7p0br;c4br;")


def test_a_3x3_units_json_leaves_the_kernel_out():
    """Specs written before kernel sizes existed read and write byte for byte as before."""
    d = REFERENCE["bn_dropout_16k"]().to_dict()
    assert "kernel" not in d["stem"] and all("kernel" not in c for b in d["blocks"]
                                              for c in b["convs"])
    assert REFERENCE["hardmaru_fashion_83k"]().to_dict()["stem"]["kernel"] == 5
    explicit = json.loads(REFERENCE["bn_dropout_16k"]().to_json())
    explicit["stem"]["kernel"] = 3
    assert ArchSpec.from_dict(explicit) == REFERENCE["bn_dropout_16k"]()


def test_to_dict_holds_only_json_types():
    d = REFERENCE["bn_dropout_16k"]().to_dict()
    # What to_json writes is exactly to_dict; its containers are lists, not tuples.
    assert json.loads(REFERENCE["bn_dropout_16k"]().to_json()) == d
    assert type(d["blocks"]) is list and type(d["blocks"][0]["convs"]) is list
    assert type(d["blocks"][0]["transition"]) is list
    assert d["blocks"][2]["transition"][0] == {"op": "conv1x1", "out_channels": 8, "bn": False,
                                              "relu": True, "bias": True}


def test_spec_module_imports_only_the_errors():
    """The spec is plain data: nothing it imports can import it back."""
    tree = ast.parse(Path(nas.arch.spec.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m and m.split(".")[0] == "nas"] == ["nas.errors"]


# -- bounds: a spec may come from a downloaded study ------------------------------------------
def _spec_dict(blocks: int = 1, convs: int = 1, channels: int = 8) -> dict:
    conv = {"out_channels": channels}
    return {"stem": {"out_channels": 8}, "blocks": [{"convs": [conv] * convs}] * blocks}


def test_json_depth_counts_brackets_outside_strings_only():
    assert nas.arch.spec.json_depth('{"a": [1, {"b": "[[[[\\"]]]]"}]}') == 3
    assert nas.arch.spec.json_depth(REFERENCE["pool_bn_19k"]().to_json()) <= \
        nas.arch.spec.MAX_JSON_DEPTH


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nested 100000 deep, more than 8"),
    (" " * (nas.arch.spec.MAX_SPEC_CHARS + 1), "characters of JSON, more than"),
    ('{"version": 1' + "0" * 5000 + "}", "not valid JSON"),  # Python's int-digits limit
    ('{"stem": {"out_channels": 1' + "0" * 40 + '}, "blocks": [{"convs": [{"out_channels": 8}]}]}',
     "stem out_channels must be a positive integer, got an integer of 133 bits"),
    (123, "must be JSON text, got int"),
])
def test_hostile_json_is_a_spec_error_not_a_crash(text, message):
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_json(text)


@pytest.mark.parametrize("d, message", [
    (_spec_dict(blocks=33), "blocks: 33 is more than the 32"),
    (_spec_dict(blocks=10**6), "blocks: 1,000,000 is more than"),  # checked before building
    (_spec_dict(convs=17), "convs: 17 is more than the 16"),
    (_spec_dict(channels=4097), "out_channels must be a positive integer, got 4097 .at most 4,096"),
    ({**_spec_dict(), "blocks": [{"convs": [{"out_channels": 8}],
                                  "transition": [{"op": "bn"}] * 9}]}, "transition: 9 is more"),
    ({**_spec_dict(), "input_size": 1025}, "input_size"),
    ({**_spec_dict(), "num_classes": 10_001}, "num_classes"),
    ({**_spec_dict(), "in_channels": 65}, "in_channels"),
])
def test_spec_sizes_are_bounded(d, message):
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_dict(d)


def test_a_spec_with_too_many_parameters_has_no_plan():
    from nas.arch.plan import MAX_PARAMS

    spec = ArchSpec.from_dict(_spec_dict(blocks=4, convs=2, channels=4096))
    with pytest.raises(SpecError, match=f"parameters, more than the {MAX_PARAMS:,}"):
        plan(spec)
