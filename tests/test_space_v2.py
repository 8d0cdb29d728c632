"""Search space version 2: widths scaled to fill the budget, one label per network, a
receptive-field floor for global-pool heads, starting members spread over the strata."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial

from nas.arch.plan import plan
from nas.arch.space import (MAX_WIDTH, V2_HEADS, rejection, sample_shape_v2, sample_spec_v2,
                            smallest, start_members)
from nas.arch.spec import ArchSpec, Block, Conv3x3, Head, MaxPool, SpecError
from nas.study import selection


def _draws(n: int, seed: int):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    return [study.ask() for _ in range(n)]


@pytest.mark.parametrize("budget", [5_000, 8_000, 20_000])
def test_every_draw_is_scaled_to_the_largest_width_that_fits(budget):
    feasible = []
    for trial in _draws(60, seed=budget):
        shape = sample_shape_v2(trial)
        scale = shape.largest_scale(budget)
        try:
            params = plan(shape.at(scale).validate()).params
        except SpecError:
            continue  # shapes that collapse at any width: the objective rejects them
        if params > budget:
            continue  # even the narrowest is over (e.g. a flatten head on a big map)
        feasible.append(params / budget)
        if scale < MAX_WIDTH:  # one step wider would not fit: the scale is the largest
            assert plan(shape.at(scale + 1)).params > budget
    assert len(feasible) >= 20
    # What "fills the budget" means in numbers (version 1 at 8k: a median of ~63 %).
    assert sorted(feasible)[len(feasible) // 2] > 0.8


def test_one_label_per_network():
    for trial in _draws(80, seed=3):
        spec = sample_spec_v2(trial, 8_000)
        units = [spec.stem] + [c for b in spec.blocks for c in b.convs]
        if trial.params["v2_bn"] != "conv":
            assert "v2_order" not in trial.params and spec.order == "conv-bn-relu"
        assert all(not (c.bn and c.bias) for c in units)  # no bias in front of BatchNorm
        assert spec.head.kind in V2_HEADS and spec.head.kind != "gap_conv"
        # The same suggestions give the same network (what a finalist relies on).
        assert sample_spec_v2(FixedTrial(trial.params), 8_000) == spec


def test_receptive_field_floor_for_global_pool_heads_by_hand():
    c = Conv3x3(8)
    # stem 3x3 -> 3, 3x3 -> 5, pool -> 6 (jump 2), 3x3 -> 10: below 24 for a 28x28 digit.
    shallow = ArchSpec(stem=c, blocks=(Block((c,), (MaxPool(),)), Block((c,))),
                       head=Head("gap_linear"))
    assert plan(shallow).receptive_field == 10
    assert rejection(2, plan(shallow)) == \
        "receptive field 10 < 24 before a global-pool head"
    assert rejection(1, plan(shallow)) is None  # version 1 had no floor
    flat = ArchSpec(stem=c, blocks=shallow.blocks, head=Head("flatten_linear"))
    assert rejection(2, plan(flat)) is None  # its classifier sees every position itself
    # 3 -> 5 -> 6 (pool, jump 2) -> 10 -> 14 -> 16 (pool, jump 4) -> 24 -> 32: enough.
    deep = ArchSpec(stem=c, blocks=(Block((c,), (MaxPool(),)), Block((c, c), (MaxPool(),)),
                                    Block((c, c))), head=Head("gap_linear"))
    assert plan(deep).receptive_field == 32 and rejection(2, plan(deep)) is None


def test_start_members_cover_distinct_strata_and_fit():
    members = start_members(2, 10, 8_000, seed=0)
    assert len(members) == 10
    strata, keys = set(), set()
    for params in members:
        spec = sample_spec_v2(FixedTrial(params), 8_000)
        p = plan(spec.validate())
        assert p.params <= 8_000 and rejection(2, p) is None
        strata.add((len(spec.blocks), params["v2_bn"], spec.head.kind))
        keys.add(spec.key())
    assert len(strata) == 10 and len(keys) == 10
    assert start_members(2, 10, 8_000, seed=0) == members  # seeded: the same every time


def test_the_smallest_member_is_no_larger_than_any_draw():
    counts = []
    for trial in _draws(200, seed=5):
        try:  # a tiny budget: every draw at (or near) the narrowest widths
            counts.append(plan(sample_spec_v2(trial, 500).validate()).params)
        except SpecError:
            continue
    assert plan(smallest(2)).params == 386 <= min(counts)  # 40 + 2 x 148 + 50, by hand


def test_a_version_2_study_searches_keeps_its_version_and_retrains_its_finalists(
        tmp_path, tiny_mnist_dir):
    from dataclasses import replace

    from nas.cli.common import UserError
    from nas.study import record
    from nas.study.runner import search
    from tests.helpers import tiny_config

    cfg = tiny_config(tmp_path, tiny_mnist_dir, max_params=8_000, space=2, finalists=1,
                      finalist_seeds=2, trials=2)
    study = search(cfg, progress=False)
    assert study.user_attrs["identity"]["space"] == 2
    trained = [t for t in study.get_trials() if record.was_trained(t)]
    assert len(trained) == 2
    for t in trained:
        assert all(name.startswith("v2_") for name in t.params)
        assert 0.5 * 8_000 < t.user_attrs["params"] <= 8_000  # the budget is used
    (final,) = selection.finalists(study)
    assert len(final.runs) == 2
    source = study.trials[final.runs[0].user_attrs["finalist_of"]]
    assert final.key == source.user_attrs["arch_key"]  # the same network, retrained
    # Resuming with the other version is refused, and the line says which to pass.
    with pytest.raises(UserError, match="pass --space 2"):
        search(replace(cfg, space=1, trials=3), progress=False)
