"""The trained network as one self-contained ONNX file that takes images as they come.

The contract (also in the file's input doc string and metadata, ``summary.md``, the generated
``model.py`` and the README), stated from a :class:`nas.training.dataset.Dataset` (default
MNIST, whose values are given here): the input ``pixels_uint8`` is uint8, shape (N, 1, 28, 28),
raw pixel values 0-255 as stored in the data set's IDX files (0 = background, 255 = ink: the
descriptor's ``pixels``, unsaid for data nas knows nothing about). The graph casts and
normalises them itself, ``(pixels / 255 - 0.1307) / 0.3081`` with the very function the trainer
uses (:func:`nas.training.augment.normalize`), so a caller must not normalise: fed [0, 1]
floats instead, the network would silently lose accuracy, and the uint8 type makes that
mistake fail loudly. The output ``logits`` is float32 (N, 10); its argmax is
the digit.

Used by ``nas.export`` and ``nas.replay`` (neither entry point imports the other).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas import __version__
from nas.arch.build import build
from nas.arch.plan import plan
from nas.arch.spec import ArchSpec
from nas.training.augment import normalize
from nas.training.dataset import MNIST, Dataset

INPUT_NAME, OUTPUT_NAME = "pixels_uint8", "logits"


def input_contract(dataset: Dataset = MNIST) -> str:
    """What the input must be, in words, for a network trained on ``dataset``."""
    c, h, w = dataset.shape
    # A named data set comes as IDX files; your own may be IDX files or a .npz: "files".
    named = dataset.package_dir or dataset.system_dir or dataset.torchvision
    files = "IDX files" if named else "files"
    meaning = f" ({dataset.pixels})" if dataset.pixels else ""
    return (f"uint8 pixels 0-255 as stored in the {dataset.name} {files}{meaning}, "
            f"shape (N, {c}, {h}, {w}); the graph normalises them itself as "
            f"{dataset.normalisation()}: do not normalise")


def output_contract(dataset: Dataset = MNIST) -> str:
    """What the output is, in words."""
    n, noun = dataset.num_classes, dataset.class_noun
    return f"float32 logits, shape (N, {n}): logit i is {noun} i, argmax is the prediction"


INPUT_CONTRACT, OUTPUT_CONTRACT = input_contract(), output_contract()  # MNIST's


class WithPreprocess(nn.Module):
    """``net`` behind the input contract: raw uint8 pixels in, logits out, normalised with
    ``dataset``'s constants (the ones it was trained with)."""

    def __init__(self, net: nn.Module, dataset: Dataset = MNIST) -> None:
        super().__init__()
        self.net = net
        self.dataset = dataset

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(normalize(pixels, self.dataset))


def data_contract(dataset: Dataset = MNIST) -> dict[str, str]:
    """What the data are and what a network trained on them takes and gives, in words: the
    ``dataset``, ``classes``, ``input`` and ``output`` of :func:`metadata` (a replay's report
    states the same)."""
    return {"dataset": dataset.title(),
            "classes": dataset.classes_text(),
            "input": f"{INPUT_NAME}: {input_contract(dataset)}",
            "output": f"{OUTPUT_NAME}: {output_contract(dataset)}"}


def metadata(spec: ArchSpec, test_accuracy: str | None = None,
             dataset: Dataset = MNIST) -> dict[str, str]:
    """The model's ``metadata_props``: what the file is and what it wants."""
    p = plan(spec)
    out = {**data_contract(dataset),
           "normalisation": f"inside the graph: {dataset.normalisation()}",
           "parameters": str(p.params),
           "receptive_field": str(p.receptive_field),
           "spec_key": spec.key(),
           "producer": f"nas {__version__}"}
    if test_accuracy is not None:
        out["test_accuracy"] = test_accuracy
    return out


def write_onnx(spec: ArchSpec, state_dict: dict[str, Any], path: Path,
               meta: dict[str, str] | None = None, dataset: Dataset = MNIST) -> Path:
    """Write the network with ``state_dict`` as ONE self-contained ONNX file at ``path`` (no
    external data: the network is tiny), taking :func:`input_contract`'s input for
    ``dataset`` (normalised inside the graph with its constants), with ``meta`` (default
    :func:`metadata`) as its ``metadata_props``. Returns ``path``."""
    import onnx

    model = build(spec)
    model.load_state_dict(state_dict)
    wrapped = WithPreprocess(model, dataset).eval()
    x = torch.zeros(2, spec.in_channels, spec.input_size, spec.input_size, dtype=torch.uint8)
    # Exported to a scratch folder first: the exporter may leave side files next to its
    # output, and only the finished, annotated file should appear at ``path``.
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "model.onnx"
        torch.onnx.export(wrapped, (x,), str(raw), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                          verbose=False)
        proto = onnx.load(str(raw))
    proto.graph.input[0].doc_string = input_contract(dataset)
    proto.graph.output[0].doc_string = output_contract(dataset)
    proto.doc_string = (f"{dataset.name} {dataset.class_noun} classifier found by nas "
                        f"({plan(spec).params:,} parameters). Input {INPUT_NAME}: "
                        f"{input_contract(dataset)}.")
    onnx.helper.set_model_props(proto, meta if meta is not None else
                                metadata(spec, dataset=dataset))
    onnx.save(proto, str(path), save_as_external_data=False)
    return path
