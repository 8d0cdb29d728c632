"""The dataset descriptor: MNIST's values are today's, and everything reads them from it.

Each test with another descriptor would fail if some module still hard-coded MNIST's numbers
or words instead of reading the descriptor it was given.
"""

from __future__ import annotations

import types
from dataclasses import FrozenInstanceError, replace

import pytest
import torch

from nas.arch.build import build
from nas.arch.zoo import REFERENCE
from nas.errors import DataError
from nas.export.codegen import model_source, recipe_of
from nas.export.onnx import INPUT_CONTRACT, OUTPUT_CONTRACT, metadata, write_onnx
from nas.study.config import default_study_name
from nas.training import data, dataset
from nas.training.augment import MNIST_MEAN, MNIST_STD, normalize, random_affine
from nas.training.dataset import MNIST, pixel_stats
from nas.training.trainer import TrainConfig

# Another grey 28x28 data set with its own constants, names and files: what a later data set
# (Fashion-MNIST, say) would look like to nas.
OTHER = replace(MNIST, name="Other-Set", description="synthetic blobs",
                classes=("ring", "bar", "dot"), mean=0.5, std=0.25,
                files=("a-img", "a-lab", "b-img", "b-lab"), subdirs=("Other/raw",),
                package_dir=None, torchvision=None, sha256=None, class_noun="shape",
                pixels="")


def load_source(src: str) -> types.ModuleType:
    mod = types.ModuleType("generated_model")
    exec(compile(src, "model.py", "exec"), mod.__dict__)
    return mod


def test_mnist_is_todays_values():
    assert (MNIST.name, MNIST.shape, MNIST.mean, MNIST.std) == ("MNIST", (1, 28, 28), 0.1307,
                                                                 0.3081)
    assert MNIST.classes == tuple("0123456789") and MNIST.num_classes == 10
    assert (MNIST_MEAN, MNIST_STD) == (0.1307, 0.3081)
    assert MNIST.file_names == data.FILES and data.SIZE == (28, 28) and data.CLASSES == 10
    assert MNIST.shipped_dir == data.DEFAULT_DATA_DIR
    assert data.DEFAULT_DATA_DIR.parent.name == "datasets"
    with pytest.raises(FrozenInstanceError):
        MNIST.mean = 0.5  # type: ignore[misc]
    hash(MNIST)  # frozen and hashable: it keys load_mnist's cache


def test_mnist_stats_computed_from_the_shipped_training_images_match_the_stated_ones():
    m = data.load_mnist(None, download=False)
    mean, std = pixel_stats(m.train.x)
    assert (round(mean, 4), round(std, 4)) == (MNIST.mean, MNIST.std)
    assert MNIST.with_stats(m.train.x) == MNIST
    # The descriptor's fingerprint is the shipped copy's, as data.py computes it.
    assert m.fingerprint() == {"name": "MNIST", "train": 60_000, "sha256": MNIST.sha256}
    assert m.dataset is MNIST


def test_pixel_stats_are_exact_and_refuse_other_dtypes():
    x = torch.tensor([[0, 255], [255, 0]], dtype=torch.uint8)
    assert pixel_stats(x) == (0.5, 0.5)
    x = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    f = x.double() / 255
    assert pixel_stats(x) == pytest.approx((f.mean().item(), f.std(unbiased=False).item()),
                                           abs=1e-12)
    with pytest.raises(DataError, match="uint8"):
        pixel_stats(x.float())
    with pytest.raises(DataError, match="std"):
        replace(MNIST, std=0.0)


def test_another_descriptor_changes_normalize_and_the_augmentation_background():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    ours = normalize(x, OTHER)
    torch.testing.assert_close(ours, (x.float() / 255 - 0.5) / 0.25)
    assert not torch.allclose(ours, normalize(x))
    torch.testing.assert_close(normalize(x), normalize(x, MNIST), rtol=0, atol=0)
    # A blank image shifted far: what comes in from outside is the descriptor's black pixel.
    blank = normalize(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), OTHER)
    g = torch.Generator().manual_seed(0)
    moved = random_affine(blank, 0.0, 0.4, 0.0, g, dataset=OTHER)
    torch.testing.assert_close(moved, torch.full_like(blank, -2.0))
    g = torch.Generator().manual_seed(0)
    assert not torch.allclose(random_affine(blank, 0.0, 0.4, 0.0, g), blank)  # MNIST's fill


