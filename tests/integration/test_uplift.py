"""Uplift on Hillstrom, seed 0 of the shared split: the baseline is the shared README's, and
ours beats it on visits for every treatment (fits of a few seconds each)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from training.uplift import evaluate_task, load_hillstrom

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hillstrom():
    return load_hillstrom(REPO / "data/raw/hillstrom/hillstrom.csv")


@pytest.mark.parametrize(
    ("task", "published"), [("womens_email", 0.067), ("any_email", 0.031), ("mens_email", 0.018)]
)
def test_ours_beats_the_shared_baseline_on_seed_0(hillstrom, task: str, published: float) -> None:
    result = evaluate_task(hillstrom, task, "visit", seed=0)
    assert result["baseline"]["qini_auc"] == pytest.approx(published, abs=0.0015)
    assert result["ours"]["qini_auc"] > result["baseline"]["qini_auc"]
    gains = result["campaign"]
    assert gains["visit_top_30"] > gains["visit_random_30"] > 0
