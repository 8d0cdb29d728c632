"""Batched, on-device normalisation and augmentation: one affine warp for the whole batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 1, H, W) -> standardised float32."""
    return (x.float() / 255.0 - MNIST_MEAN) / MNIST_STD


def random_affine(x: torch.Tensor, rotate_deg: float, translate: float, scale: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Warp each image of a float batch (N, C, H, W) by its own random rotation (±rotate_deg),
    translation (± translate × image size) and scale (1 ± scale), in one ``grid_sample``.

    Out-of-image pixels are filled with the value of a black pixel, so ``x`` should already be
    normalised (background = ``normalize(0)``) — we warp ``x - background`` and add it back.
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
    bg = -MNIST_MEAN / MNIST_STD
    return F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + bg
