"""Batched, on-device normalisation and augmentation: one affine warp for the whole batch.

The normalisation constants come from a :class:`nas.training.dataset.Dataset` (default
:data:`~nas.training.dataset.MNIST`), so the trainer, the ONNX graph and the generated
``model.py`` all standardise with the same numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nas.training.dataset import MNIST, Dataset

MNIST_MEAN, MNIST_STD = MNIST.mean, MNIST.std  # 0.1307, 0.3081: kept for existing callers


def normalize(x: torch.Tensor, dataset: Dataset = MNIST) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> standardised float32, ``(x / 255 - mean) / std`` with the
    mean and std ``dataset`` states."""
    return (x.float() / 255.0 - dataset.mean) / dataset.std


def random_affine(x: torch.Tensor, rotate_deg: float, translate: float, scale: float,
                  generator: torch.Generator | None = None,
                  dataset: Dataset = MNIST) -> torch.Tensor:
    """Warp each image of a float batch (N, C, H, W) by its own random rotation (±rotate_deg),
    translation (± translate × image size) and scale (1 ± scale), in one ``grid_sample``.

    Out-of-image pixels are filled with the value of a black pixel, so ``x`` should already be
    normalised with ``dataset``'s constants (background = ``normalize(0, dataset)``) — we warp
    ``x - background`` and add it back.
    """
    n = x.shape[0]
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, device=dev, generator=generator) * (hi - lo) + lo

    angle = uniform(-rotate_deg, rotate_deg) * (math.pi / 180)
    s = 1.0 / uniform(1 - scale, 1 + scale)  # the grid maps output -> input, hence 1/scale
    tx, ty = uniform(-2 * translate, 2 * translate), uniform(-2 * translate, 2 * translate)
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    bg = -dataset.mean / dataset.std
    return F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + bg


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of the batch (N, C, H, W) mirrored left-right with probability 1/2 (one
    uniform draw per image from ``generator``)."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)
