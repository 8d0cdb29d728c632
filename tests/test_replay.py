"""``nas.replay``: an interrupted replay resumes without retraining the seeds it finished."""

from __future__ import annotations

import json

import pytest

from nas.cli import replay
from nas.cli.common import run


def _replay(capsys, tmp_path, data_dir, *argv: str) -> tuple[str, dict]:
    with pytest.raises(SystemExit) as e:
        run(replay.main, "nas.replay", ["--spec", "bn_dropout_16k", "--data-dir", str(data_dir),
                                        "--out", str(tmp_path / "r"), "--no-progress", *argv])
    assert e.value.code == 0
    out = capsys.readouterr().out
    return out, json.loads((tmp_path / "r" / "report.json").read_text())


def test_a_resumed_replay_retrains_only_the_missing_or_different_seeds(capsys, tmp_path,
                                                                     tiny_mnist_dir,
                                                                     monkeypatch):
    trained: list[int] = []
    real_train = replay.train

    def counting_train(spec, train_split, test_split, cfg, *args, **kwargs):
        trained.append(cfg.seed)
        return real_train(spec, train_split, test_split, cfg, *args, **kwargs)

    monkeypatch.setattr(replay, "train", counting_train)
    _, first = _replay(capsys, tmp_path, tiny_mnist_dir, "--seeds", "2", "--epochs", "1")
    assert trained == [0, 1]

    # Seed 1 lost (as if killed while writing it), one more seed asked for: seed 0 is reused
    # with its recorded numbers, seeds 1 and 2 train.
    (tmp_path / "r" / "seed1.pt").unlink()
    _, second = _replay(capsys, tmp_path, tiny_mnist_dir, "--seeds", "3", "--epochs", "1")
    assert trained == [0, 1, 1, 2]
    assert second["test_acc_final"][0] == first["test_acc_final"][0]
    assert second["seconds"][0] == first["seconds"][0]
    assert second["test_acc_curves"][0] == first["test_acc_curves"][0]
    assert len(second["test_acc_final"]) == 3 and second["seeds"] == [0, 1, 2]

    # Other settings are another run: nothing is reused.
    _replay(capsys, tmp_path, tiny_mnist_dir, "--seeds", "2", "--epochs", "2")
    assert trained == [0, 1, 1, 2, 0, 1]


def test_a_spec_replays_with_a_recipe_file(capsys, tmp_path, tiny_mnist_dir):
    """--recipe: a search's settings (an exported recipe.json) on a hand design; the rest of
    the settings default; a bad file is one line."""
    from nas.training.trainer import TrainConfig
    from tests.test_cli import assert_one_line_error, call

    recipe = tmp_path / "recipe.json"  # the shape nas.export writes
    recipe.write_text(json.dumps({"train_config": {"lr": 0.2, "label_smoothing": 0.05,
                                                   "batch_size": 64}, "data": "..."}))
    _, report = _replay(capsys, tmp_path, tiny_mnist_dir, "--seeds", "1", "--epochs", "1",
                        "--recipe", str(recipe))
    got = report["train_config"]
    assert (got["lr"], got["label_smoothing"], got["batch_size"], got["epochs"]) == \
        (0.2, 0.05, 64, 1)
    assert got["weight_decay"] == TrainConfig().weight_decay  # not in the recipe: default
    recipe.write_text(json.dumps({"lr": -1}))
    assert_one_line_error(*call(capsys, "replay", "--spec", "bn_dropout_16k", "--recipe",
                                str(recipe)), "--recipe")
    recipe.write_text(json.dumps({"data": "no settings here"}))
    assert_one_line_error(*call(capsys, "replay", "--spec", "bn_dropout_16k", "--recipe",
                                str(recipe)), "holds no training setting")
    recipe.write_text("[1, 2")
    assert_one_line_error(*call(capsys, "replay", "--spec", "bn_dropout_16k", "--recipe",
                                str(recipe)), "not training settings")
    code, err = call(capsys, "replay", "--recipe", str(recipe))
    assert code == 2 and "--recipe goes with --spec" in err


def test_sigterm_ends_a_replay_in_one_line_and_its_seeds_stay(tmp_path, tiny_mnist_dir):
    """Was: a replay had no signal handling, so SIGTERM killed it without a word."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    p = subprocess.Popen([sys.executable, "-m", "nas.replay", "--spec", "bn_dropout_16k",
                          "--data-dir", str(tiny_mnist_dir), "--epochs", "200", "--seeds", "2",
                          "--no-progress", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)  # past the imports and the data, into seed 0's training
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    assert err.strip().splitlines() == [
        "python -m nas.replay: interrupted by SIGTERM; what was stored stays stored, run the "
        "same command to go on"]
