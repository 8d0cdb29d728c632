"""Standalone PyTorch source for a spec: a ``model.py`` that needs only torch.

The generated ``build()`` returns an ``nn.Sequential`` with the same module names as
:func:`nas.arch.build.build`, so a state dict saved by ``nas`` loads into it unchanged.
"""

from __future__ import annotations

import textwrap

from nas import __version__
from nas.arch.build import MODULES
from nas.arch.plan import plan
from nas.arch.spec import ArchSpec
from nas.training.dataset import MNIST, Dataset

# The training settings ``fit`` reads (TrainConfig fields that change the math; the device,
# precision and speed switches stay with nas).
RECIPE_KEYS = ("epochs", "batch_size", "lr", "pct_start", "momentum", "nesterov", "weight_decay",
               "label_smoothing", "ema", "augment", "rotate_deg", "translate", "scale", "seed")
# Read by ``fit`` only when on (Fashion-MNIST's default), so that a recipe without flips reads
# exactly as it did before the setting existed.
OPTIONAL_RECIPE_KEYS = ("hflip",)

FIT_SOURCE = '''

RECIPE = {recipe}


def one_cycle(step: int, total: int, pct_start: float) -> float:
    """nas's learning-rate multiplier: linear warm-up from 1/25 to 1, then linear to 0."""
    warm = max(1, round(pct_start * total))
    if step < warm:
        return 0.04 + 0.96 * step / warm
    return max(0.0, (total - step) / max(1, total - warm))


def augment(x: torch.Tensor, rotate_deg: float, translate: float, scale: float,
            gen: torch.Generator) -> torch.Tensor:
    """nas's batched augmentation: one random rotation, translation and scale per image."""
    import math

    import torch.nn.functional as F

    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) * (hi - lo) + lo

    angle = uniform(-rotate_deg, rotate_deg) * (math.pi / 180)
    s = 1.0 / uniform(1 - scale, 1 + scale)
    tx, ty = uniform(-2 * translate, 2 * translate), uniform(-2 * translate, 2 * translate)
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    bg = -MEAN / STD  # a black pixel, normalised: what comes in from outside the image
    return F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + bg


def fit(pixels: torch.Tensor, labels: torch.Tensor, recipe: dict = RECIPE) -> nn.Module:
    """Train ``build()`` on uint8 ``pixels`` (N, C, H, W) and int64 ``labels`` (N,) with the
    recipe nas trained it with: Nesterov SGD, one-cycle schedule, weight decay on weights
    only, label smoothing, batched augmentation (left-right flips of half the batch when
    ``recipe["hflip"]``), and (when ``recipe["ema"]`` > 0) a moving
    average of the weights, which is what it returns. On the CPU, one thread or more, it
    reproduces ``nas.replay``'s training in distribution (nas draws its dropout masks with
    a faster generator, so the numbers differ seed for seed).

        import model
        net = model.fit(train_pixels, train_labels)          # e.g. all {name} training images
        net.eval(); predictions = net(model.preprocess(test_pixels)).argmax(1)
    """
    import copy

    import torch.nn.functional as F

    r = {{**RECIPE, **recipe}}
    torch.manual_seed(r["seed"])
    gen = torch.Generator().manual_seed(r["seed"])
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(1)
    model = build()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BatchNorm and biases
    opt = torch.optim.SGD([{{"params": decay, "weight_decay": r["weight_decay"]}},
                           {{"params": no_decay, "weight_decay": 0.0}}],
                          lr=r["lr"], momentum=r["momentum"], nesterov=r["nesterov"])
    n = len(labels)
    bs = min(r["batch_size"], n)
    steps = n // bs  # the ragged last batch is dropped
    total = r["epochs"] * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: one_cycle(t, total,
                                                                     r["pct_start"]))
    average = copy.deepcopy(model).requires_grad_(False) if r["ema"] > 0 else None
    t = 0
    for _ in range(r["epochs"]):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            xb = preprocess(pixels[idx])
            if r["augment"]:
                xb = augment(xb, r["rotate_deg"], r["translate"], r["scale"], gen)
                if r.get("hflip"):  # after the warp, as nas draws it
                    flip = torch.rand(xb.shape[0], generator=gen) < 0.5
                    xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), labels[idx], label_smoothing=r["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            t += 1
            if average is not None:  # d = min(ema, t / (9 + t)): forgets the start quickly
                d = min(r["ema"], t / (9 + t))
                with torch.no_grad():
                    for a, b in zip(average.state_dict().values(), model.state_dict().values()):
                        if a.is_floating_point():
                            a.lerp_(b, 1.0 - d)
                        else:
                            a.copy_(b)
    return average if average is not None else model
'''


