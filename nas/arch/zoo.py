"""Well-known hand-designed networks from the MNIST < 20k-parameter challenge, as specs.

Both are members of the search space (:mod:`nas.arch.space`), and their parameter counts are
the reference answers the tests check (16,146 and 19,378, conv biases included).
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


REFERENCE = {"bn_dropout_16k": bn_dropout_16k, "pool_bn_19k": pool_bn_19k}
