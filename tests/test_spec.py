from __future__ import annotations

import json

import optuna
import pytest

from nas.search_space import sample_spec
from nas.spec import ArchSpec, Block, Conv1x1, Conv3x3, MaxPool, SpecError
from nas.zoo import REFERENCE


def sampled_specs(n: int, seed: int = 0, valid_only: bool = True) -> list[ArchSpec]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    out = []
    while len(out) < n:
        trial = study.ask()
        spec = sample_spec(trial)
        study.tell(trial, 0.0)
        try:
            spec.validate()
        except SpecError:
            if valid_only:
                continue
        out.append(spec)
    return out


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
    (bad(blocks=[{"convs": []}]), "no convolutions"),
    (bad(blocks=[{"convs": [{"out_channels": 8}], "transition": [{"op": "avgpool"}]}]),
     "unknown transition op"),
    (bad(head={"kind": "mlp"}), "head kind"),
    (bad(order="relu-first"), "order"),
    (bad(width=3), "malformed"),
    (bad(version=99), "version"),
    (bad(num_classes=0), "positive integer"),
    # 28 -> 14 -> 7 -> 3 -> 1 -> a fifth pool leaves nothing
    (bad(blocks=[{"convs": [{"out_channels": 8}], "transition": [{"op": "maxpool"}]}] * 5),
     "leaves nothing"),
    # unpadded 3x3 convs on a 1x1 map
    (bad(input_size=2), "leaves nothing"),
])
def test_impossible_or_malformed_specs_are_rejected(d, message):
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_dict(d)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"spec"', '{"blocks": []}'])
def test_malformed_json_is_a_spec_error(text):
    with pytest.raises(SpecError):
        ArchSpec.from_json(text)


def test_validate_walks_shapes_for_directly_built_specs():
    c = Conv3x3(8, padding=0)
    spec = ArchSpec(stem=c, blocks=(Block((c,) * 13),))  # 28 - 2*14 = 0
    with pytest.raises(SpecError, match="leaves nothing"):
        spec.validate()
    ok = ArchSpec(stem=c, blocks=(Block((c,), (MaxPool(), Conv1x1(4))),))
    assert ok.validate() is ok


def test_to_dict_is_plain_json():
    d = REFERENCE["bn_dropout_16k"]().to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["blocks"][2]["transition"][0] == {"op": "conv1x1", "out_channels": 8, "bn": False,
                                              "relu": True, "bias": True}
