from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.spec import ArchSpec, Block, Conv3x3, Head, MaxPool
from nas.arch.zoo import bn_dropout_16k
from nas.training import trainer as train_module
from nas.training.data import DataError, Split, load_mnist
from nas.training.trainer import (ConfigError, DeviceError, EpochReport, TrainConfig,
                                  TrainingDiverged, _CpuDropout, _training_view, check_data,
                                  images_per_epoch, one_cycle, precision_for, resolve_device,
                                  resolve_precision, steps_per_epoch, train)

FAST = TrainConfig(epochs=2, batch_size=64, lr=0.1, eval_batch_size=256)


@pytest.fixture()
def splits(tiny_mnist_dir):
    return load_mnist(tiny_mnist_dir, download=False).search_splits(val_size=200)


def test_learns_the_synthetic_task_and_reports_every_epoch(splits):
    reports: list[EpochReport] = []
    result = train(bn_dropout_16k(), *splits, replace(FAST, epochs=3), "cpu", reports.append)
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert result.accuracies == [r.accuracy for r in reports]
    assert result.final_accuracy > 0.8  # chance is 0.1
    assert all(loss > 0 for loss in result.train_losses)


def test_same_seed_same_numbers_other_seed_other_numbers(splits):
    cfg = replace(FAST, deterministic=True)
    a = train(bn_dropout_16k(), *splits, cfg, "cpu")
    b = train(bn_dropout_16k(), *splits, cfg, "cpu")
    c = train(bn_dropout_16k(), *splits, replace(cfg, seed=1), "cpu")
    assert a.accuracies == b.accuracies and a.train_losses == b.train_losses
    assert a.train_losses != c.train_losses


def test_divergence_is_an_exception_not_a_nan_result(splits):
    no_bn = ArchSpec(stem=Conv3x3(8, bn=False), blocks=(Block((Conv3x3(8, bn=False),),
                                                               (MaxPool(),)),),
                     head=Head("flatten_linear"))
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        train(no_bn, *splits, replace(FAST, lr=1e6, augment=False), "cpu")


def test_a_raising_callback_stops_training(splits):
    class Stop(Exception):
        pass

    def cb(r: EpochReport) -> None:
        raise Stop(r.epoch)

    with pytest.raises(Stop):
        train(bn_dropout_16k(), *splits, FAST, "cpu", cb)


@pytest.mark.parametrize("n, batch, steps, images", [
    (250, 100, 2, 200),  # the ragged 50 are dropped
    (200, 100, 2, 200),
    (250, 300, 1, 250),  # a batch larger than the split is the split
    (1, 64, 1, 1),
])
def test_an_epoch_trains_full_batches_only_and_the_figures_say_so(splits, monkeypatch, n,
                                                                  batch, steps, images):
    """What images_per_epoch says is what train consumes: counted at the loss, which sees
    every training batch and no evaluation one."""
    assert (steps_per_epoch(n, batch), images_per_epoch(n, batch)) == (steps, images)
    seen: list[int] = []
    loss = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda out, y, **kw: seen.append(len(y)) or
                        loss(out, y, **kw))
    tr, val = splits
    tiny = ArchSpec(stem=Conv3x3(4), blocks=(), head=Head("gap_linear"))  # 98 weights: fast
    train(tiny, Split(tr.x[:n], tr.y[:n]), val,
          replace(FAST, epochs=2, batch_size=batch, augment=False), "cpu")
    assert seen == [min(batch, n)] * (2 * steps) and sum(seen) == 2 * images
    with pytest.raises(ValueError):
        steps_per_epoch(0, batch)


def test_one_cycle_shape():
    total = 100
    lrs = [one_cycle(t, total, 0.25) for t in range(total)]
    assert lrs[0] == pytest.approx(0.04)
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 25
    assert lrs[-1] < 0.02 and all(a >= b for a, b in zip(lrs[25:], lrs[26:]))
    assert [one_cycle(t, 1, 0.25) for t in range(1)] == [0.04]  # tiny schedules work


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


