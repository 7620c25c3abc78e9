"""The DKT network as a module-level class, so MLflow can pickle and reload it (the
registry's champion is rescored on the frozen test students before a challenger replaces it).
Imported only by the functions that need torch."""

from __future__ import annotations

import torch


class DKTNet(torch.nn.Module):
    """(batch, steps, 2 x skills) answer one-hots -> (batch, steps, skills) logits."""

    def __init__(self, n_skills: int, hidden: int):
        super().__init__()
        self.n_skills = n_skills
        self.lstm = torch.nn.LSTM(2 * n_skills, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, n_skills)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(x)[0])
