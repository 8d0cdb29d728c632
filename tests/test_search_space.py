from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial

from nas.arch.plan import param_count
from nas.arch.space import params_of, sample_spec, smallest_spec
from nas.arch.zoo import REFERENCE, SPACE_MEMBERS
from tests.helpers import sampled_specs


@pytest.mark.parametrize("name", SPACE_MEMBERS)
def test_reference_networks_are_members(name):
    spec = REFERENCE[name]()
    assert sample_spec(FixedTrial(params_of(spec))) == spec


def test_labels_are_stable():
    """Renaming a label silently breaks every stored study: this list changes deliberately."""
    params = params_of(REFERENCE["pool_bn_19k"]())
    assert set(params) == {
        "order", "bn", "bias", "dropout", "dropout_at", "n_blocks", "stem_channels", "head",
        "b1_convs", "b1_channels", "b1_c1_pad", "b1_pool", "b1_1x1",
        "b2_convs", "b2_channels", "b2_c1_pad", "b2_c2_pad", "b2_pool", "b2_1x1",
        "b3_convs", "b3_channels", "b3_c1_pad", "b3_c2_pad", "b3_pool", "b3_1x1"}


def test_smallest_spec_is_smallest_and_the_space_is_large():
    specs = sampled_specs(300, seed=4)
    smallest = param_count(smallest_spec())
    counts = [param_count(s) for s in specs]
    assert smallest <= min(counts)
    assert len({s.key() for s in specs}) > 290  # practically no repeats: search matters
    assert min(counts) < 20_000 < max(counts)  # the budget cuts through the space


def test_params_of_rejects_non_members():
    from dataclasses import replace

    spec = REFERENCE["bn_dropout_16k"]()
    odd = replace(spec, stem=replace(spec.stem, out_channels=7))
    with pytest.raises(ValueError):
        params_of(odd)


def test_enqueued_reference_is_sampled_exactly():
    study = optuna.create_study()
    spec = REFERENCE["bn_dropout_16k"]()
    study.enqueue_trial(params_of(spec))
    trial = study.ask()
    assert sample_spec(trial) == spec
