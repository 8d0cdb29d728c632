from __future__ import annotations

import torch

from nas.training.augment import MNIST_MEAN, MNIST_STD, normalize, random_affine


def test_normalize():
    x = torch.tensor([[0, 255]], dtype=torch.uint8)
    out = normalize(x)
    torch.testing.assert_close(out, torch.tensor([[-MNIST_MEAN / MNIST_STD,
                                                   (1 - MNIST_MEAN) / MNIST_STD]]))


def test_zero_strength_is_identity():
    x = normalize(torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8))
    torch.testing.assert_close(random_affine(x, 0.0, 0.0, 0.0), x, atol=1e-5, rtol=1e-5)


def test_each_image_gets_its_own_warp_and_background_stays_black():
    x = normalize(torch.zeros(8, 1, 28, 28, dtype=torch.uint8))
    x[:, :, 10:18, 10:18] = normalize(torch.tensor(255, dtype=torch.uint8))
    g = torch.Generator().manual_seed(0)
    out = random_affine(x, 15.0, 0.1, 0.1, g)
    assert out.shape == x.shape
    bg = float(normalize(torch.tensor(0, dtype=torch.uint8)))
    # corners stay background
    torch.testing.assert_close(out[:, :, 0, 0], torch.full((8, 1), bg))
    diffs = [(out[i] - out[0]).abs().max().item() for i in range(1, 8)]
    assert min(diffs) > 0.1
    # reproducible from the generator
    again = random_affine(x, 15.0, 0.1, 0.1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)
