"""The plan before the work and a search sized to a time budget: arithmetic by hand."""

from __future__ import annotations

import pytest

from nas.study import selection
from nas.study.budget import (OVERHEAD_S, Rate, StagePlan, describe, fit_budget,
                              fit_finalists, hms, own_run_seconds, parse_duration, plan_stages)
from nas.study.config import SearchConfig

RATE = Rate(train=1000.0, eval=4000.0, device="test cpu")


def test_stages_and_their_time_by_hand():
    cfg = SearchConfig()  # 4-epoch proxy on 20,000 images, 20 epochs on the split, 10k val
    search, final = plan_stages(cfg, candidates=100, finalist_runs=15, n_train=50_000)
    assert (search.runs, search.epochs, search.train_images, search.eval_images) == \
        (100, 4, 20_000, 10_000)
    assert (final.runs, final.epochs, final.train_images) == (15, 20, 50_000)
    # A candidate: 4 x (20,000 / 1,000 + 10,000 / 4,000) s = 90 s, plus the overhead.
    assert search.run_seconds(RATE) == pytest.approx(90 + OVERHEAD_S)
    # A finalist run: 20 x (50 + 2.5) s = 1,050 s.
    assert final.run_seconds(RATE) == pytest.approx(1050 + OVERHEAD_S)
    assert search.images == 8_000_000 and final.images == 15_000_000
    lines = describe([search, final], RATE)
    assert lines[0].startswith("  search: 100 training(s) of 4 epoch(s) on 20,000 images")
    assert "estimated 6 h 54 min on test cpu" in lines[-1]  # 100 x 91 + 15 x 1,051 = 24,865 s


