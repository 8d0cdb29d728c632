"""Beyond MNIST: ``--dataset NAME|PATH`` through the real command line (search, export, replay)
on Fashion-MNIST's real files, an IDX folder and a .npz (a 32x32 3-channel one too), the study
keeping its data, and one line for every kind of bad data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from nas.arch.build import build
from nas.arch.plan import plan
from nas.arch.space import Input, min_receptive_field, rejection, sample, start_members
from nas.arch.spec import ArchSpec
from nas.cli import export, replay, search
from nas.cli.common import run
from nas.study import record
from nas.training import sources
from nas.training.data import FILES, write_idx
from nas.training.dataset import FASHION_MNIST, MNIST, Dataset
from tests.helpers import synthetic_digits

FASHION_DIR = Path(FASHION_MNIST.system_dir or "")
MODULES = {"search": search.main, "export": export.main, "replay": replay.main}
# The tiniest real search: 2 candidates, 1 epoch, all images, no finalists.
TINY = ["--trials", "2", "--epochs", "1", "--val-size", "100", "--proxy-subset", "0",
        "--finalists", "0", "--batch-size", "50", "--train-space", "fixed", "--no-progress",
        "--device", "cpu"]


def call(capsys, module: str, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        run(MODULES[module], f"nas.{module}", list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_line(code: int, err: str, *fragments: str) -> str:
    """The one error line of a refused command (exit 2, no traceback), with ``fragments``."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def write_folder(d: Path, x_train, y_train, x_test, y_test, gz: bool = True) -> Path:
    """The four IDX files under MNIST's names in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    for key, t in (("train_x", x_train), ("train_y", y_train), ("test_x", x_test),
                   ("test_y", y_test)):
        write_idx(d / (FILES[key] + (".gz" if gz else "")), t)
    return d


def colour_images(n: int, seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 32x32 RGB uint8 images, N x H x W x C: class k is a bright square in
    channel k, at a class-specific place, on noise."""
    g = np.random.default_rng(seed)
    y = g.integers(0, classes, n)
    x = g.integers(0, 50, (n, 32, 32, 3))
    for k in range(classes):
        r = 4 + 8 * k
        x[y == k, r:r + 8, r:r + 8, k % 3] += 200
    return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)


