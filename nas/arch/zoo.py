"""Well-known hand-designed networks, as specs, by the names ``nas.replay --spec`` takes.

The two from the MNIST < 20k-parameter challenge are members of the search space
(:mod:`nas.arch.space`); ``hardmaru_fashion_83k``, a published Fashion-MNIST design with 5x5
convolutions, is not. Their parameter counts are the reference answers the tests check
(16,146, 19,378 and 83,466, conv biases included).
"""

from __future__ import annotations

from nas.arch.spec import ArchSpec, BatchNorm, Block, Conv1x1, Conv3x3, Dropout, Head, MaxPool

# The classic challenge these networks were designed for.
CHALLENGE_ACCURACY = 0.994  # mean test accuracy
CHALLENGE_EPOCHS = 20


def bn_dropout_16k(dropout: float = 0.1) -> ArchSpec:
    """conv 1→16, BN, conv 16→16, BN, dropout, pool, conv 16→16, BN, conv 16→16, BN, dropout,
    pool, conv 16→32, BN, 1×1 conv 32→8, flatten, linear 392→10 (all 3×3 convs padded):
    16,146 parameters."""
    c = Conv3x3
    return ArchSpec(
        stem=c(16),
        blocks=(
            Block((c(16, dropout=dropout),), (MaxPool(),)),
            Block((c(16), c(16, dropout=dropout)), (MaxPool(),)),
            Block((c(32),), (Conv1x1(8),)),
        ),
        head=Head("flatten_linear"),
        order="conv-relu-bn",
    )


def pool_bn_19k(dropout: float = 0.1) -> ArchSpec:
    """conv 1→8, conv 8→8, pool, BN, dropout, conv 8→16, conv 16→16 (no pad), pool, BN,
    dropout, conv 16→32 (no pad), conv 32→32 (no pad), flatten, linear 128→10: 19,378
    parameters."""
    def c(out: int, pad: int = 1) -> Conv3x3:
        return Conv3x3(out, padding=pad, bn=False)

    return ArchSpec(
        stem=c(8),
        blocks=(
            Block((c(8),), (MaxPool(), BatchNorm(), Dropout(dropout))),
            Block((c(16), c(16, 0)), (MaxPool(), BatchNorm(), Dropout(dropout))),
            Block((c(32, 0), c(32, 0))),
        ),
        head=Head("flatten_linear"),
        order="conv-relu-bn",
    )


def hardmaru_fashion_83k() -> ArchSpec:
    """conv 5×5 1→32 (pad 2), ReLU, pool, conv 5×5 32→64 (pad 2), ReLU, pool, flatten, linear
    3136→10: 83,466 parameters, no BatchNorm, no dropout.

    The "2 Conv Layers net <100K parameters" of the Fashion-MNIST benchmark table
    (https://github.com/zalandoresearch/fashion-mnist#benchmark, 0.925 Fashion, 0.992 MNIST,
    a single run) by David Ha (@hardmaru), ``Net`` in
    https://github.com/hardmaru/pytorch_notebooks/blob/master/pytorch_tiny_custom_mnist_adam.ipynb
    (trained there with Adam, lr 1e-3, batch 1000, 30 epochs; its notebook reports 92.47 %).
    Here it is trained like every other network, with nas's recipe."""
    def c(out: int) -> Conv3x3:
        return Conv3x3(out, kernel=5, padding=2, bn=False)

    return ArchSpec(
        stem=c(32),
        blocks=(Block((), (MaxPool(),)), Block((c(64),), (MaxPool(),))),
        head=Head("flatten_linear"),
    )


REFERENCE = {"bn_dropout_16k": bn_dropout_16k, "pool_bn_19k": pool_bn_19k,
             "hardmaru_fashion_83k": hardmaru_fashion_83k}
SPACE_MEMBERS = ("bn_dropout_16k", "pool_bn_19k")  # the names of REFERENCE the space can draw
