"""The product path through the real command line: search, export, replay."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import torch

from nas.arch.plan import param_count
from nas.arch.spec import ArchSpec
from nas.study import selection


def cli(*argv: str, cwd) -> str:
    p = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=cwd,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_search_export_replay(tmp_path, tiny_mnist_dir):
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    data = ["--data-dir", str(tiny_mnist_dir)]
    # The default design: space 2, the training sweep, the search stage's proxy.
    out = cli("nas.search", "--trials", "3", "--epochs", "1", "--storage", db, "--val-size",
              "200", "--no-progress", *data, cwd=tmp_path)
    assert "study 'mnist-20000p-1e'" in out and "3 trained" in out
    assert f"optuna-dashboard {db}" in out and "python -m nas.export" in out
    assert "finalists (1 epochs" in out  # the default second stage ran

    from nas.study import record

    study = optuna.load_study(study_name="mnist-20000p-1e", storage=db)
    trained = [t for t in study.get_trials() if record.was_trained(t)]
    assert len(trained) == 3
    assert all(t.user_attrs["params"] <= 20_000 for t in trained)
    # Export and replay default to the best finalist: 3 finalists x 2 seeds ran.
    assert len(selection.finalists(study)) == 3
    best = selection.finalists(study)[0].runs[0]

    # Export before any replay: architecture files only.
    files = cli("nas.export", "--storage", db, "--out", "exp", cwd=tmp_path).split()
    assert [f.split("/")[-1] for f in files] == ["arch.json", "model.py", "summary.md",
        "recipe.json"]
    spec = ArchSpec.from_json((tmp_path / "exp" / "arch.json").read_text())
    assert spec.to_json() == best.user_attrs["spec"]
    run = subprocess.run([sys.executable, "exp/model.py"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert f"{param_count(spec):,} parameters; output shape (1, 10)" in run.stdout
    summary = (tmp_path / "exp" / "summary.md").read_text()
    pick = selection.finalists(study)[0]  # what selected it: the mean over its seeds
    assert (f"- finalist of search-stage trial {best.user_attrs['finalist_of']}: validation "
            f"accuracy {pick.mean:.2%} ± {pick.se:.2%} (mean ± SE over {len(pick.runs)} seed(s), "
            f"final epoch of 1; this trial is seed 0)") in summary

    # Replay: one seed, one epoch, test accuracy printed and recorded.
    out = cli("nas.replay", "--storage", db, "--epochs", "1", "--seeds", "1", "--out", "rep",
              "--no-progress", *data, cwd=tmp_path)
    assert f"trial {best.number} (" in out and "final-epoch test accuracy" in out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["seeds"] == [0] and len(report["test_acc_final"]) == 1
    assert report["mean"] == report["test_acc_final"][0]
    assert f"{report['mean']:.2%}" in out
    ckpt = torch.load(tmp_path / "rep" / "seed0.pt")
    assert ArchSpec.from_json(ckpt["spec"]) == spec and ckpt["train_config"]["epochs"] == 1
    study = optuna.load_study(study_name="mnist-20000p-1e", storage=db)
    assert study.user_attrs[f"replay:trial-{best.number}"]["mean"] == report["mean"]

    # Export after the replay: weights and ONNX too, and the ONNX computes what torch does.
    files = cli("nas.export", "--storage", db, "--out", "exp", cwd=tmp_path).split()
    assert [f.split("/")[-1] for f in files][-2:] == ["weights.pt", "model.onnx"]
    import onnx
    from onnx.reference import ReferenceEvaluator

    from nas.arch.build import build

    model = build(spec)
    model.load_state_dict(torch.load(tmp_path / "exp" / "weights.pt")["state_dict"])
    model.eval()
    # The ONNX takes raw uint8 pixels and normalises them itself, as the trainer does.
    from nas.training.augment import normalize

    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    onnx_out = ReferenceEvaluator(onnx.load(tmp_path / "exp" / "model.onnx")).run(
        None, {"pixels_uint8": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(onnx_out), model(normalize(x)).detach(),
                               atol=1e-4, rtol=1e-4)
