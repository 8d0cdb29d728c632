"""Export and the study's artifacts: a self-contained ONNX that takes raw uint8 pixels and gives
the replay's accuracy, artifacts on trials and replays, a study that still works when moved."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from nas.arch.build import build
from nas.arch.space import params_of
from nas.arch.zoo import pool_bn_19k
from nas.cli import export, replay
from nas.cli.common import run
from nas.export.onnx import INPUT_NAME
from nas.study import record, selection, uploads
from nas.study.artifacts import default_dir, open_store
from nas.study.runner import search
from nas.training import checkpoint
from nas.training.augment import normalize
from nas.training.data import load_mnist
from tests.helpers import tiny_config


def call(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        run(main, "nas", argv)
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    return out.out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, tiny_mnist_dir):
    """A study directory (database + artifact folder) after a search and a 1-seed fp32
    replay of its best trial."""
    root = tmp_path_factory.mktemp("study")
    (root / "proj").mkdir()
    cfg = tiny_config(root / "proj", tiny_mnist_dir, trials=2, max_params=12_000)
    study = search(cfg, progress=False)  # starts with members that fit: none rejected
    study.enqueue_trial(params_of(pool_bn_19k()))  # 19,378 parameters: rejected, then one more
    search(replace(cfg, trials=3), progress=False)
    with pytest.raises(SystemExit) as e:
        run(replay.main, "nas.replay", ["--storage", cfg.storage, "--epochs", "2", "--seeds",
                                        "1", "--precision", "fp32", "--data-dir",
                                        str(tiny_mnist_dir), "--out", str(root / "rep"),
                                        "--no-progress"])
    assert e.value.code == 0
    return root


def test_trained_trials_carry_their_architecture_and_rejected_ones_say_so(replayed):
    url = f"sqlite:///{replayed / 'proj' / 'nas.db'}"
    study = optuna.load_study(study_name="t", storage=url)
    store = open_store(url, None, create=False)
    assert store is not None and default_dir(url).is_dir()
    trained = [t for t in study.trials if record.was_trained(t)]
    assert trained
    for t in trained:
        metas = {m.filename: m for m in optuna.artifacts.get_all_artifact_meta(
            t, storage=study._storage)}
        assert sorted(metas) == ["arch.json", "layers.md"]
        with store.open_reader(metas["arch.json"].artifact_id) as f:
            assert json.loads(f.read()) == json.loads(record.spec_of(t).to_json())
    from optuna_dashboard._note import get_note_from_system_attrs

    attrs = study._storage.get_study_system_attrs(study._study_id)
    notes = {t.number: get_note_from_system_attrs(attrs, t._trial_id)["body"]
             for t in study.trials}
    rejected = [t for t in study.trials if record.outcome_of(t) == record.REJECTED]
    assert rejected, "the budget of 12,000 rejects some candidates"
    for t in rejected:
        assert t.state == optuna.trial.TrialState.PRUNED  # the sampler's view is unchanged
        assert f"rejected: {record.reason_of(t)}, not trained" in notes[t.number]
        assert t.user_attrs[record.LABEL] == "rejected"  # the trial list tells it from pruned
    assert all("rejected" not in notes[t.number] for t in trained)
    assert study.metric_names == ["val_acc"]


def test_a_replay_is_recorded_by_artifact_id_not_by_path(replayed):
    url = f"sqlite:///{replayed / 'proj' / 'nas.db'}"
    study = optuna.load_study(study_name="t", storage=url)
    best = selection.select_trial(study, None)
    rec = record.replay_of(study, best.number)
    assert rec["weights"] == ["seed0.pt"]
    assert sorted(rec[record.REPLAY_ARTIFACTS]) == ["model.onnx", "report.json", "report.md",
                                                    "seed0.pt"]
    names = sorted(m.filename for m in optuna.artifacts.get_all_artifact_meta(study))
    assert names == [f"trial{best.number}-{n}" for n in
                     ("model.onnx", "report.json", "report.md", "seed0.pt")]
    assert str(replayed) not in json.dumps(rec)  # no local path left in the record


def test_exported_onnx_stands_alone_takes_raw_pixels_and_gives_the_replays_accuracy(
        replayed, tmp_path, tiny_mnist_dir, capsys):
    import onnx
    import onnxruntime as ort

    url = f"sqlite:///{replayed / 'proj' / 'nas.db'}"
    out = call(export.main, ["--storage", url, "--out", str(tmp_path / "exp")], capsys)
    assert [Path(f).name for f in out.split()] == ["arch.json", "model.py", "summary.md",
                                                   "recipe.json", "weights.pt", "model.onnx"]
    # One file: copied alone to another directory, it loads and runs.
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(tmp_path / "exp" / "model.onnx", alone / "model.onnx")
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        "arch.json", "model.onnx", "model.py", "recipe.json", "summary.md", "weights.pt"]
    proto = onnx.load(str(alone / "model.onnx"), load_external_data=False)
    assert all(not i.external_data for i in proto.graph.initializer)
    session = ort.InferenceSession(str(alone / "model.onnx"))
    (inp,) = session.get_inputs()
    assert inp.name == INPUT_NAME and inp.type == "tensor(uint8)" and inp.shape[1:] == [1, 28, 28]
    meta = session.get_modelmeta().custom_metadata_map
    spec = record.spec_of(selection.select_trial(optuna.load_study(study_name="t", storage=url),
                                              None))
    assert meta["spec_key"] == spec.key() and meta["dataset"].startswith("MNIST")
    assert "(pixels / 255 - 0.1307) / 0.3081" in meta["input"]
    assert meta["parameters"] == str(sum(p.numel() for p in build(spec).parameters()))

    # Real-format images (uint8 0-255 from the IDX files), no preprocessing by the caller.
    test = load_mnist(tiny_mnist_dir).test
    pixels = test.x.unsqueeze(1).numpy()
    logits = session.run(None, {INPUT_NAME: pixels})[0]
    report = json.loads((replayed / "rep" / "report.json").read_text())
    acc = float((logits.argmax(1) == test.y.numpy()).mean())
    assert acc == pytest.approx(report["test_acc_final"][0], abs=1.5 / len(test))
    assert f"test accuracy over 1 seed(s): {report['mean']:.2%}" in \
        (tmp_path / "exp" / "summary.md").read_text()
    assert meta["test_accuracy"].startswith(f"{report['test_acc_final'][0]:.4f}")

    # The same numbers as PyTorch with the trainer's normalisation.
    model = build(spec)
    model.load_state_dict(torch.load(tmp_path / "exp" / "weights.pt")["state_dict"])
    model.eval()
    with torch.no_grad():
        ours = model(normalize(test.x.unsqueeze(1))).numpy()
    np.testing.assert_allclose(logits, ours, atol=1e-4, rtol=1e-4)
    # Normalised floats are refused, not silently misread.
    with pytest.raises(Exception, match="(?i)type|uint8"):
        session.run(None, {INPUT_NAME: pixels.astype(np.float32) / 255})


def test_a_moved_study_directory_still_exports_and_replays(replayed, tmp_path, tiny_mnist_dir,
                                                           capsys):
    moved = tmp_path / "moved"
    shutil.copytree(replayed / "proj", moved)
    shutil.rmtree(replayed / "rep")  # the replay's local files are gone: only the copy has them
    url = f"sqlite:///{moved / 'nas.db'}"
    out = call(export.main, ["--storage", url, "--out", str(tmp_path / "exp")], capsys)
    assert [Path(f).name for f in out.split()][-2:] == ["weights.pt", "model.onnx"]
    call(replay.main, ["--storage", url, "--epochs", "1", "--seeds", "1", "--data-dir",
                       str(tiny_mnist_dir), "--out", str(tmp_path / "rep2"), "--no-progress"],
         capsys)
    shutil.rmtree(tmp_path / "rep2")
    out = call(export.main, ["--storage", url, "--out", str(tmp_path / "exp2")], capsys)
    assert [Path(f).name for f in out.split()][-2:] == ["weights.pt", "model.onnx"]
    # Without its artifact folder, the architecture still exports, and it says why no weights.
    shutil.rmtree(default_dir(url))
    with pytest.raises(SystemExit) as e:
        run(export.main, "nas.export", ["--storage", url, "--out", str(tmp_path / "exp3")])
    assert e.value.code == 0
    err = capsys.readouterr()
    assert [Path(f).name for f in err.out.split()] == ["arch.json", "model.py", "summary.md",
        "recipe.json"]
    assert "not in" in err.err and "nas.db.artifacts" in err.err


def test_replays_recorded_by_path_still_read_but_only_inside_the_studys_folders(tmp_path):
    """nas 0.1 recorded the weights' absolute path; such a file, if still there and inside the
    study's folders (symlinks resolved), is read; anywhere else it is refused unopened."""
    from nas.arch.zoo import REFERENCE

    spec = REFERENCE["bn_dropout_16k"]()
    study = optuna.create_study(direction="maximize")
    t = study.ask()
    study.tell(t, 0.5)
    (tmp_path / "study").mkdir()
    path = tmp_path / "study" / "seed0.pt"
    checkpoint.save_checkpoint(path, spec, build(spec).state_dict(), {}, {})
    report = {"seeds": [0], "test_acc_final": [0.5], "mean": 0.5, "std": 0.0,
              "challenge_holds": False, "weights": [str(path)], "device": "cpu",
              "date": "2026-11-25", "train_config": {}, "precision": "fp32"}
    uploads.write_replay(study, study.trials[0], report, "note")
    inside = [tmp_path / "study"]
    assert uploads.replay_checkpoint(study, 0, spec, None, trusted=inside).checkpoint is not None
    refused = uploads.replay_checkpoint(study, 0, spec, None, trusted=[tmp_path / "other"])
    assert refused.checkpoint is None and refused.why_not.startswith("were refused")
    # A link inside the study's folder to a checkpoint outside it is refused too.
    (tmp_path / "other").mkdir()
    outside = tmp_path / "other" / "seed0.pt"
    path.rename(outside)
    path.symlink_to(outside)
    linked = uploads.replay_checkpoint(study, 0, spec, None, trusted=inside)
    assert linked.checkpoint is None and "outside" in linked.why_not
    path.unlink()
    missing = uploads.replay_checkpoint(study, 0, spec, None, trusted=inside)
    assert missing.checkpoint is None and missing.why_not.startswith("are not at")


