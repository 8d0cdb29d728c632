"""The benchmark's arithmetic and report on canned measurements (fast), a small real run of it
(``-m benchmark``), its FLOP count, and the GPU acceptance check, run on the CPU."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from nas.arch.spec import ArchSpec, Block, Conv1x1, Conv3x3, Head
from nas.arch.zoo import bn_dropout_16k
from nas.cli.common import run
from nas.tools import bench
from nas.training.host import use_threads
from nas.training.trainer import TrainConfig, precision_for

# Canned measurements, three rounds: images/s of (a), of (b) (fp32) and of a bf16 variant, and
# the matmul peak of each round. Chosen so that a median of per-round ratios (b/a: 3, 2, 2.22
# -> 2.22) differs from the ratio of medians (3000 / 1000 = 3), and the best peak of a dtype
# comes from a different round than its median run.
RATES = {"a": [1000.0, 1500.0, 900.0], "fp32": [3000.0, 3000.0, 2000.0],
         "bf16": [1500.0, 6000.0, 5400.0]}
PEAKS = [{"bf16": 4e9, "fp32": 1e9}, {"bf16": 3e9, "fp32": 2e9}, {"bf16": 1e9, "fp32": 1.5e9}]


def canned_throughput(monkeypatch) -> tuple[dict, list[str]]:
    """bench.throughput over RATES and PEAKS instead of spawned measurements; with the order
    in which it asked for them."""
    order: list[str] = []

    def fake_measure(kind: str, **kw) -> dict:
        if kind == "peak":
            order.append("peak")
            assert kw["dtypes"] == ["bf16", "fp32"] and kw["threads"] == 1
            return {"n": 64, "flops_per_s": PEAKS[order.count("peak") - 1]}
        key = "a" if kind == "a" else kw["cfg"].precision
        order.append(key)
        ips = RATES[key][order.count(key) - 1]
        return {"images": 600, "seconds": 600 / ips, "images_per_s": ips,
                "s_per_epoch": 60_000 / ips, "peak_host_mib": 100.0 + len(order),
                "peak_device_mib": None, **({"precision": key} if kind == "b" else {})}

    monkeypatch.setattr(bench, "measure", fake_measure)
    cfg = TrainConfig(precision="fp32")
    t = bench.throughput(3, 600, torch.device("cpu"), bench.Data(), 1, cfg, lambda msg: None,
                         {"precision=bf16": replace(cfg, precision="bf16")})
    return t, order


def test_throughput_interleaves_and_computes_from_the_measured_parts(monkeypatch):
    t, order = canned_throughput(monkeypatch)
    assert order == ["a", "fp32", "bf16", "peak"] * 3  # a, b, variant, peak: every round
    # per-round ratios (neighbours in time), and their median, not a ratio of medians
    assert t["ratios"] == pytest.approx([3.0, 2.0, 2000 / 900])
    assert t["ratio_b_over_a"] == pytest.approx(2000 / 900)
    v = t["variants"]["precision=bf16"]
    assert v["ratios"] == pytest.approx([0.5, 2.0, 2.7]) and v["ratio_over_b"] == 2.0
    assert v["settings"] == {"precision": "bf16"} and v["precision"] == "bf16"
    a, b = t["conventional"], t["nas"]
    assert (a["images_per_s"], b["images_per_s"], v["images_per_s"]) == (1000, 3000, 5400)
    assert a["s_per_epoch"] == pytest.approx(60.0) and b["s_per_epoch"] == pytest.approx(20.0)
    assert a["peak_host_mib"] == 109 and b["peak_host_mib"] == 110  # the largest of its runs
    # each pipeline's FLOP/s against the best peak of the dtype it computes in
    assert t["matmul_peak"]["flops_per_s"] == {"bf16": 4e9, "fp32": 2e9}
    flops = 3 * bench.forward_flops(bn_dropout_16k())
    assert t["flops"]["train_per_image"] == flops
    assert (a["precision"], b["precision"]) == ("fp32", "fp32")
    assert a["share_of_peak"] == pytest.approx(1000 * flops / 2e9)
    assert b["share_of_peak"] == pytest.approx(3000 * flops / 2e9)
    assert v["share_of_peak"] == pytest.approx(5400 * flops / 4e9)


def test_the_report_states_the_numbers_and_what_the_search_ran(monkeypatch):
    t, _ = canned_throughput(monkeypatch)
    res = {"device": "cpu (2 cores, 1 threads)", "date": "today", "command": "python -m nas.bench",
           "versions": {"torch": "2.x"}, "host": {}, "throughput": t,
           "settings": {"search_epochs": 20},
           "search": [{"workers": 1, "trials": 4, "seconds": 100.0, "candidates_per_hour": 144.0,
                       "epochs_trained": 16, "candidate_epochs": 4,
                       "candidate_images": 10_000}]}
    md = bench.markdown(res)
    assert "| **ratio b/a** | | **2.22×** |" in md
    assert "b/a 3.00×, 2.00×, 2.22×; precision=bf16 over (b) 0.50×, 2.00×, 2.70×." in md
    assert "| precision=bf16 | bf16 | 5,400 | 2.00× |" in md
    assert "| (a) conventional: torchvision + DataLoader | fp32 | 1,000 | 60.0 |" in md
    # The search rows trained the default proxy, not the 20-epoch schedule: the label says so.
    assert "each candidate 4 epochs on 10,000 images of a 20-epoch schedule" in md
    assert "| 1 | 4 | 100 | 144 | 16 |" in md


@pytest.mark.benchmark
def test_bench_smoke(tmp_path, tiny_mnist_dir, capsys):
    """The real thing, end to end and small: spawned measurements, a real search."""
    with pytest.raises(SystemExit) as e:
        run(bench.main, "nas.bench", ["--device", "cpu", "--data-dir", str(tiny_mnist_dir),
                                      "--rounds", "1", "--images", "256",
                                      "--candidate-epochs", "1", "--workers", "1",
                                      "--search-trials", "2", "--search-epochs", "3",
                                      "--variant", "precision=fp32",
                                      "--out", str(tmp_path)])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "ratio b/a" in out and "share of peak" in out
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    t = res["throughput"]
    assert [len(t["runs"][k]) for k in ("a", "b", "precision=fp32")] == [1, 1, 1]
    # (a) stops at the end of the batch that reaches 256; (b) trains one full batch of 256
    assert 256 <= t["runs"]["a"][0]["images"] < 256 + 128 and t["runs"]["b"][0]["images"] == 256
    assert t["ratio_b_over_a"] == pytest.approx(
        t["runs"]["b"][0]["images_per_s"] / t["runs"]["a"][0]["images_per_s"])
    for run_ in t["runs"]["a"] + t["runs"]["b"]:
        assert run_["images_per_s"] == pytest.approx(run_["images"] / run_["seconds"])

    # precision: what was asked, what it resolved to, what the measured run trained in
    resolved = precision_for("cpu")
    assert res["precision"] == {"requested": "auto", "resolved": resolved}
    assert t["nas"]["precision"] == t["runs"]["b"][0]["precision"] == resolved
    assert t["runs"]["precision=fp32"][0]["precision"] == "fp32"

    # the search: exactly its trials, each on the default proxy (3 epochs: min(4, 3)) of the
    # 3-epoch schedule, on the whole 500-image split (the 10,000-image subset is larger)
    (row,) = res["search"]
    assert (row["workers"], row["trials"]) == (1, 2)
    assert (row["candidate_epochs"], row["candidate_images"]) == (3, 500)
    assert row["epochs_trained"] == 6  # no pruner by default: every epoch of both
    assert row["candidates_per_hour"] == pytest.approx(2 / row["seconds"] * 3600)
    assert res["candidate"]["epochs"] == 1
    md = js.with_suffix(".md").read_text()
    assert md.startswith("## cpu") and "| precision=fp32 | fp32 |" in md
    assert "each candidate 3 epochs on 500 images of a 3-epoch schedule" in md


@pytest.mark.parametrize("which", ["rgb-npz", "fashion-mnist"])
def test_bench_measures_on_the_data_it_is_given(tmp_path, capsys, which):
    """--dataset: both pipelines read that data and train the reference network's layers on
    its input (a 32x32 RGB .npz without a torchvision class; Fashion-MNIST through
    torchvision's FashionMNIST)."""
    import numpy as np

    from nas.arch.plan import plan
    from nas.arch.space import Input
    from nas.training.dataset import FASHION_MNIST

    if which == "rgb-npz":
        rng = np.random.default_rng(0)
        f = tmp_path / "rgb.npz"
        np.savez(f, x_train=rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8),
                 y_train=rng.integers(0, 3, 300), x_test=rng.integers(0, 256, (30, 32, 32, 3),
                                                                       dtype=np.uint8),
                 y_test=rng.integers(0, 3, 30))
        argv, want = ["--dataset", str(f)], ("rgb", [3, 32, 32], Input(3, 32, 3))
    else:
        from pathlib import Path

        if not Path(FASHION_MNIST.system_dir or "").is_dir():
            pytest.skip("apt-get install dataset-fashion-mnist (.ci/run does)")
        argv, want = ["--dataset", "fashion-mnist"], ("Fashion-MNIST", [1, 28, 28], Input())
    with pytest.raises(SystemExit) as e:
        run(bench.main, "nas.bench", [*argv, "--device", "cpu", "--rounds", "1", "--images",
                                      "256", "--candidate-epochs", "0", "--workers", "",
                                      "--out", str(tmp_path)])
    assert e.value.code == 0, capsys.readouterr().err
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    name, shape, io = want
    spec = io.apply(bn_dropout_16k())
    assert (res["data"]["name"], res["data"]["shape"]) == (name, shape)
    assert res["data"]["reference_params"] == plan(spec).params
    assert res["throughput"]["flops"]["train_per_image"] == bench.train_flops_per_image(spec)
    runs = res["throughput"]["runs"]
    assert 256 <= runs["a"][0]["images"] < 256 + 128 and runs["b"][0]["images"] == 256
    # mirror flips as a search on this data trains (on for clothing, off otherwise)
    assert res["settings"]["train_config"]["hflip"] is (which == "fashion-mnist")
    assert f"Data: {name} ({'x'.join(map(str, shape))}" in js.with_suffix(".md").read_text()


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
        bench.acceptance(torch.device("cpu"), bench.Data("mnist", str(tiny_mnist_dir)),
                         bench.TrainConfig(),
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
