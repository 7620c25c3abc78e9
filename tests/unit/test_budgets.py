"""Budgets are work (epochs, trials, models); the clock is only a cap that fails loudly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from training.budget import BudgetExceeded, WallCap


def slow_clock(step: float) -> SimpleNamespace:
    """A monotonic clock on which every reading is `step` seconds after the previous one:
    a machine so loaded that each batch takes that long."""
    now = [0.0]

    def monotonic() -> float:
        now[0] += step
        return now[0]

    return SimpleNamespace(monotonic=monotonic)


def test_a_fit_past_its_cap_fails_instead_of_keeping_a_smaller_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    import training.text.loop as loop

    torch.manual_seed(0)
    features, targets = torch.randn(48, 4), torch.randint(0, 2, (48,))
    model = torch.nn.Linear(4, 2)

    def loss_fn(net: torch.nn.Module, rows: list[int]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(net(features[rows]), targets[rows])

    params = loop.TrainParams(epochs=3, batch_size=16, patience=5, max_minutes=1.0)
    monkeypatch.setattr(loop, "time", slow_clock(25.0))  # the 3rd batch ends past 60 s
    with pytest.raises(BudgetExceeded, match="safety cap of 1 min in epoch 1 of 3"):
        loop.train_loop(
            model, [4] * 48, lambda rows: rows, loss_fn, lambda net: {"acc": 0.5}, "acc",
            params, on_epoch=None,
        )  # fmt: skip


def test_a_cap_names_the_knob_and_only_fires_once_passed(monkeypatch) -> None:
    import training.budget as budget

    monkeypatch.setattr(budget, "time", slow_clock(10.0))
    cap = WallCap(25, "tuning", "text.tune.timeout_s")  # started at 10
    cap.check("after 1 trial")  # 10 s elapsed on this clock
    with pytest.raises(BudgetExceeded) as raised:
        cap.check("after 2 trials")  # 20 s: still under the cap
        cap.check("after 3 trials")  # 30 s: past it
    assert str(raised.value).startswith("tuning passed its safety cap of 25 s (after 3 trials)")
    assert "raise text.tune.timeout_s" in str(raised.value)


def test_the_cli_turns_a_passed_cap_into_one_line(capsys) -> None:
    import typer

    from pipelines.commands.common import friendly_errors

    @friendly_errors
    def command() -> None:
        raise BudgetExceeded("pretraining passed its safety cap of 2700 s")

    with pytest.raises(typer.Exit):
        command()
    assert "error: pretraining passed its safety cap of 2700 s" in capsys.readouterr().err
