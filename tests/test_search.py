from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from nas.arch.space import params_of, random_members
from nas.cli.common import UserError
from nas.cli.search import parse_args
from nas.study.config import SearchConfig, summary
from nas.study.record import count_trained, was_trained
from nas.study.runner import search
from tests.helpers import tiny_config


def test_search_trains_exactly_n_and_resumes_without_losing_trials(tmp_path, tiny_mnist_dir):
    cfg = tiny_config(tmp_path, tiny_mnist_dir, max_params=12_000)
    study = search(cfg, progress=False)
    first = study.get_trials()
    assert count_trained(study) == 3
    for t in first:
        if was_trained(t):
            assert t.user_attrs["params"] <= 12_000
        elif t.user_attrs.get("outcome") == "rejected":
            assert t.state == TrialState.PRUNED and "reason" in t.user_attrs
            assert "val_acc" not in t.user_attrs  # never trained
    # Same command, more trials: resumes, earlier trials untouched.
    study = search(replace(cfg, trials=5), progress=False)
    again = study.get_trials()
    assert count_trained(study) == 5
    assert [(t.number, t.state, t.value, t.user_attrs) for t in again[:len(first)]] == \
        [(t.number, t.state, t.value, t.user_attrs) for t in first]
    # Asking for what is already there trains nothing.
    n = len(again)
    assert len(search(replace(cfg, trials=4), progress=False).get_trials()) == n
    text = summary(study, cfg)
    assert "5 trained" in text and "python -m nas.replay" in text
    epochs = sum(len(t.user_attrs.get("val_acc", [])) for t in again)
    assert epochs > 5  # pruning may stop some early, but none is pruned before epoch 1
    assert f"in the search stage ({epochs} epochs)" in text
    assert f"compute: {epochs / cfg.full_schedule.epochs:.1f} full-schedule trainings" in text


def test_study_records_dataset_budget_and_versions(tmp_path, tiny_mnist_dir):
    cfg = tiny_config(tmp_path, tiny_mnist_dir, trials=1)
    study = search(cfg, progress=False)
    attrs = study.user_attrs
    assert attrs["max_params"] == 20_000 and attrs["epochs"] == 2
    assert attrs["dataset"]["validation"] == 200 and attrs["dataset"]["name"] == "MNIST"
    assert {"torch", "optuna", "nas"} <= attrs["versions"].keys()
    assert attrs["last_command"]["settings"]["trials"] == 1


def test_resuming_with_other_settings_is_refused(tmp_path, tiny_mnist_dir):
    cfg = tiny_config(tmp_path, tiny_mnist_dir, trials=1)
    search(cfg, progress=False)
    with pytest.raises(UserError, match="max_params differ"):
        search(replace(cfg, max_params=15_000, trials=2), progress=False)
    study = optuna.load_study(study_name="t", storage=cfg.storage)
    assert count_trained(study) == 1


def test_budget_below_the_whole_space_stops_at_once(tmp_path, tiny_mnist_dir):
    with pytest.raises(UserError, match="below the smallest network"):
        search(tiny_config(tmp_path, tiny_mnist_dir, max_params=500), progress=False)
    assert not (tmp_path / "nas.db").exists() or optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'nas.db'}") == []


def test_parse_args_defaults_and_study_name(tmp_path, monkeypatch):
    """No options: SearchConfig's own defaults (the command line keeps no copy of them that
    could drift), and a study name made of the budget and the schedule."""
    monkeypatch.chdir(tmp_path)  # the default storage, ./nas.db, holds no study here
    cfg, progress = parse_args([])
    assert cfg == replace(SearchConfig(), study_name=cfg.study_name) and progress
    assert cfg.study_name == f"mnist-{cfg.max_params}p-{cfg.full_schedule.epochs}e"
    cfg, _ = parse_args(["--max-params", "8000", "--epochs", "15", "--no-progress"])
    assert cfg.study_name == "mnist-8000p-15e" and cfg.full_schedule.epochs == 15


def test_resuming_with_other_data_is_refused(tmp_path, tiny_mnist_dir):
    from tests.helpers import write_mnist

    cfg = tiny_config(tmp_path, tiny_mnist_dir, trials=1)
    search(cfg, progress=False)
    other = write_mnist(tmp_path / "other", n_train=700)  # another dataset, same layout
    with pytest.raises(UserError, match="data.sha256, data.train differ"):
        search(replace(cfg, data_dir=str(other), trials=2), progress=False)


def test_the_sampler_is_seeded_per_trial():
    """Same --seed, same proposals in one run; a resumed run (later trial numbers) or a
    second process proposes new ones instead of replaying the first run's draws."""
    from nas.arch.space import sample_spec
    from nas.study.config import make_sampler

    def keys(seed: int, study: optuna.Study | None = None, n: int = 4) -> list[str]:
        study = study or optuna.create_study(sampler=make_sampler("random", seed))
        out = []
        for _ in range(n):
            t = study.ask()
            out.append(sample_spec(t).key())
            study.tell(t, 0.0)
        return out

    assert keys(0) == keys(0) and keys(0) != keys(1)
    study = optuna.create_study(sampler=make_sampler("random", 0))
    first = keys(0, study)
    # A restart: a new sampler object on the same study, same --seed.
    study.sampler = make_sampler("random", 0)
    assert not set(keys(0, study)) & set(first)


