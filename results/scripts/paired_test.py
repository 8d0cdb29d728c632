"""Two replays compared on the same test images, paired.

    python results/scripts/paired_test.py runs/replay-A runs/replay-B [--out result.json] [--dataset fashion-mnist]

Each folder is a ``nas.replay --out`` folder (``seed<K>.pt`` files: spec, settings, weights).
Every seed's network is evaluated on the test set of ``--dataset`` (default MNIST, the shipped
copy), normalised as that data set's trainings are; each image's share
of seeds that got it right is differenced between A and B; the mean of those differences is
A's lead, its standard error the differences' stdev / sqrt(10,000). Also each side's mean ±
std over seeds and the seed-level standard error of the difference, for comparison. Test
images are read only here, for reporting: nothing is selected on them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

from nas.arch.build import build
from nas.arch.spec import ArchSpec
from nas.training.checkpoint import load_weights
from nas.training.dataset import Dataset
from nas.training.sources import load_data
from nas.training.trainer import TrainConfig, evaluate_correct


def correct_by_seed(folder: Path, x: torch.Tensor, y: torch.Tensor,
                    dataset: Dataset) -> list[torch.Tensor]:
    out = []
    for path in sorted(folder.glob("seed*.pt"), key=lambda p: int(p.stem[4:])):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        spec = ckpt["spec"]  # JSON text, as save_checkpoint writes it
        model = build(ArchSpec.from_json(spec) if isinstance(spec, str) else ArchSpec.from_dict(spec))
        model.load_state_dict(load_weights(path))
        cfg = TrainConfig.from_dict(ckpt["train_config"])
        out.append(evaluate_correct(model, x, y, cfg, precision="fp32", dataset=dataset))
    if not out:
        sys.exit(f"{folder}: no seed*.pt")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--dataset", default="mnist", help="the data both were trained on")
    args = p.parse_args()
    data = load_data(args.dataset)
    test = data.test
    x = test.x.unsqueeze(1) if test.x.ndim == 3 else test.x  # (N, C, H, W), as trained
    y = test.y
    a = correct_by_seed(args.a, x, y, data.dataset)
    b = correct_by_seed(args.b, x, y, data.dataset)
    acc_a = [c.float().mean().item() for c in a]
    acc_b = [c.float().mean().item() for c in b]
    share_a = torch.stack(a).float().mean(0)
    share_b = torch.stack(b).float().mean(0)
    d = (share_a - share_b).tolist()
    se_paired = statistics.stdev(d) / math.sqrt(len(d))
    se_seeds = math.hypot(statistics.stdev(acc_a) / math.sqrt(len(acc_a)),
                          statistics.stdev(acc_b) / math.sqrt(len(acc_b)))
    res = {"a": str(args.a), "b": str(args.b), "dataset": data.dataset.name, "images": len(d),
           "a_seeds": acc_a, "b_seeds": acc_b,
           "a_mean": statistics.fmean(acc_a), "a_std": statistics.stdev(acc_a),
           "b_mean": statistics.fmean(acc_b), "b_std": statistics.stdev(acc_b),
           "difference": statistics.fmean(d), "se_paired": se_paired, "se_seeds": se_seeds}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
