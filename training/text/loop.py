"""One plain torch training loop for every head: AdamW, linear warmup, early stopping, a cap.

The budget of a fit is its epochs (and patience on the dev metric), never the clock: the same
seed and settings give the same model on a quiet and on a loaded machine. `max_minutes` is only
a safety cap, and reaching it fails the fit (`BudgetExceeded`) instead of quietly returning a
model trained for fewer steps.

The loop returns a per-epoch history instead of logging it, and calls `on_epoch(epoch, metrics)`
after each epoch: the caller decides where metrics go (MLflow) and whether to stop early (an
Optuna pruner raises `TrialPruned` from the callback, which propagates out of `fit_*`). It also
calls `on_step(StepProgress)` after every optimizer step when given one: training never prints,
the caller draws the progress bar (pipelines/progress.py). What each head feeds the loop (its
batches, loss and dev score) is in fit.py.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from training.budget import BudgetExceeded
from training.text.data import DEFAULT_PAD_MULTIPLE, Batch, length_buckets

OnEpoch = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int = 3  # epochs without dev improvement before stopping
    seed: int = 42
    max_minutes: float = 20.0  # safety cap: past it the fit fails (BudgetExceeded), never stops
    max_grad_norm: float = 1.0
    # Batches are drawn from pools of this many batches sorted by length: little padding,
    # yet still shuffled across epochs.
    bucket_batches: int = 50
    # Batch widths are rounded up to a multiple of this (capped at the model's max_len): torch
    # builds CPU kernels per new input shape, and length buckets otherwise make dozens of them.
    pad_multiple: int = DEFAULT_PAD_MULTIPLE


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("nan")
    seconds: float = 0.0
    stopped: str = "epochs"  # epochs | patience


@dataclass(frozen=True)
class StepProgress:
    """Where a fit stands after one optimizer step: what a progress bar needs, nothing more."""

    epoch: int
    epochs: int
    step: int  # optimizer steps taken so far in this fit
    steps: int  # planned: epochs x batches per epoch (early stopping ends sooner)
    loss: float  # this batch's mean loss
    budget_left: float  # seconds left before the safety cap (`max_minutes`)


OnStep = Callable[[StepProgress], None]


def over_cap(params: TrainParams, epoch: int) -> BudgetExceeded:
    return BudgetExceeded(
        f"training passed its safety cap of {params.max_minutes:g} min in epoch {epoch} of "
        f"{params.epochs}; the budget is epochs, so no model was kept: raise max_minutes "
        "if this machine is slower, or lower epochs"
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- the loop -----------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, params: TrainParams, steps: int):
    """AdamW without decay on biases and LayerNorm weights, linear warmup then linear decay."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": params.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=params.lr,
    )
    warmup = max(1, int(params.warmup_ratio * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(
    model: nn.Module,
    batches: Iterable[list[int]],
    collate: Callable[[list[int]], Batch],
    loss_fn: Callable[[nn.Module, Batch], Tensor],
    optimizer_and_schedule: tuple[Any, Any],
    params: TrainParams,
    deadline: float,
    on_loss: Callable[[float], None] | None = None,
) -> tuple[float, bool]:
    """One pass over `batches`: (mean train loss, whether the safety cap passed mid-epoch)."""
    optimizer, scheduler = optimizer_and_schedule
    model.train()
    total, count = 0.0, 0
    for indices in batches:
        loss = loss_fn(model, collate(indices))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
        optimizer.step()
        scheduler.step()
        value = loss.item()
        total, count = total + value * len(indices), count + len(indices)
        if on_loss is not None:
            on_loss(value)
        if time.monotonic() > deadline:
            return total / max(count, 1), True
    return total / max(count, 1), False


def step_reporter(
    on_step: OnStep | None, epoch: int, params: TrainParams, batches: int, deadline: float
) -> Callable[[float], None] | None:
    """Turns each batch loss of `epoch` into a `StepProgress` for `on_step` (None: no calls)."""
    if on_step is None:
        return None
    done = [(epoch - 1) * batches]

    def report(loss: float) -> None:
        done[0] += 1
        left = max(0.0, deadline - time.monotonic())
        on_step(StepProgress(epoch, params.epochs, done[0], params.epochs * batches, loss, left))

    return report


def train_loop(
    model: nn.Module,
    lengths: Sequence[int],
    collate: Callable[[list[int]], Batch],
    loss_fn: Callable[[nn.Module, Batch], Tensor],
    evaluate: Callable[[nn.Module], dict[str, float]],
    metric: str,
    params: TrainParams,
    on_epoch: OnEpoch | None,
    higher_is_better: bool = True,
    on_step: OnStep | None = None,
) -> FitResult:
    """Train until `epochs` or `patience` epochs without a better dev `metric` (raises
    `BudgetExceeded` past the `max_minutes` cap); the model ends with its best epoch's weights."""
    seed_everything(params.seed)
    rng = random.Random(params.seed)
    batches = math.ceil(len(lengths) / params.batch_size)
    schedule = make_optimizer(model, params, params.epochs * batches)
    result, best_state, stale = FitResult(), None, 0
    sign = 1.0 if higher_is_better else -1.0
    start = time.monotonic()
    deadline = start + 60.0 * params.max_minutes
    for epoch in range(1, params.epochs + 1):
        order = length_buckets(lengths, params.batch_size, params.bucket_batches, rng)
        report = step_reporter(on_step, epoch, params, batches, deadline)
        train_loss, spent = train_epoch(
            model, order, collate, loss_fn, schedule, params, deadline, report
        )
        if spent:
            raise over_cap(params, epoch)
        model.eval()
        with torch.inference_mode():
            metrics = {"train_loss": train_loss, **evaluate(model)}
        metrics["seconds"] = time.monotonic() - start
        result.history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if best_state is None or sign * metrics[metric] > sign * result.best_metric:
            result.best_epoch, result.best_metric, stale = epoch, metrics[metric], 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if stale >= params.patience:
            result.stopped = "patience"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.monotonic() - start
    return result