def test_config_round_trip():
    cfg = replace(FAST, lr=0.3, seed=7)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_old_configs_with_bf16_switches_still_load():
    old = {**FAST.to_dict(), "bf16": True, "bf16_cpu": None}
    del old["precision"], old["fast_cpu_dropout"]
    assert TrainConfig.from_dict(old) == FAST and FAST.precision == "auto"
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")


@pytest.mark.parametrize("field, value, message", [
    ("epochs", -3, "epochs must be an integer from 1 to 1,000, got -3"),
    ("epochs", 1001, "epochs must be an integer"),
    ("epochs", True, "epochs must be an integer"),
    ("epochs", 2.0, "epochs must be an integer"),
    ("batch_size", 0, "batch_size"),
    ("eval_batch_size", "abc", "eval_batch_size"),
    ("seed", -1, "seed"),
    ("lr", 0, "lr must be a number finite and above 0"),
    ("lr", float("inf"), "lr"),
    ("pct_start", 1.5, "pct_start must be a number from 0 to 1"),
    ("momentum", 1.0, "momentum"),
    ("label_smoothing", float("nan"), "label_smoothing"),
    ("weight_decay", -1e-4, "weight_decay"),
    ("rotate_deg", "8", "rotate_deg"),
    ("ema", 1.0, "ema must be a number from 0 to 1 .excluded., got 1.0"),
    ("augment", 1, "augment must be true or false, got 1"),
    ("deterministic", "false", "deterministic must be true or false"),
    ("precision", "evil", "precision must be one of auto, bf16, fp16, fp32, got 'evil'"),
    ("epochs", "10**5000", "an integer of 16,610 bits"),  # no repr in 3.11: still one line
])
def test_every_config_field_is_checked_with_a_line_naming_it(field, value, message):
    value = 10**5000 if value == "10**5000" else value  # (pytest's test id could not show it)
    with pytest.raises(ConfigError, match=message):
        replace(FAST, **{field: value})
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({**FAST.to_dict(), field: value})


def test_config_combinations_and_non_mappings_are_refused():
    with pytest.raises(ConfigError, match="needs a momentum"):
        replace(FAST, momentum=0.0)  # torch's SGD refuses nesterov without momentum
    assert replace(FAST, momentum=0.0, nesterov=False).momentum == 0.0
    with pytest.raises(ConfigError, match="must be a mapping, got list"):
        TrainConfig.from_dict([1])  # type: ignore[arg-type]


def test_data_that_do_not_fit_the_spec_are_refused_before_training():
    spec = bn_dropout_16k()  # in1x28, 10 classes
    x = torch.zeros(4, 28, 28, dtype=torch.uint8)
    check_data(spec, Split(x, torch.tensor([0, 3, 9, 1])), "training")  # fits
    cases = [(Split(torch.zeros(4, 32, 32, dtype=torch.uint8), torch.zeros(4).long()),
              "images are 1x32x32 .channels x height x width., the spec takes 1x28x28"),
             (Split(torch.zeros(4, 3, 28, 28, dtype=torch.uint8), torch.zeros(4).long()),
              "images are 3x28x28"),
             (Split(x, torch.tensor([0, 3, 10, 1])), "labels run from 0 to 10, the spec has 10"),
             (Split(x, torch.tensor([0, -1, 2, 1])), "labels run from -1"),
             (Split(x[:0], torch.zeros(0).long()), "0 images")]
    for split, message in cases:
        with pytest.raises(DataError, match=message):
            check_data(spec, split, "training")
        with pytest.raises(DataError, match=message):  # train() checks before anything runs
            train(spec, split, split, FAST, "cpu")


# -- precision policy --------------------------------------------------------------------------
@pytest.mark.parametrize("capability, expected", [
    ((9, 0), "bf16"), ((8, 9), "bf16"), ((8, 0), "bf16"),  # H100, RTX 40xx, A100
    ((7, 5), "fp16"), ((7, 0), "fp16"),  # T4 / RTX 20xx, V100
    ((6, 1), "fp32"), ((5, 2), "fp32"),  # Pascal, Maxwell
])
def test_auto_precision_on_cuda_goes_by_compute_capability(capability, expected):
    assert resolve_precision("cuda", "auto", capability) == expected