def test_the_search_stage_trains_the_proxy_never_longer_than_the_full_schedule(
        tmp_path, monkeypatch):
    """--proxy-epochs is the search stage's schedule, cut to --epochs; 0 switches a proxy
    off (the full schedule, every training image). The defaults do the same."""
    monkeypatch.chdir(tmp_path)  # the default storage, ./nas.db, holds no study here
    def stage(*argv: str) -> tuple[int, int | None, int]:
        cfg, _ = parse_args([*argv, "--no-progress"])
        return cfg.proxy_schedule().epochs, cfg.proxy_subset, cfg.full_schedule.epochs

    assert stage("--epochs", "15", "--proxy-epochs", "4", "--proxy-subset", "3000") == \
        (4, 3000, 15)
    assert stage("--epochs", "2", "--proxy-epochs", "4")[0] == 2
    assert stage("--epochs", "15", "--proxy-epochs", "0", "--proxy-subset", "0") == \
        (15, None, 15)
    cfg, _ = parse_args([])  # only the schedule differs from the finalists' training
    assert cfg.proxy_schedule() == replace(cfg.full_schedule, epochs=cfg.proxy_schedule().epochs)
    assert cfg.proxy_schedule().epochs <= cfg.full_schedule.epochs


def test_the_default_design_is_space_2_with_the_training_sweep(tmp_path, monkeypatch):
    """What a new study gets when the command line says nothing of the design: version 2 of
    the space, the training sweep, a 4-epoch proxy on 20,000 images (README "Results")."""
    monkeypatch.chdir(tmp_path)
    cfg, _ = parse_args([])
    assert (cfg.space, cfg.train_space, cfg.proxy_epochs, cfg.proxy_subset) == \
        (2, "sweep", 4, 20_000)


def test_a_resumed_study_keeps_the_design_it_was_made_with(tmp_path, tiny_mnist_dir, capsys):
    """The command that made a study with the earlier defaults (version 1, a fixed recipe)
    goes on resuming it: left off the command line, the space, the training space and the
    proxy come from the study, and the search says so in one line once the study has opened;
    given, they are what the command says; a new study in the same storage gets the
    defaults; a recorded value of the wrong kind is not taken."""
    from nas.study import record as rec

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    cfg = tiny_config(tmp_path, tiny_mnist_dir, study_name="old", trials=1)
    search(cfg, progress=False)
    base = ["--storage", url, "--data-dir", str(tiny_mnist_dir)]

    def design(*argv: str) -> tuple:
        cfg, _ = parse_args([*base, *argv])
        return cfg.space, cfg.train_space, cfg.proxy_epochs, cfg.proxy_subset, cfg.kept_design

    assert design("--study-name", "old") == (1, "fixed", None, None, (
        "space", "train_space", "proxy_epochs", "proxy_subset"))
    assert design("--study-name", "old", "--space", "2", "--proxy-subset", "300") == \
        (2, "fixed", None, 300, ("train_space", "proxy_epochs"))
    assert design("--study-name", "new") == (2, "sweep", 4, 20_000, ())
    assert capsys.readouterr().err == ""  # parsing says nothing: the search does
    search(replace(cfg, trials=2, kept_design=("space", "proxy_subset")), progress=False)
    assert capsys.readouterr().err.strip().splitlines()[0] == (
        "resuming study 'old' with the design it was made with: --space 1 --proxy-subset 0")
    study = optuna.load_study(study_name="old", storage=url)
    study.set_user_attr(rec.IDENTITY, {**rec.identity_of(study), "space": "../x",
                                       "proxy_subset": -5})
    assert design("--study-name", "old")[:4] == (2, "fixed", None, 20_000)


def test_lr_and_batch_size_ask_for_a_fixed_recipe(tmp_path, monkeypatch, capsys):
    """The training sweep chooses the learning rate and batch size per candidate: setting
    them on a sweeping search would be silently ignored, so it is refused in one line."""
    monkeypatch.chdir(tmp_path)
    for flag in ("--lr", "--batch-size"):
        with pytest.raises(SystemExit) as e:
            parse_args([flag, "64"])
        assert e.value.code == 2 and "add --train-space fixed" in capsys.readouterr().err
    cfg, _ = parse_args(["--lr", "0.1", "--batch-size", "64", "--train-space", "fixed"])
    assert (cfg.full_schedule.lr, cfg.full_schedule.batch_size) == (0.1, 64)


def test_a_study_that_predates_the_proxies_resumes_only_without_them(tmp_path, tiny_mnist_dir):
    """A study whose identity has no proxy settings trained every candidate on the full
    schedule and split: resuming it with the default proxies would mix two kinds of trial."""
    from nas.study import record as rec


    cfg = tiny_config(tmp_path, tiny_mnist_dir, trials=1)
    study = search(cfg, progress=False)
    identity = dict(rec.identity_of(study))
    del identity["proxy_epochs"], identity["proxy_subset"]  # as an earlier release wrote it
    study.set_user_attr(rec.IDENTITY, identity)
    with pytest.raises(UserError, match="proxy_epochs, proxy_subset differ"):
        search(replace(cfg, trials=2, proxy_epochs=1, proxy_subset=300), progress=False)
    assert count_trained(search(replace(cfg, trials=2), progress=False)) == 2


def test_a_new_study_starts_with_random_members_that_fit_the_budget(tmp_path, tiny_mnist_dir):
    """TPE's random startup, drawn among the members under the budget: at 6,000 parameters
    (1 in 20 uniform draws) the first trials are trained, none rejected; a resumed study
    queues nothing more."""
    cfg = tiny_config(tmp_path, tiny_mnist_dir, trials=3, max_params=6_000)
    study = search(cfg, progress=False)
    first = study.get_trials()
    assert [t.params for t in first[:3]] == [params_of(s) for s in random_members(3, 6_000, 0)]
    assert all(was_trained(t) for t in first[:3]) and len(first) == 3
    more = search(replace(cfg, trials=5), progress=False).get_trials()
    assert count_trained(study) == 5 and more[:3] == first[:3]
    assert not [t for t in more if t.state == TrialState.WAITING]
