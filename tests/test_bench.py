"""A tiny smoke run of the benchmark: it runs, alternates, and writes what it claims; its FLOP
count; and the GPU acceptance check, run on the CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nas.tools import bench
from nas.cli.common import run
from nas.arch.spec import ArchSpec, Block, Conv1x1, Conv3x3, Head
from nas.training.host import use_threads
from nas.training.trainer import precision_for
from nas.arch.zoo import bn_dropout_16k


def test_bench_smoke(tmp_path, tiny_mnist_dir, capsys):
    with pytest.raises(SystemExit) as e:
        run(bench.main, "nas.bench", ["--device", "cpu", "--data-dir", str(tiny_mnist_dir),
                                      "--rounds", "1", "--images", "256",
                                      "--candidate-epochs", "1", "--workers", "1,2",
                                      "--search-trials", "2", "--search-epochs", "1",
                                      "--variant", "precision=fp32",
                                      "--out", str(tmp_path)])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "ratio b/a" in out and "share of peak" in out
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    t = res["throughput"]
    assert [len(t["runs"][k]) for k in ("a", "b", "precision=fp32")] == [1, 1, 1]
    assert t["runs"]["a"][0]["images"] >= 256 and t["runs"]["b"][0]["images"] == 256
    assert t["ratio_b_over_a"] == pytest.approx(
        t["nas"]["images_per_s"] / t["conventional"]["images_per_s"])
    v = t["variants"]["precision=fp32"]
    assert v["settings"] == {"precision": "fp32"} and v["precision"] == "fp32"
    assert v["ratio_over_b"] == pytest.approx(v["images_per_s"] / t["nas"]["images_per_s"])

    # precision: what was asked, what it resolved to, what the measured run trained in
    resolved = precision_for("cpu")
    assert res["precision"] == {"requested": "auto", "resolved": resolved}
    assert t["nas"]["precision"] == t["runs"]["b"][0]["precision"] == resolved
    assert t["runs"]["precision=fp32"][0]["precision"] == "fp32"
    assert res["settings"]["train_config"]["precision"] == "auto"

    # achieved FLOP/s as a share of the peak measured in the same run, in each one's dtype
    flops = t["flops"]["train_per_image"]
    assert flops == 3 * bench.forward_flops(bn_dropout_16k())
    peak = t["matmul_peak"]["flops_per_s"]
    assert set(peak) == {"fp32", resolved} and all(f > 0 for f in peak.values())
    for x in (t["conventional"], t["nas"], v):
        assert x["flops_per_s"] == pytest.approx(x["images_per_s"] * flops)
        assert x["share_of_peak"] == pytest.approx(x["flops_per_s"] / peak[x["precision"]])
    assert t["conventional"]["precision"] == "fp32"

    # the search phase: one fresh search per worker count, each with exactly its trials
    assert [r["workers"] for r in res["search"]] == [1, 2]
    assert [r["trials"] for r in res["search"]] == [2, 2]
    assert [r["epochs_trained"] for r in res["search"]] == [2, 2]
    assert res["candidate"]["epochs"] == 1
    assert res["command"].startswith("python -m nas.bench --device cpu")
    assert {"torch", "torchvision", "optuna"} <= res["versions"].keys()
    assert "cpu_flags" in res["host"]
    md = js.with_suffix(".md").read_text()
    assert md.startswith("## cpu") and "| precision=fp32 | fp32 |" in md


def test_forward_flops_count_conv_and_linear_multiply_adds():
    # conv 1->4 (3x3, pad 1) on 28x28, 1x1 conv 4->2 on 28x28, flatten, linear 1568->10
    spec = ArchSpec(stem=Conv3x3(4, bn=False), blocks=(Block((), (Conv1x1(2, bn=False),)),),
                    head=Head("flatten_linear"))
    assert bench.forward_flops(spec) == (2 * 1 * 4 * 9 * 28 * 28 + 2 * 4 * 2 * 28 * 28
                                         + 2 * 1568 * 10)
    assert bench.forward_flops(bn_dropout_16k()) == 6_129_312  # summed by hand
    assert bench.train_flops_per_image(spec) == 3 * bench.forward_flops(spec)


def test_matmul_peak_is_flops_per_second_in_each_dtype():
    before = use_threads(3)  # an unusual count, to see that the measurement leaves it alone
    try:
        res = bench.matmul_peak(torch.device("cpu"), ["fp32", "bf16"], n=128, reps=2)
        assert torch.get_num_threads() == 3  # threads are the process's, set by measure()
    finally:
        use_threads(before)
    assert res["n"] == 128 and set(res["flops_per_s"]) == {"fp32", "bf16"}
    assert all(math.isfinite(f) and f > 0 for f in res["flops_per_s"].values())


def test_gpu_check_runs_the_whole_path_on_cpu(tmp_path, tiny_mnist_dir, capsys):
    with pytest.raises(SystemExit) as e:
        run(bench.main, "nas.bench", ["--gpu-check", "--device", "cpu", "--precision", "fp32",
                                      "--data-dir", str(tiny_mnist_dir), "--images", "256",
                                      "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    assert "PASS: search (2 workers), replay, export" in out
    (js,) = tmp_path.glob("check-cpu-*.json")
    res = json.loads(js.read_text())
    assert res["trained"] == 2 and res["precision"] == "fp32"
    assert [f.rsplit("/", 1)[-1] for f in res["export"]][-1] == "model.onnx"
    assert 0 <= res["replay_test_acc"] <= 1 and res["throughput"]["ratio_b_over_a"] > 0


def test_gpu_check_fails_loudly(tmp_path, tiny_mnist_dir):
    # A step that fails stops the check with its name and error, not a PASS: here the search
    # finds its study already made with other settings, and refuses.
    import optuna

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'check.db'}",
                                study_name="gpu-check", direction="maximize")
    study.set_user_attr("identity", {"max_params": 1})
    with pytest.raises(bench.CheckFailed, match=r"search failed \(exit 2\).*other settings"):
        bench.acceptance(torch.device("cpu"), str(tiny_mnist_dir), bench.TrainConfig(),
                         256, 1, print, tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            run(bench.main, "nas.bench", ["--gpu-check", "--data-dir", str(tiny_mnist_dir),
                                          "--out", str(tmp_path)])
        assert e.value.code == 2


def test_bad_variant_is_one_line(tmp_path, capsys):
    for bad in ("warp=9", "precision=fp8"):
        with pytest.raises(SystemExit) as e:
            run(bench.main, "nas.bench", ["--variant", bad, "--out", str(tmp_path)])
        assert e.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