def test_auto_precision_on_cpu_goes_by_bf16_units_and_requests_win():
    assert resolve_precision("cpu", "auto", cpu_bf16=True) == "bf16"
    assert resolve_precision("cpu", "auto", cpu_bf16=False) == "fp32"
    assert resolve_precision("mps", "auto") == "fp32"
    for requested in ("bf16", "fp16", "fp32"):
        assert resolve_precision("cuda", requested, (7, 5)) == requested
        assert resolve_precision("cpu", requested, cpu_bf16=False) == requested
    assert precision_for("cpu") in ("bf16", "fp32")
    assert precision_for(torch.device("cpu"), "fp16") == "fp16"
    with pytest.raises(ValueError, match="needs the compute capability"):
        resolve_precision("cuda", "auto")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("cpu", "float16")


class _CountingScaler(torch.amp.GradScaler):
    """The real GradScaler, counting what the trainer asks of it."""

    made: list[_CountingScaler] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {"scale": 0, "step": 0, "update": 0}
        _CountingScaler.made.append(self)

    def scale(self, outputs):
        self.calls["scale"] += 1
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.calls["step"] += 1
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls["update"] += 1
        return super().update(new_scale)


@pytest.mark.parametrize("precision, dtype", [
    ("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_each_precision_trains_in_its_dtype_and_only_fp16_scales_the_loss(
        splits, monkeypatch, precision, dtype):
    monkeypatch.setattr(torch.amp, "GradScaler", _CountingScaler)
    _CountingScaler.made = []
    seen: set[torch.dtype] = set()
    orig = nn.Conv2d.forward
    monkeypatch.setattr(nn.Conv2d, "forward", lambda self, x: seen.add(
        (out := orig(self, x)).dtype) or out)
    cfg = replace(FAST, precision=precision)
    result = train(bn_dropout_16k(), *splits, cfg, "cpu")
    assert result.precision == precision and seen == {dtype}
    assert result.final_accuracy > 0.5  # it learned (chance is 0.1)
    steps = cfg.epochs * (len(splits[0]) // cfg.batch_size)
    if precision == "fp16":
        (scaler,) = _CountingScaler.made
        assert scaler.calls == {"scale": steps, "step": steps, "update": steps}
    else:
        assert _CountingScaler.made == []


# -- dropout on CPU ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_is_nn_dropout_in_distribution(dtype):
    p = 0.1
    x = (torch.rand(64, 16, 28, 28) + 0.5).to(dtype).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    torch.manual_seed(0)
    y = _CpuDropout(p)(x)
    ref = F.dropout(x, p, training=True)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    kept = y != 0
    assert abs((~kept).float().mean().item() - p) < 0.002  # 3.2M draws: sd 1.7e-4
    # kept elements are scaled exactly as aten's dropout scales them (1 / (1 - p) in dtype)
    scale = torch.ones((), dtype=dtype).div(1 - p)
    scaled = x * scale
    assert torch.equal(y[kept], scaled[kept])
    assert torch.equal(ref[ref != 0], scaled[ref != 0])
    y.sum().backward()  # the gradient uses the same mask and scale
    assert torch.equal(x.grad, torch.where(kept, scale, torch.zeros((), dtype=dtype)))
    torch.manual_seed(0)
    assert torch.equal(_CpuDropout(p)(x), y)  # the default generator's seed fixes the mask
    assert not torch.equal(_CpuDropout(p)(x), y)
    assert _CpuDropout(p).eval()(x) is x and _CpuDropout(0.0)(x) is x


def test_cpu_dropout_drops_with_the_16_bit_threshold_it_states():
    # P(drop) = round(p * 2**16) / 2**16: for p = 1.45 / 2**16 that is 1 / 2**16, so 2**24
    # draws drop about 256 (sd 16), where the unrounded p would drop about 371.
    torch.manual_seed(0)
    dropped = (_CpuDropout(1.45 / 2**16)(torch.ones(2**24)) == 0).sum().item()
    assert abs(dropped - 256) < 4 * 16


def test_training_view_swaps_dropouts_on_cpu_only_and_leaves_the_model_as_built():
    from nas.arch.build import build

    model = build(bn_dropout_16k())
    view = _training_view(model, torch.device("cpu"), FAST)
    kinds = [type(m) for m in view]
    assert kinds.count(_CpuDropout) == 2 and nn.Dropout not in kinds
    assert all(v is m for v, m in zip(view, model) if type(m) is not nn.Dropout)
    assert [type(m) for m in model].count(nn.Dropout) == 2
    assert _training_view(model, torch.device("cpu"),
                          replace(FAST, fast_cpu_dropout=False)) is model
    assert _training_view(model, torch.device("cuda"), FAST) is model
    assert train_module.use_bf16(torch.device("cpu"), replace(FAST, precision="bf16"))


def test_weight_average_follows_its_formula_by_hand():
    live = nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))
    avg = train_module.WeightAverage(live, decay=0.9)
    w0 = live[0].weight.detach().clone()
    with torch.no_grad():
        live[0].weight.add_(1.0)
        live[1].num_batches_tracked.fill_(7)
    avg.update()  # step 1: d = min(0.9, 1 / 10) = 0.1, so 90 % of the way to the live weights
    assert torch.allclose(avg.model[0].weight, 0.1 * w0 + 0.9 * (w0 + 1.0))
    assert avg.model[1].num_batches_tracked.item() == 7  # integers are copied, not averaged
    for _ in range(99):
        avg.update()  # by step 100 the decay is capped at 0.9: the average is the live weight
    assert torch.allclose(avg.model[0].weight, w0 + 1.0, atol=1e-6)
    assert not avg.model[0].weight.requires_grad and live[0].weight.requires_grad


def test_with_ema_the_averaged_network_is_evaluated_and_returned(splits):
    plain = train(bn_dropout_16k(), *splits, FAST, "cpu")
    averaged = train(bn_dropout_16k(), *splits, replace(FAST, ema=0.99), "cpu")
    # Same seed, same steps: only what is evaluated differs.
    assert averaged.train_losses == pytest.approx(plain.train_losses, rel=1e-4)
    val = splits[1]
    for r in (plain, averaged):
        assert train_module.evaluate(r.model, val.x.unsqueeze(1), val.y, FAST) == \
            r.final_accuracy
    live_w = [p for p in plain.model.parameters()]
    avg_w = [p for p in averaged.model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(live_w, avg_w))
    assert averaged.final_accuracy > 0.8


def test_every_field_of_the_config_is_validated():
    """A new TrainConfig field must join one of validate()'s tables (a study from anywhere
    is untrusted input): this fails when one is added without."""
    checked = set(train_module._INT_RANGES) | set(train_module._FLOAT_RANGES) | \
        set(train_module._BOOLS) | {"precision"}
    assert set(TrainConfig.__dataclass_fields__) == checked


def test_on_step_reports_progress_inside_every_epoch(tiny_mnist_dir):
    """``on_step(epoch, step, steps)``: about 50 times an epoch, rising, each epoch ending at
    its last step; the training's numbers are the same with it or without."""
    from nas.arch.zoo import bn_dropout_16k
    from nas.training.data import load_mnist
    from nas.training.trainer import TrainConfig, steps_per_epoch, train

    data = load_mnist(str(tiny_mnist_dir))
    tr, val = data.search_splits(200, 0)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.05, eval_batch_size=500)
    calls: list[tuple[int, int, int]] = []
    with_steps = train(bn_dropout_16k(), tr, val, cfg, on_step=lambda *a: calls.append(a))
    steps = steps_per_epoch(len(tr), cfg.batch_size)
    assert steps == 100 and {c[2] for c in calls} == {steps}
    for epoch in (1, 2):
        got = [s for e, s, _ in calls if e == epoch]
        assert got == sorted(got) and got[-1] == steps and got[0] == 2 and len(got) == 50
    without = train(bn_dropout_16k(), tr, val, cfg)
    assert with_steps.accuracies == without.accuracies
