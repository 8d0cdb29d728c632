"""Small search configurations on the synthetic data, shared by the search-level tests."""

from __future__ import annotations

from pathlib import Path

from nas.search import SearchConfig
from nas.train import TrainConfig

TINY_TRAIN = TrainConfig(epochs=2, batch_size=100, lr=0.1, eval_batch_size=500)


def tiny_config(tmp_path: Path, data_dir: Path, **changes) -> SearchConfig:
    base = dict(storage=f"sqlite:///{tmp_path / 'nas.db'}", study_name="t", trials=3,
                max_params=20_000, data_dir=str(data_dir), n_val=200, device="cpu",
                train=TINY_TRAIN)
    base.update(changes)
    return SearchConfig(**base)
