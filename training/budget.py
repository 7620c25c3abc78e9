"""Wall-clock safety caps that fail loudly.

Every training budget is counted in work (epochs, steps, trials, models), so a loaded machine
trains the same model as a quiet one, only later. The clock is only a cap against a runaway
fit: passing it raises `BudgetExceeded`, never hands on a smaller model. This module imports
nothing heavy, so `scrm` can turn the error into one readable line.
"""

from __future__ import annotations

import time


class BudgetExceeded(RuntimeError):
    """A fit, study or AutoML run went past its wall-clock safety cap."""


class WallCap:
    """A started clock with a cap in seconds; `check` raises once the cap has passed."""

    def __init__(self, seconds: float, what: str, knob: str):
        self.seconds, self.what, self.knob = seconds, what, knob
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def left(self) -> float:
        return max(0.0, self.seconds - self.elapsed)

    def check(self, where: str) -> None:
        if self.elapsed > self.seconds:
            raise BudgetExceeded(
                f"{self.what} passed its safety cap of {self.seconds:g} s ({where}); its budget "
                f"is counted in work, so nothing smaller was kept: raise {self.knob} if this "
                "machine is slower, or lower the work"
            )
