"""A tiny smoke run of the benchmark: it runs, alternates, and writes what it claims."""

from __future__ import annotations

import json

import pytest

from nas import bench
from nas.cli import run


def test_bench_smoke(tmp_path, tiny_mnist_dir, capsys):
    with pytest.raises(SystemExit) as e:
        run(bench.main, "nas.bench", ["--device", "cpu", "--data-dir", str(tiny_mnist_dir),
                                      "--rounds", "1", "--images", "256",
                                      "--candidate-epochs", "1", "--workers", "1",
                                      "--search-trials", "1", "--search-epochs", "1",
                                      "--variant", "channels_last=false",
                                      "--out", str(tmp_path)])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "ratio b/a" in out
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    t = res["throughput"]
    assert [len(t["runs"][k]) for k in ("a", "b", "channels_last=false")] == [1, 1, 1]
    assert t["runs"]["a"][0]["images"] >= 256 and t["runs"]["b"][0]["images"] == 256
    assert t["ratio_b_over_a"] == pytest.approx(
        t["nas"]["images_per_s"] / t["conventional"]["images_per_s"])
    assert t["variants"]["channels_last=false"]["settings"] == {"channels_last": False}
    assert res["candidate"]["epochs"] == 1 and res["search"][0]["trials"] == 1
    assert res["command"].startswith("python -m nas.bench --device cpu")
    assert {"torch", "torchvision", "optuna"} <= res["versions"].keys()
    assert js.with_suffix(".md").read_text().startswith("## cpu")


def test_bad_variant_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(bench.main, "nas.bench", ["--variant", "warp=9", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