def _doc(text: str) -> str:
    """``text`` safe inside the generated file's docstrings and comments: class names and a
    data set's name may come from a user's file or a shared study, and must not end a string
    or a line (no control characters, no backslash, no quote run)."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return clean.replace("\\", "/").replace('"', "'")


def recipe_of(train_config: dict[str, object]) -> dict[str, object]:
    """The training settings of a recorded ``train_config`` that ``fit`` takes."""
    from nas.training.trainer import TrainConfig

    cfg = TrainConfig.from_dict(train_config).to_dict()
    return {k: cfg[k] for k in RECIPE_KEYS} | {k: cfg[k] for k in OPTIONAL_RECIPE_KEYS
                                               if cfg[k]}


def model_source(spec: ArchSpec, recipe: dict[str, object] | None = None,
                 dataset: Dataset = MNIST) -> str:
    """The source of a standalone ``model.py`` for ``spec``: ``build()``, ``PARAMS``,
    ``INPUT_SHAPE`` and ``preprocess`` (the input contract, the trainer's normalisation with
    ``dataset``'s mean and std); with a ``recipe`` (:func:`recipe_of`) also ``RECIPE`` and
    ``fit()``, which trains the network the way nas did."""
    p = plan(spec)
    layers = []
    for layer in p.layers:
        args = ", ".join(f"{k}={v!r}" for k, v in layer.args.items())
        layers.append(f"        ({layer.name!r}, nn.{MODULES[layer.kind].__name__}({args})),")
    body = "\n".join(layers)
    n, rf = p.params, p.receptive_field
    recipe_doc, fit = "", ""
    if recipe is not None:
        settings = ", ".join(f"{k}={v!r}" for k, v in recipe.items())
        recipe_doc = "\n" + textwrap.fill(
            f"Training recipe (what nas trained it with; ``fit()`` applies it): {settings}. "
            f"``net = fit(pixels, labels)`` trains a fresh network that way.", 96) + "\n"
        fit = FIT_SOURCE.format(recipe=repr(recipe), name=_doc(dataset.name))
    c, h, w = dataset.shape
    classes = textwrap.fill(f"Classes ({_doc(dataset.classes_text())}).", 96)
    title, name = _doc(dataset.title()), _doc(dataset.name)
    meaning = f", {_doc(dataset.pixels)}" if dataset.pixels else ""
    return f'''"""A CNN found by nas {__version__}: {n:,} parameters, receptive field {rf}.

Spec key: {spec.key()}

Trained on {title}.
{classes}

Standalone: needs only torch. ``python model.py [weights.pt]`` builds it, checks the parameter
count, optionally loads weights, and runs one forward pass.

Input contract: ``build()``'s network takes NORMALISED float32 images, shape (N, {c}, {h}, {w}).
Images as they come ({name}'s files as stored: uint8 pixels 0-255{meaning})
go through ``preprocess`` first: ``model(preprocess(pixels))``. Fed [0, 1] pixels instead, the
network silently loses accuracy. (``model.onnx``, when exported, has ``preprocess`` inside:
it takes the uint8 pixels directly.)
{recipe_doc}"""

from collections import OrderedDict

import torch
from torch import nn

PARAMS = {n}
INPUT_SHAPE = (1, {spec.in_channels}, {spec.input_size}, {spec.input_size})
MEAN, STD = {dataset.mean!r}, {dataset.std!r}  # {name}'s training-set pixel mean and std, on [0, 1]


def preprocess(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0-255, shape (N, {c}, {h}, {w}) or (N, {h}, {w}) -> the network's input:
    float32 (N, {c}, {h}, {w}), (pixels / 255 - MEAN) / STD, exactly what nas trained on."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"preprocess takes uint8 pixels 0-255, got {{pixels.dtype}}")
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(1)
    return (pixels.float() / 255.0 - MEAN) / STD


def build() -> nn.Sequential:
    return nn.Sequential(OrderedDict([
{body}
    ]))
{fit}

if __name__ == "__main__":
    import sys

    model = build()
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMS, (n, PARAMS)
    if len(sys.argv) > 1:
        state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
    model.eval()
    pixels = torch.zeros(INPUT_SHAPE, dtype=torch.uint8)
    print(f"{{n:,}} parameters; output shape {{tuple(model(preprocess(pixels)).shape)}}")
'''
