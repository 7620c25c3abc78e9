"""Uplift model and its metrics on a seeded synthetic experiment with a known effect (the
Hillstrom fits are in tests/integration/test_uplift.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklift.metrics import qini_auc_score

from pipelines.commands.marketing import parse_seeds
from training.uplift import Experiment, MultiArmLogit, campaign, load_hillstrom


def synthetic(rows: int = 20000, seed: int = 0) -> Experiment:
    """Arm 2 lifts the response only where feature 0 is positive; arm 1 does nothing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    arm = rng.integers(0, 3, size=rows)
    logit = -1.0 + 0.5 * x[:, 1] + np.where((arm == 2) & (x[:, 0] > 0), 1.5, 0.0)
    visit = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    outcomes = pd.DataFrame({"visit": visit, "conversion": visit, "spend": visit * 10.0})
    return Experiment({"base": x}, arm, outcomes)


def test_the_model_ranks_whom_the_message_moves() -> None:
    data = synthetic()
    fit, score = np.arange(14000), np.arange(14000, 20000)
    y = data.outcomes["visit"].to_numpy()
    model = MultiArmLogit(c=1.0).fit(data.features["base"][fit], y[fit], data.arm[fit])
    uplift = model.uplift(data.features["base"][score], (2,))
    # the effect lives where x0 > 0: the ranking follows it, not the baseline response (x1)
    assert np.corrcoef(uplift, data.features["base"][score, 0])[0, 1] > 0.8
    rows = score[np.isin(data.arm[score], (0, 2))]
    treated = (data.arm[rows] == 2).astype(int)
    ranked = model.uplift(data.features["base"][rows], (2,))
    oracle = (data.features["base"][rows, 0] > 0) + 1e-6 * data.features["base"][rows, 0]
    best = qini_auc_score(y[rows], oracle, treated)  # ranked by the true effect
    assert qini_auc_score(y[rows], ranked, treated) > 0.8 * best > 0.05
    shuffled = np.random.default_rng(1).permutation(ranked)
    assert qini_auc_score(y[rows], shuffled, treated) < 0.5 * best
    # arm 1 has no effect: its predicted uplift is small next to arm 2's
    assert (
        np.abs(model.uplift(data.features["base"][score], (1,))).mean()
        < 0.5 * np.abs(uplift).mean()
    )


def test_the_campaign_on_the_top_share_gains_more_per_send() -> None:
    data = synthetic(seed=3)
    rows = np.flatnonzero(np.isin(data.arm, (0, 2)))
    treated = (data.arm[rows] == 2).astype(int)
    truth = (data.features["base"][rows, 0] > 0).astype(float)  # the real effect as a score
    gains = campaign(data.outcomes.iloc[rows], truth + 1e-6 * np.arange(len(rows)), treated)
    assert gains["visit_top_30"] > 1.5 * gains["visit_random_30"] > 0


def test_a_file_that_is_not_hillstrom_is_refused(tmp_path) -> None:
    path = tmp_path / "other.csv"
    pd.DataFrame({"segment": ["Mens E-Mail"], "visit": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing"):
        load_hillstrom(path)


def test_seed_ranges_and_lists() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("0,5") == [0, 5]
    for wrong in ("a-b", "5-3"):  # not numbers; an empty range
        with pytest.raises(ValueError, match="range like 0-9"):
            parse_seeds(wrong)