def test_an_export_carries_its_recipe_and_says_how_to_get_weights(replayed, tmp_path, capsys):
    """Before a replay: the architecture, the recipe of the trial, and a line with the replay
    command. After one: the replay's recipe (what trained weights.pt), in recipe.json,
    summary.md and model.py alike."""
    import types

    url = f"sqlite:///{replayed / 'proj' / 'nas.db'}"
    study = optuna.load_study(study_name="t", storage=url)
    number = selection.select_trial(study, None).number
    # The same study without its replay record: a trial that was never replayed.
    bare = tmp_path / "bare.db"
    source = sqlite3.connect(replayed / "proj" / "nas.db")
    con = sqlite3.connect(bare)
    source.backup(con)  # the WAL's pages included
    source.close()
    con.execute("DELETE FROM study_user_attributes WHERE key LIKE 'replay:%'")
    con.commit()
    con.close()
    with pytest.raises(SystemExit) as e:
        run(export.main, "nas.export", ["--storage", f"sqlite:///{bare}", "--out",
                                        str(tmp_path / "before")])
    assert e.value.code == 0
    err = capsys.readouterr().err
    assert err.startswith("note: no weights yet") and \
        f"python -m nas.replay --storage sqlite:///{bare} --trial {number} --seeds 5" in err
    recipe = json.loads((tmp_path / "before" / "recipe.json").read_text())
    trial_cfg = record.train_config_of(study.trials[number])
    assert recipe["train_config"]["epochs"] == trial_cfg["epochs"]
    assert recipe["train_config"]["lr"] == trial_cfg["lr"]
    assert "no replay yet" in recipe["source"]

    call(export.main, ["--storage", url, "--out", str(tmp_path / "after")], capsys)
    recipe = json.loads((tmp_path / "after" / "recipe.json").read_text())["train_config"]
    from nas.export.codegen import recipe_of

    assert recipe == recipe_of(record.replay_of(study, number)["train_config"])
    assert "the replay" in json.loads((tmp_path / "after" / "recipe.json").read_text())["source"]
    mod = types.ModuleType("exported")
    exec(compile((tmp_path / "after" / "model.py").read_text(), "model.py", "exec"),
         mod.__dict__)
    assert mod.RECIPE == recipe
    summary = (tmp_path / "after" / "summary.md").read_text()
    assert "## Training recipe" in summary and "| epochs | 2 |" in summary
