"""The plan before the work and a search sized to a time budget: arithmetic by hand."""

from __future__ import annotations

import pytest

from nas.study import selection
from nas.study.budget import (OVERHEAD_S, Rate, StagePlan, describe, fit_budget, hms,
                              parse_duration, plan_stages)
from nas.study.config import SearchConfig

RATE = Rate(train=1000.0, eval=4000.0, device="test cpu")


def test_stages_and_their_time_by_hand():
    cfg = SearchConfig()  # 4-epoch proxy on 10,000 images, 20 epochs on the split, 10k val
    search, final = plan_stages(cfg, candidates=100, finalist_runs=15, n_train=50_000)
    assert (search.runs, search.epochs, search.train_images, search.eval_images) == \
        (100, 4, 10_000, 10_000)
    assert (final.runs, final.epochs, final.train_images) == (15, 20, 50_000)
    # A candidate: 4 x (10,000 / 1,000 + 10,000 / 4,000) s = 50 s, plus the overhead.
    assert search.run_seconds(RATE) == pytest.approx(50 + OVERHEAD_S)
    # A finalist run: 20 x (50 + 2.5) s = 1,050 s.
    assert final.run_seconds(RATE) == pytest.approx(1050 + OVERHEAD_S)
    assert search.images == 4_000_000 and final.images == 15_000_000
    lines = describe([search, final], RATE)
    assert lines[0].startswith("  search: 100 training(s) of 4 epoch(s) on 10,000 images")
    assert "estimated 5 h 47 min on test cpu" in lines[-1]  # 100 x 51 + 15 x 1,051 = 20,865 s


def test_a_time_budget_shrinks_seeds_then_finalists_then_candidates():
    cfg = SearchConfig()
    # 2 h: 6,480 s usable (90 %), of which the finalists may take 60 %, 3,888 s, at 1,051 s a
    # run. Seeds go down to 2 first (5 x 2), then finalists down to 2 (2 x 2 = 4,204 s: still
    # too much), then seeds to 1: 2 x 1 = 2,102 s fits.
    fitted, how = fit_budget(cfg, 2 * 3600, RATE, 50_000)
    assert (fitted.finalists, fitted.finalist_seeds) == (2, 1)
    search_s = 6480 - 2 * 1051
    assert fitted.timeout == pytest.approx(search_s)
    assert fitted.trials == int(search_s // 51)
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
