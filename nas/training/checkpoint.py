"""Checkpoints that carry what rebuilds them (nanoGPT's ``model_args``): the weights, the spec,
the training settings, the metrics and the versions that made them. Reading one trusts
nothing: it must hold exactly the tensors ``build(spec)`` has."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from nas import __version__
from nas.arch.spec import ArchSpec


def versions() -> dict[str, str]:
    """The versions of everything that shapes a result."""
    import optuna
    import optuna_dashboard
    import torch

    return {"nas": __version__, "python": platform.python_version(),
            "torch": str(torch.__version__), "optuna": str(optuna.__version__),
            "optuna_dashboard": str(optuna_dashboard.__version__)}


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(path: Path, spec: ArchSpec, state_dict: dict[str, Any],
                    train_config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Weights plus everything that rebuilds them (nanoGPT's ``model_args`` idea)."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    torch.save({"state_dict": state, "spec": spec.to_json(), "train_config": train_config,
                "metrics": metrics, "versions": versions()}, path)


def checkpoint_of(path: Path, spec: ArchSpec) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is one :func:`save_checkpoint` wrote for ``spec``:
    its spec, and a state dict with exactly the tensors (names, shapes, floating dtypes) that
    ``build(spec)`` has, so loading it cannot fail. None for a missing file or anything else
    (a checkpoint may come from a downloaded artifact folder)."""
    import torch

    from nas.arch.build import build

    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a checkpoint at all
        return None
    if not isinstance(ckpt, dict) or ckpt.get("spec") != spec.to_json() or \
            not isinstance(ckpt.get("state_dict"), dict):
        return None
    with torch.device("meta"):  # shapes only: nothing allocated
        want = {k: (tuple(v.shape), v.is_floating_point())
                for k, v in build(spec).state_dict().items()}
    have = ckpt["state_dict"]
    if set(have) != set(want) or not all(
            isinstance(v, torch.Tensor) and (tuple(v.shape), v.is_floating_point()) == want[k]
            for k, v in have.items()):
        return None
    return ckpt


def load_weights(path: Path) -> dict[str, Any]:
    """The state dict of a checkpoint written by :func:`save_checkpoint`, loaded without
    unpickling code (``weights_only``)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