def run_all(capsys, tmp_path: Path, data: list[str], study: str) -> dict:
    """search -> export -> replay -> export on ``data`` (--dataset and maybe --data-dir);
    returns what each printed and wrote."""
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out, err = call(capsys, "search", *TINY, "--storage", db, *data)
    assert code == 0, err
    assert f"study '{study}'" in out and "2 trained" in out
    # The summary names the data and what each logit means (MNIST's is as it always was).
    ds = record.dataset_of(optuna.load_study(study_name=study, storage=db))
    assert f"\ndata: {ds.title()}; classes {ds.classes_text()}\n" in out
    code, out, err = call(capsys, "export", "--storage", db, "--out", str(tmp_path / "e0"))
    assert code == 0 and "no weights yet" in err, err
    # The replay reads the study's own data: neither --dataset nor --data-dir.
    code, rep, err = call(capsys, "replay", "--storage", db, "--epochs", "1", "--seeds", "1",
                          "--no-progress", "--device", "cpu", "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "final-epoch test accuracy" in rep
    # MNIST's accuracy target is not the measure of other data; the budget checks stay.
    assert "mean test accuracy >=" not in rep and "PASS  parameters <= 20,000" in rep
    # The replay's report says what the data are and what its model.onnx takes, as the
    # export does (the ONNX's metadata: the same words).
    md = (tmp_path / "rep" / "report.md").read_text()
    meta = onnx_meta(tmp_path / "rep" / "model.onnx")
    for key, line in (("dataset", "data"), ("classes", "classes"), ("input", "model.onnx input")):
        assert f"- {line}: {meta[key]}\n" in md, (key, md)
    code, out, err = call(capsys, "export", "--storage", db, "--out", str(tmp_path / "e1"))
    assert code == 0, err
    assert out.split()[-1].endswith("model.onnx")
    st = optuna.load_study(study_name=study, storage=db)
    return {"db": db, "study": st, "export": tmp_path / "e1", "replay": rep}


def onnx_meta(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


# -- Fashion-MNIST ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion_slice(tmp_path_factory) -> Path:
    """The first 400 training and 200 test images of the real Fashion-MNIST files, as an
    IDX folder."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_DIR} (Debian: apt-get install "
                    f"dataset-fashion-mnist; .ci/run installs it)")
    from nas.training.data import load_mnist

    full = load_mnist(FASHION_DIR, download=False, dataset=FASHION_MNIST)
    return write_folder(tmp_path_factory.mktemp("fashion"), full.train.x[:400],
                        full.train.y[:400], full.test.x[:200], full.test.y[:200])


def test_fashion_mnist_descriptor_matches_the_real_files():
    if not FASHION_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_DIR} (dataset-fashion-mnist)")
    m = sources.load_data("fashion-mnist")  # read from the Debian package's folder
    assert m.dataset is FASHION_MNIST and len(m.train) == 60_000 and len(m.test) == 10_000
    assert FASHION_MNIST.with_stats(m.train.x) == FASHION_MNIST  # the stated mean and std
    assert m.fingerprint()["sha256"] == FASHION_MNIST.sha256
    assert FASHION_MNIST.classes[0] == "T-shirt/top" and FASHION_MNIST.classes[9] == "Ankle boot"


def test_fashion_mnist_searches_exports_and_replays(capsys, tmp_path, fashion_slice,
                                                    tiny_mnist_dir):
    r = run_all(capsys, tmp_path, ["--dataset", "fashion-mnist", "--data-dir",
                                   str(fashion_slice)], "fashion-mnist-20000p-1e")
    st = r["study"]
    assert record.dataset_of(st) is FASHION_MNIST
    # Clothing is flipped left-right by default; digits never (the other tests' MNIST).
    trained = [t for t in st.get_trials() if record.was_trained(t)]
    assert all(t.user_attrs["train_config"]["hflip"] is True for t in trained)
    meta = onnx_meta(r["export"] / "model.onnx")
    assert "Fashion-MNIST" in meta["dataset"] and "9 Ankle boot" in meta["classes"]
    assert "(pixels / 255 - 0.286) / 0.353" in meta["normalisation"]
    source = (r["export"] / "model.py").read_text()
    assert "T-shirt/top" in source and "MEAN, STD = 0.286, 0.353" in source
    assert "'hflip': True" in source  # fit() flips as nas did
    # Other data are refused in one line: a replay on MNIST, a resume on MNIST.
    one_line(*call(capsys, "replay", "--storage", r["db"], "--dataset", "mnist", "--data-dir",
                   str(tiny_mnist_dir), "--seeds", "1", "--no-progress")[::2],
             "was made on Fashion-MNIST", "not MNIST", "name")
    one_line(*call(capsys, "search", *TINY, "--storage", r["db"], "--study-name",
                   "fashion-mnist-20000p-1e", "--data-dir", str(tiny_mnist_dir))[::2],
             "was made on Fashion-MNIST (1x28x28, 10 classes", "data.name", "data.sha256")


def test_a_published_design_replays_on_fashion_mnist_the_way_the_search_trains(
        capsys, tmp_path, fashion_slice, tiny_mnist_dir):
    """``--spec`` on Fashion-MNIST mirrors as a search on it does (Dataset.hflip), unless
    --no-hflip; the 5x5 published design trains; digits are never mirrored."""
    def replay_report(out: str, *argv: str) -> dict:
        code, _, err = call(capsys, "replay", "--spec", "hardmaru_fashion_83k", "--epochs", "1",
                            "--seeds", "1", "--no-progress", "--out", str(tmp_path / out), *argv)
        assert code == 0, err
        return json.loads((tmp_path / out / "report.json").read_text())

    fashion = ["--dataset", "fashion-mnist", "--data-dir", str(fashion_slice)]
    r = replay_report("on", *fashion)
    assert r["train_config"]["hflip"] is True and r["params"] == 83_466
    assert r["spec"]["stem"]["kernel"] == 5 and 0.0 <= r["test_acc_final"][0] <= 1.0
    assert replay_report("off", *fashion, "--no-hflip")["train_config"]["hflip"] is False
    digits = replay_report("digits", "--data-dir", str(tiny_mnist_dir))
    assert digits["train_config"]["hflip"] is False
    code, _, err = call(capsys, "replay", "--no-hflip")
    assert code == 2 and "--hflip goes with --spec" in err


# -- an IDX folder ----------------------------------------------------------------------------
def test_an_idx_folder_of_16x16_images_with_4_classes(capsys, tmp_path):
    tx, ty = synthetic_digits(400, 0)
    vx, vy = synthetic_digits(100, 1)
    tx, vx = tx[:, 6:22, 6:22].contiguous(), vx[:, 6:22, 6:22].contiguous()  # 16x16
    folder = write_folder(tmp_path / "kmnist" / "raw", tx, ty % 4, vx, vy % 4, gz=False)
    r = run_all(capsys, tmp_path, ["--dataset", str(folder.parent)], "kmnist-20000p-1e")
    ds = record.dataset_of(r["study"])
    assert ds.name == "kmnist" and ds.shape == (1, 16, 16) and ds.classes == ("0", "1", "2", "3")
    stats = sources.load_data(str(folder.parent)).dataset
    assert (ds.mean, ds.std) == (stats.mean, stats.std) != (MNIST.mean, MNIST.std)
    spec = ArchSpec.from_json((r["export"] / "arch.json").read_text())
    assert (spec.in_channels, spec.input_size, spec.num_classes) == (1, 16, 4)
    meta = onnx_meta(r["export"] / "model.onnx")
    assert meta["classes"].startswith("4: ") and "(N, 1, 16, 16)" in meta["input"]
    # No flips for data nas knows nothing about.
    trained = [t for t in r["study"].get_trials() if record.was_trained(t)]
    assert all(t.user_attrs["train_config"]["hflip"] is False for t in trained)


# -- a .npz, 32x32 RGB ------------------------------------------------------------------------
def test_a_32x32_rgb_npz_searches_exports_and_its_onnx_matches_torch(capsys, tmp_path):
    x, y = colour_images(400, 0)
    vx, vy = colour_images(120, 1)
    f = tmp_path / "shapes.npz"
    np.savez(f, x_train=x, y_train=y, x_test=vx, y_test=vy,
             classes=np.array(["red square", "green square", "blue square"]))
    r = run_all(capsys, tmp_path, ["--dataset", str(f)], "shapes-20000p-1e")
    ds = record.dataset_of(r["study"])
    assert ds.shape == (3, 32, 32) and ds.classes == ("red square", "green square",
                                                      "blue square")
    spec = ArchSpec.from_json((r["export"] / "arch.json").read_text())
    assert (spec.in_channels, spec.input_size, spec.num_classes) == (3, 32, 3)
    for onnx_file in (r["export"] / "model.onnx", tmp_path / "rep" / "model.onnx"):
        meta = onnx_meta(onnx_file)  # the export's, and the replay's own
        assert "2 blue square" in meta["classes"] and "(N, 3, 32, 32)" in meta["input"]
    assert "blue square" in (r["export"] / "model.py").read_text()
    # The ONNX graph (normalisation inside) computes what torch does on the same pixels.
    import onnxruntime as ort

    from nas.export.onnx import WithPreprocess

    net = build(spec)
    net.load_state_dict(torch.load(r["export"] / "weights.pt")["state_dict"])
    pixels = torch.from_numpy(vx[:16]).permute(0, 3, 1, 2).contiguous()
    want = WithPreprocess(net.eval(), ds)(pixels).detach().numpy()
    session = ort.InferenceSession(str(r["export"] / "model.onnx"))
    got = session.run(None, {"pixels_uint8": pixels.numpy()})[0]
    assert got.shape == (16, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # A resume on other data is refused, naming what differs.
    other = tmp_path / "other.npz"
    np.savez(other, x_train=x[:, :28, :28], y_train=y, x_test=vx[:, :28, :28], y_test=vy)
    line = one_line(*call(capsys, "search", *TINY, "--storage", r["db"], "--study-name",
                          "shapes-20000p-1e", "--dataset", str(other))[::2],
                    "was made on shapes (3x32x32, 3 classes", "not other (3x28x28")
    assert "data.shape" in line and "data.name" in line
    one_line(*call(capsys, "replay", "--storage", r["db"], "--dataset", str(other),
                   "--no-progress")[::2], "was made on shapes", "leave out --dataset")


def test_a_32x32_rgb_input_plans_and_the_v2_floor_scales_with_it():
    io = Input(3, 32, 5)
    assert min_receptive_field(32) == 27 and min_receptive_field(28) == 24
    for version in (1, 2):
        for params in start_members(version, 3, 20_000, 0, io):
            spec = sample(version, optuna.trial.FixedTrial(params), 20_000, io)
            p = plan(spec.validate())
            assert p.params <= 20_000 and rejection(version, p) is None
            assert (spec.in_channels, spec.input_size, spec.num_classes) == (3, 32, 5)
            out = build(spec)(torch.zeros(2, 3, 32, 32))
            assert out.shape == (2, 5)


# -- bad data: one line each ------------------------------------------------------------------
def _npz(path: Path, **changes) -> Path:
    x, y = colour_images(60, 0)
    arrays = {"x_train": x, "y_train": y, "x_test": x[:20], "y_test": y[:20], **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


BAD_NPZ = {
    "counts": ({"y_train": np.zeros(59, np.int64)}, "60 train images but labels of shape (59,)"),
    "past classes": ({"classes": np.array(["a", "b"])}, "labels run up to 2, but 2 classes"),
    "negative": ({"y_test": -np.ones(20, np.int64)}, "labels must be 0 or more, found -1"),
    "empty": ({"x_test": np.zeros((0, 32, 32, 3), np.uint8), "y_test": np.zeros(0, np.int64)},
              "the test split holds no images"),
    "missing key": ({"y_test": None}, "has no y_test"),
    "float images": ({"x_train": np.zeros((60, 32, 32, 3), np.float32)},
                     "x_train is float32, nas reads uint8"),
    "rank": ({"x_train": np.zeros((60, 32), np.uint8)}, "have shape (60, 32)"),
    "float labels": ({"y_train": np.zeros(60, np.float64)}, "labels must be integers"),
    "not square": ({"x_train": np.zeros((60, 32, 30, 3), np.uint8),
                    "x_test": np.zeros((20, 32, 30, 3), np.uint8)}, "square images only"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_is_one_line(capsys, tmp_path, case):
    changes, fragment = BAD_NPZ[case]
    f = _npz(tmp_path / "bad.npz", **changes)
    db = tmp_path / "nas.db"
    one_line(*call(capsys, "search", *TINY, "--storage", f"sqlite:///{db}", "--dataset",
                   str(f))[::2], str(f), fragment)
    assert not db.exists()  # refused before the study was made


def test_bad_idx_folders_are_one_line(capsys, tmp_path):
    x, y = synthetic_digits(50, 0)
    cases = {}
    d = write_folder(tmp_path / "magic", x, y, x[:10], y[:10], gz=False)
    raw = (d / FILES["train_x"]).read_bytes()
    (d / FILES["train_x"]).write_bytes(b"\x00\x00\x0d\x03" + raw[4:])  # float IDX, not uint8
    cases[d] = "is not an unsigned-byte IDX file"
    d = write_folder(tmp_path / "cut", x, y, x[:10], y[:10])
    f = d / (FILES["test_x"] + ".gz")
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:-100]))
    cases[d] = "is truncated"
    d = write_folder(tmp_path / "labels", x, y, x[:10], y[:11])
    cases[d] = "10 test images but labels of shape (11,)"
    d = write_folder(tmp_path / "past", x, y % 5, x[:10], y[:10] + 5)  # test past training's
    cases[d] = "the training labels' classes are 0 to 4"
    cases[tmp_path / "nothing"] = "no such data set (mnist, fashion-mnist), folder or .npz"
    (tmp_path / "empty").mkdir()
    cases[tmp_path / "empty"] = "does not hold the four IDX files"
    (tmp_path / "data.csv").write_text("1,2\n")
    cases[tmp_path / "data.csv"] = "not a folder of IDX files nor a .npz file"
    for path, fragment in cases.items():
        one_line(*call(capsys, "search", *TINY, "--storage", f"sqlite:///{tmp_path / 'n.db'}",
                       "--dataset", str(path))[::2], fragment)
    one_line(*call(capsys, "search", "--dataset", str(tmp_path / "cut"), "--data-dir",
                   str(tmp_path))[::2], "--data-dir goes with a data set name")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really")
    one_line(*call(capsys, "search", *TINY, "--dataset", str(broken))[::2],
             f"cannot read {broken}")


def test_a_missing_fashion_mnist_says_how_to_install_it(tmp_path):
    from dataclasses import replace

    from nas.errors import DataError

    gone = replace(FASHION_MNIST, system_dir=str(tmp_path / "none"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        from nas.training.data import load_mnist

        load_mnist(None, download=False, dataset=gone)


# -- the study's record of its data -----------------------------------------------------------
def test_a_tampered_data_set_record_is_one_line(capsys, tmp_path):
    x, y = colour_images(200, 0)
    f = tmp_path / "c.npz"
    np.savez(f, x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    code, _, err = call(capsys, "search", *TINY, "--trials", "1", "--storage", db,
                        "--dataset", str(f))
    assert code == 0, err
    st = optuna.load_study(study_name="c-20000p-1e", storage=db)
    good = dict(st.user_attrs[record.DATA_SET])
    assert good["arg"] == str(f) and good["shape"] == [3, 32, 32] and good["classes"] == \
        ["0", "1", "2"]
    for key, value in (("classes", ['"""\nimport os']), ("shape", [3, 32]), ("std", 0),
                       ("name", "x\ny"), ("sha256", "zz")):
        st.set_user_attr(record.DATA_SET, {**good, key: value})
        one_line(*call(capsys, "export", "--storage", db, "--out", str(tmp_path / "e"))[::2],
                 "attribute 'data_set'", repr(key))
    assert not (tmp_path / "e").exists()


def test_generated_source_is_safe_whatever_the_class_names():
    from nas.arch.zoo import pool_bn_19k
    from nas.export.codegen import model_source, recipe_of

    hostile = Dataset(name='x"""; import os #', description="d", classes=('a"""\nimport os',
                      "b\\"), shape=(1, 28, 28), mean=0.1, std=0.3, files=MNIST.files)
    src = model_source(pool_bn_19k(), recipe_of({}), hostile)
    compile(src, "model.py", "exec")  # still one module, its docstrings closed where meant
    tree = __import__("ast").parse(src)
    assert not any(isinstance(n, __import__("ast").Import) and n.names[0].name == "os"
                   for n in tree.body)


def test_mnist_is_unchanged_by_default(tmp_path, monkeypatch):
    from nas.cli.search import parse_args

    monkeypatch.chdir(tmp_path)  # the default storage, ./nas.db, holds no study here

    cfg, _ = parse_args([])
    assert cfg.dataset == "mnist" and cfg.study_name == "mnist-20000p-20e"
    assert cfg.full_schedule.hflip is False  # digits are never mirrored
    fashion, _ = parse_args(["--dataset", "fashion-mnist"])
    assert fashion.full_schedule.hflip is True and fashion.data_dir == FASHION_MNIST.system_dir
    assert parse_args(["--dataset", "fashion-mnist", "--no-hflip"])[0].full_schedule.hflip \
        is False
    from nas.export.codegen import recipe_of
    from nas.training.trainer import TrainConfig

    assert "hflip" not in recipe_of(TrainConfig().to_dict())  # MNIST's recipe reads as before
    assert json.dumps(recipe_of(TrainConfig(hflip=True).to_dict())).count("hflip") == 1


def test_fit_flips_and_normalises_the_way_nas_does(tiny_mnist_dir):
    """model.py's fit() with Fashion-MNIST's recipe (flips on) and constants trains the very
    network nas's trainer trains with that descriptor; the flips change it."""
    from nas.arch.spec import Block, Conv3x3, MaxPool
    from nas.export.codegen import model_source, recipe_of
    from nas.training.data import load_mnist
    from nas.training.trainer import TrainConfig, train

    spec = ArchSpec(stem=Conv3x3(8), blocks=(Block((Conv3x3(8),), (MaxPool(),)),
                                             Block((Conv3x3(8),), (MaxPool(),))))
    tr, val = load_mnist(tiny_mnist_dir, download=False).search_splits(val_size=500)
    cfg = TrainConfig(epochs=1, batch_size=25, lr=0.2, channels_last=False, precision="fp32",
                      seed=2, hflip=True)
    ours = train(spec, tr, val, cfg, "cpu", dataset=FASHION_MNIST)
    mod = types_module(model_source(spec, recipe_of(cfg.to_dict()), FASHION_MNIST))
    assert mod.RECIPE["hflip"] is True and (mod.MEAN, mod.STD) == (0.286, 0.353)
    theirs = mod.fit(tr.x, tr.y)
    for (name, a), b in zip(ours.model.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3, msg=name)
    plain = train(spec, tr, val, TrainConfig(**{**cfg.to_dict(), "hflip": False}), "cpu",
                  dataset=FASHION_MNIST)
    assert not torch.equal(next(plain.model.parameters()), next(ours.model.parameters()))


def types_module(src: str):
    import types

    mod = types.ModuleType("generated_model")
    exec(compile(src, "model.py", "exec"), mod.__dict__)
    return mod


def _searched_on(capsys, tmp_path, data_dir):
    """A one-trial MNIST study searched on ``data_dir``: its storage URL, the study, and the
    data set it records."""
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    code, _, err = call(capsys, "search", *TINY, "--trials", "1", "--storage", db,
                        "--data-dir", str(data_dir))
    assert code == 0, err
    st = optuna.load_study(study_name="mnist-20000p-1e", storage=db)
    return db, st, st.user_attrs[record.DATA_SET]


def test_a_replay_reads_the_recorded_folder_but_never_downloads_into_it(capsys, tmp_path,
                                                                        tiny_mnist_dir,
                                                                        monkeypatch):
    """A shared study names the folder its search read: replay reads it (only) as data."""
    import nas.training.data

    db, st, rec = _searched_on(capsys, tmp_path, tiny_mnist_dir)
    assert rec["arg"] == "mnist" and rec["source"].startswith(str(tiny_mnist_dir))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    st.set_user_attr(record.DATA_SET, {**rec, "source": str(elsewhere)})

    def no_download(*a, **k):
        raise AssertionError("replay downloaded into the study's recorded folder")

    monkeypatch.setattr(nas.training.data, "_download", no_download)
    one_line(*call(capsys, "replay", "--storage", db, "--seeds", "1", "--no-progress")[::2],
             f"MNIST not found in {elsewhere}")
    assert list(elsewhere.iterdir()) == []


def test_a_replay_whose_recorded_folder_is_gone_reads_the_names_own_copy(capsys, tmp_path,
                                                                       tiny_mnist_dir,
                                                                       monkeypatch):
    """A study committed from another checkout names a folder that is not here: the name's
    own copy is read instead, and still only if it holds the images the study searched."""
    import nas.training.sources

    db, st, rec = _searched_on(capsys, tmp_path, tiny_mnist_dir)
    gone = tmp_path / "checkout-since-deleted" / "mnist"
    st.set_user_attr(record.DATA_SET, {**rec, "source": str(gone)})
    # The name's own copy is the shipped MNIST: not the tiny slice searched, so refused.
    code, _, err = call(capsys, "replay", "--storage", db, "--seeds", "1", "--no-progress")
    assert code == 2 and "was made on" in err and "differ" in err, err
    # With the slice as the name's own copy, the replay runs on it and writes nothing there.
    monkeypatch.setattr(nas.training.sources, "default_data_dir", lambda name: str(tiny_mnist_dir))
    before = sorted(p.name for p in tiny_mnist_dir.rglob("*"))
    code, out, err = call(capsys, "replay", "--storage", db, "--seeds", "1", "--no-progress",
                          "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert (tmp_path / "r" / "report.json").exists() and not gone.exists()
    assert sorted(p.name for p in tiny_mnist_dir.rglob("*")) == before