def test_a_time_budget_shrinks_seeds_then_finalists_then_candidates():
    cfg = SearchConfig()
    # 2 h: 6,480 s usable (90 %), of which the finalists may take 60 %, 3,888 s, at 1,051 s a
    # run. Seeds go down to 2 first (5 x 2), then finalists down to 2 (2 x 2 = 4,204 s: still
    # too much), then seeds to 1: 2 x 1 = 2,102 s fits.
    fitted, how = fit_budget(cfg, 2 * 3600, RATE, 50_000)
    assert (fitted.finalists, fitted.finalist_seeds) == (2, 1)
    search_s = 6480 - 2 * 1051
    assert fitted.timeout == pytest.approx(search_s)
    assert fitted.trials == int(search_s // 91)  # 48 candidates of 91 s
    assert "then 2 finalist(s) x 1 seed(s)" in how
    # A budget below two candidates is refused in words.
    with pytest.raises(ValueError, match="fewer than 2 candidates"):
        fit_budget(cfg, 90, RATE, 50_000)
    # A small budget drops the finalist stage, and says so.
    fitted, how = fit_budget(cfg, 1200, RATE, 50_000)
    assert fitted.finalists == 0 and "no finalist stage" in how
    # Plenty of time changes nothing but the search stage's safety timeout.
    fitted, _ = fit_budget(cfg, 100 * 3600, RATE, 50_000)
    assert (fitted.trials, fitted.finalists, fitted.finalist_seeds) == (100, 5, 3)


def test_a_finalist_run_costs_what_its_own_search_stage_epochs_say():
    search, final = plan_stages(SearchConfig(), 1, 1, n_train=50_000)
    # The reference's proxy epoch: 20,000 / 1,000 + 10,000 / 4,000 = 22.5 s. A candidate whose
    # epochs took 45 s is twice as slow: its full run 2 x 1,050 s, plus the overhead once.
    assert own_run_seconds([44.0, 46.0], search, final, RATE) == pytest.approx(2101.0)
    assert own_run_seconds([22.5] * 4, search, final, RATE) == pytest.approx(1051.0)
    # Nothing recorded: the reference's own estimate.
    assert own_run_seconds([], search, final, RATE) == final.run_seconds(RATE)


def test_the_finalists_are_sized_again_from_their_own_runs():
    # 3 finalists of 1,000 s, 2,000 s and 500 s a run, 3 seeds each, nothing done yet.
    runs = [1000.0, 2000.0, 500.0]
    # Plenty of time (10,500 s of work fits in 90 % of 12,000 s): nothing changes, no words.
    fit = fit_finalists(3, 3, runs, [0, 0, 0], 12_000, workers=1)
    assert (fit.finalists, fit.seeds, fit.seconds, fit.longest_s, fit.how) == \
        (3, 3, 10_500.0, 2000.0, "")
    # 6,000 s left, 5,400 usable: 3 seeds (10,500) > 2 seeds (7,000) > ... then the order of
    # fit_budget: seeds to 2, then finalists to 2 (2 x 3,000 = 6,000: too much), then 1 seed:
    # 3,000 s fits.
    fit = fit_finalists(3, 3, runs, [0, 0, 0], 6000, workers=1)
    assert (fit.finalists, fit.seeds, fit.seconds) == (2, 1, 3000.0)
    assert fit.how.startswith("--time-budget: 2 finalist(s) x 1 seed(s) fit in the 1 h 40 min")
    # Two workers share the work out (5,000 s left, 4,500 usable: 3 seeds are 10,500 / 2 s,
    # too much; 2 seeds 7,000 / 2 s fit), but the longest run must fit whole.
    fit = fit_finalists(3, 3, runs, [0, 0, 0], 5000, workers=2)
    assert (fit.finalists, fit.seeds, fit.seconds) == (3, 2, 3500.0)
    fit = fit_finalists(1, 1, [4600.0], [0], 5000, workers=2)
    assert fit.finalists == 0
    # Runs already done cost nothing: the first finalist has its 3 seeds, so 2 seeds of the
    # other two (5,000 s) fit in 5,400 s.
    fit = fit_finalists(3, 3, runs, [3, 0, 0], 6000, workers=1)
    assert (fit.finalists, fit.seeds, fit.seconds) == (3, 2, 5000.0)
    # The best candidate's run alone is longer than what is left: no finalist stage, in words.
    fit = fit_finalists(3, 3, [9000.0, 10.0], [0, 0], 6000, workers=2)
    assert fit.finalists == 0 and "no finalist run fits" in fit.how
    assert "the pick is the best search-stage candidate" in fit.how
    # Fewer candidates than finalists asked for is not the budget's doing: no words.
    assert fit_finalists(5, 1, [10.0], [0], 6000, workers=1).how == ""


def test_durations_and_their_words():
    assert parse_duration("90") == 90 and parse_duration("90s") == 90
    assert parse_duration("20m") == 1200 and parse_duration("1.5h") == 5400
    for bad in ("", "abc", "-5m", "0", "inf"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert hms(42) == "42 s" and hms(187) == "3 min 07 s" and hms(3900) == "1 h 05 min"


def test_a_stage_without_runs_is_not_described():
    assert describe([StagePlan("finalists", 0, 20, 50_000, 10_000)], RATE)[0].startswith(
        "  estimated 0 s")


def test_a_time_budget_ends_a_real_search_in_time_with_a_pick(tmp_path, tiny_mnist_dir):
    import time

    from nas.study import record
    from nas.study.runner import search
    from tests.helpers import tiny_config

    cfg = tiny_config(tmp_path, tiny_mnist_dir, trials=50, finalists=2, finalist_seeds=2,
                      time_budget=40.0)
    t0 = time.monotonic()
    study = search(cfg, progress=False)
    took = time.monotonic() - t0
    assert took < 40.0 * 1.25  # its own estimate may be off; the deadlines are not
    trained = record.count_trained(study)
    assert 2 <= trained < 50  # sized down from 50 candidates
    assert selection.select_trial(study, None) is not None  # a pick, finalists or not


def test_the_whole_runs_time_left_by_hand():
    from nas.study.runner import Eta

    class Bar:  # what tqdm's format_dict holds
        def __init__(self, n, initial, total, elapsed):
            self.format_dict = {"n": n, "initial": initial, "total": total, "elapsed": elapsed}

    eta = Eta(stage_s=1000.0, after_s=600.0)
    # Nothing finished yet: the plan's own estimate for the stage, then the later stages.
    assert eta.words(Bar(0, 0, 10, 5.0)) == "whole run ~26 min 40 s left"
    # A resumed stage, 4 of 10 done before: 40 % of the stage's estimate is already done.
    assert eta.words(Bar(4, 4, 10, 1.0)) == f"whole run ~{hms(600 + 600)} left"
    # Two finished here in 300 s: 150 s each for the 4 left, plus the later stages.
    assert eta.words(Bar(6, 4, 10, 300.0)) == f"whole run ~{hms(4 * 150 + 600)} left"
    assert eta.words(Bar(10, 4, 10, 900.0)) == f"whole run ~{hms(600)} left"
    # A time budget ends the run at its end, whatever the estimates say.
    import time
    soon = Eta(stage_s=1000.0, after_s=600.0, end=time.time() + 300.5)
    assert soon.words(Bar(0, 0, 10, 5.0)) in ("whole run ~5 min 00 s left",
                                             "whole run ~4 min 59 s left")
    assert Eta(1000.0, 600.0, end=time.time() - 5).words(Bar(0, 0, 10, 5.0)) == \
        "whole run ~0 s left"


def _candidates(study, rows):
    """Search-stage candidates (accuracy, seconds of each of their 4 epochs), each its own
    16k-parameter architecture."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from nas.arch.zoo import bn_dropout_16k
    from nas.study import record

    for i, (acc, epoch_s) in enumerate(rows):
        spec = bn_dropout_16k(dropout=i / 100)
        study.add_trial(create_trial(
            value=acc, params={"x": float(i)}, distributions={"x": FloatDistribution(0, 9)},
            user_attrs={record.OUTCOME: record.COMPLETE, record.SPEC: spec.to_json(),
                        record.ARCH_KEY: spec.key(), record.PARAMS: 16_000,
                        record.EPOCH_SECONDS: [epoch_s] * 4}))


def test_the_finalist_stage_under_a_budget_queues_what_fits_of_its_own_candidates():
    import optuna
    from optuna.trial import TrialState

    from nas.study import record
    from nas.study.stages import FinalistStage

    study = optuna.create_study(direction="maximize")
    _candidates(study, [(0.99, 30.0), (0.98, 10.0), (0.97, 10.0)])
    stage = FinalistStage(SearchConfig(finalists=3, finalist_seeds=3))

    def run_seconds(t):  # a run costs 100 x its candidate's epoch
        return 100 * record.epoch_seconds_of(t)[0]

    # 3,000 s, 1,000 s, 1,000 s a run: 3 x 3 seeds (15,000 s) do not fit in 90 % of 10,000 s;
    # 2 seeds (10,000 s) neither; 2 finalists x 2 seeds (8,000 s) do.
    fitted, window = stage.within(study, 10_000, 1, run_seconds)
    assert (fitted.cfg.finalists, fitted.cfg.finalist_seeds) == (2, 2)
    assert (window.seconds, window.last_start_s) == (8000.0, 3000.0)
    assert "2 finalist(s) x 2 seed(s)" in window.how
    assert fitted.queue(study) == 4
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(record.finalist_of(t) for t in queued) == [0, 0, 1, 1]
    # The search stage is bounded by its timeout, not here.
    from nas.study.stages import SearchStage
    assert SearchStage(SearchConfig()).within(study, 10.0, 1, run_seconds)[1] is None


def test_the_search_stage_keeps_the_time_its_best_candidates_need_as_finalists():
    import time

    import optuna

    from nas.study.runner import Deadline, Reserve

    cfg = SearchConfig(finalists=1, finalist_seeds=2)  # 20 epochs on the split, 1 worker
    end = time.time() + 100_000.0
    reserve = Reserve(cfg, RATE, 50_000, end)
    study = optuna.create_study(direction="maximize")
    # Nothing trained yet: the reference's run, 1,051 s, twice, kept with the margin, and
    # one more candidate (91 s) before it.
    assert reserve.search_until(study) == pytest.approx(end - 2 * 1051 / 0.9 - 91)
    _candidates(study, [(0.95, 45.0), (0.90, 5.0)])
    # The best so far is twice the reference's 22.5 s an epoch: its runs, 2,101 s each.
    assert reserve.search_until(study) == pytest.approx(end - 2 * 2101 / 0.9 - 91)
    # A deadline is the earlier of its time and what the reserve keeps.
    assert Deadline(end - 10_000, reserve).until(study) == pytest.approx(end - 10_000)
    assert Deadline(end, reserve).until(study) == pytest.approx(end - 2 * 2101 / 0.9 - 91)
    assert Deadline().until(study) is None and not Deadline().passed(study)
    # Too late for them whatever the search stage does: it keeps nothing (its timeout rules).
    late = Reserve(cfg, RATE, 50_000, time.time() + 2 * 2101 / 0.9 - 60)
    assert late.search_until(study) is None
    assert Deadline(0.0).passed(study) and Deadline(0.0).seconds_left(study) == 0.0
    assert Deadline(end, reserve).seconds_left(study) > 0