def test_onnx_texts_and_graph_follow_the_descriptor(tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    spec = REFERENCE["bn_dropout_16k"]()
    meta = metadata(spec, dataset=OTHER)
    assert meta["dataset"] == "Other-Set (synthetic blobs, 28x28 grey)"
    assert meta["classes"] == "3: logit i is shape i of 0 ring, 1 bar, 2 dot"
    assert "(pixels / 255 - 0.5) / 0.25" in meta["input"]
    assert meta["normalisation"] == "inside the graph: (pixels / 255 - 0.5) / 0.25"
    assert "Other-Set files" in meta["input"] and "(N, 3)" in meta["output"]  # npz or IDX
    joined = " ".join(meta.values())
    assert "0.1307" not in joined and "0.3081" not in joined and "MNIST" not in joined
    assert "digit" not in joined
    # What the pixel values show is said only where nas knows it: MNIST's ink, F-MNIST's white.
    assert "ink" not in joined and "Other-Set files, shape (N, 1, 28, 28)" in meta["input"]
    fashion = metadata(spec, dataset=dataset.FASHION_MNIST)["input"]
    assert "Fashion-MNIST IDX files (0 = black background, 255 = white), shape" in fashion
    # MNIST's texts are the ones nas has always written.
    default = metadata(spec)
    assert default["dataset"] == "MNIST (handwritten digits, 28x28 grey)"
    assert default["classes"] == "10: digits 0-9, logit i is digit i"
    assert default["normalisation"] == "inside the graph: (pixels / 255 - 0.1307) / 0.3081"
    assert INPUT_CONTRACT == ("uint8 pixels 0-255 as stored in the MNIST IDX files (0 = "
                              "background, 255 = ink), shape (N, 1, 28, 28); the graph "
                              "normalises them itself as (pixels / 255 - 0.1307) / 0.3081: "
                              "do not normalise")
    assert OUTPUT_CONTRACT == ("float32 logits, shape (N, 10): logit i is digit i, argmax is "
                               "the prediction")

    # The graph normalises with the descriptor's constants, not MNIST's.
    torch.manual_seed(0)
    model = build(spec).eval()
    path = write_onnx(spec, model.state_dict(), tmp_path / "m.onnx", dataset=OTHER)
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["normalisation"] == meta["normalisation"]
    assert "0.3081" not in proto.graph.input[0].doc_string + proto.doc_string
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    out = ReferenceEvaluator(proto).run(None, {"pixels_uint8": x.numpy()})[0]
    with torch.no_grad():
        want, mnist = model(normalize(x, OTHER)), model(normalize(x))
    torch.testing.assert_close(torch.from_numpy(out), want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(torch.from_numpy(out), mnist, atol=1e-3)


def test_generated_model_py_follows_the_descriptor():
    spec = REFERENCE["bn_dropout_16k"]()
    src = model_source(spec, recipe_of(TrainConfig().to_dict()), dataset=OTHER)
    assert "0.1307" not in src and "0.3081" not in src and "MNIST" not in src
    assert "MEAN, STD = 0.5, 0.25  # Other-Set's training-set pixel mean and std" in src
    assert "all Other-Set training images" in src
    assert "ink" not in src and "(Other-Set's files as stored: uint8 pixels 0-255)" in src
    assert "(MNIST's files as stored: uint8 pixels 0-255, 0 = background, 255 = ink)" in \
        model_source(spec)
    mod = load_source(src)
    pixels = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(mod.preprocess(pixels), normalize(pixels, OTHER))
    # The generated augmentation fills with the descriptor's black pixel too.
    blank = mod.preprocess(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    moved = mod.augment(blank, 0.0, 0.4, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(moved, torch.full_like(blank, -2.0))
    assert "MEAN, STD = 0.1307, 0.3081  # MNIST's training-set pixel mean and std" in \
        model_source(spec)


def test_default_study_name_is_the_descriptors_name():
    assert default_study_name(20_000, 20) == "mnist-20000p-20e"
    assert default_study_name(8_000, 15, MNIST) == "mnist-8000p-15e"
    assert default_study_name(8_000, 15, OTHER) == "other-set-8000p-15e"


def test_the_loader_reads_the_descriptors_files_sizes_and_classes(tmp_path):
    small = replace(OTHER, shape=(1, 8, 8))
    raw = tmp_path / "Other" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for stem, n in (("a-img", 30), ("b-img", 10)):
        data.write_idx(raw / (stem + ".gz"), torch.randint(0, 256, (n, 8, 8), generator=g,
                                                            dtype=torch.uint8))
    for stem, n in (("a-lab", 30), ("b-lab", 10)):
        data.write_idx(raw / stem, torch.arange(n) % 3)
    m = data.load_mnist(tmp_path, download=False, dataset=small)
    assert m.train.x.shape == (30, 8, 8) and len(m.test) == 10 and m.dataset is small
    assert m.fingerprint()["name"] == "Other-Set"
    with pytest.raises(DataError, match="Other-Set's are 28x28"):
        data.load_mnist(tmp_path, download=False, dataset=OTHER)
    with pytest.raises(DataError, match="Other-Set's are 0 to 1"):
        data.load_mnist(tmp_path, download=False, dataset=replace(small, classes=("a", "b")))
    with pytest.raises(DataError, match=r"Other-Set not found .* put a-img.gz, a-lab.gz, "
                                        r"b-img.gz, b-lab.gz in .*Other/raw"):
        data.load_mnist(tmp_path / "nothing", download=False, dataset=small)
    with pytest.raises(DataError, match="no copy of Other-Set ships with nas"):
        data.load_mnist(None, dataset=small)
    with pytest.raises(DataError, match="single-channel IDX images only"):
        data.load_mnist(tmp_path, download=False, dataset=replace(small, shape=(3, 8, 8)))


def test_a_missing_shipped_copy_is_one_line_and_never_downloaded_into(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "DATASETS_DIR", tmp_path / "datasets")
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("tried to download"))
    (tmp_path / "datasets" / "mnist").mkdir(parents=True)
    with pytest.raises(DataError, match=r"MNIST not found in .*mnist, the copy that should "
                                        r"ship with nas .*pass --data-dir") as e:
        data.load_mnist(None)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="lacks its data files"):  # the same as a --data-dir
        data.load_mnist(str(tmp_path / "datasets" / "mnist"))
