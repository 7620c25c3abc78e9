"""The Hillstrom feature view serves the rows the CSV has: a throwaway Feast repo (a copy of
features/) over the first rows of the data set, built, applied and materialised by the eval's
own step, then read back offline (the point-in-time training set the uplift model trains on)
and online. Feast's import costs ~10 s."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.hillstrom import FACTS, SENT_AT, hillstrom_customers, hillstrom_labels
from tests.support import REPO, settings_at
from training.uplift import experiment, load_hillstrom

CSV = REPO / "data/raw/hillstrom/hillstrom.csv"
ROWS = 400


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uplift-feast")
    shutil.copytree(
        REPO / "features", root / "features", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "data" / "raw" / "hillstrom").mkdir(parents=True)
    pd.read_csv(CSV, nrows=ROWS).to_csv(root / "data/raw/hillstrom/hillstrom.csv", index=False)
    return root


@pytest.fixture(scope="module")
def built(project: Path):
    from pipelines.uplift import build_hillstrom_view, hillstrom_training_set

    settings = settings_at(project)
    summary = build_hillstrom_view(settings)
    return settings, summary, hillstrom_training_set(settings, build=False)


def test_the_training_set_is_the_csv_row_for_row(built) -> None:
    _, summary, frame = built
    csv = pd.read_csv(CSV, nrows=ROWS)
    assert summary["customers"] == ROWS and len(frame) == ROWS
    assert frame["customer_id"].tolist() == [f"hs-{i:05d}" for i in range(ROWS)]
    assert (pd.to_datetime(frame["event_timestamp"], utc=True) == SENT_AT).all()
    for column in (*FACTS, "segment", "visit", "conversion", "spend"):
        got, want = frame[column].tolist(), csv[column].tolist()
        assert got == want, column


def test_the_experiment_from_features_equals_the_one_from_the_csv(built, tmp_path) -> None:
    _, _, frame = built
    small = tmp_path / "small.csv"
    pd.read_csv(CSV, nrows=ROWS).to_csv(small, index=False)
    ours, direct = experiment(frame), load_hillstrom(small)
    for name in direct.features:
        np.testing.assert_array_equal(ours.features[name], direct.features[name])
    np.testing.assert_array_equal(ours.arm, direct.arm)
    pd.testing.assert_frame_equal(ours.outcomes, direct.outcomes, check_dtype=False)


def test_the_online_store_serves_the_same_customers(built) -> None:
    from features.store import open_store

    settings, _, _ = built
    store = open_store(settings.feature_repo)
    csv = pd.read_csv(CSV, nrows=ROWS)
    picked = [0, 17, ROWS - 1]
    rows = store.get_online_features(
        features=[f"hillstrom_customers:{name}" for name in FACTS],
        entity_rows=[{"customer_id": f"hs-{i:05d}"} for i in picked],
    ).to_dict()
    for at, i in enumerate(picked):
        assert {name: rows[name][at] for name in FACTS} == csv.loc[i, list(FACTS)].to_dict()


def test_columns_that_are_not_hillstrom_are_refused() -> None:
    wrong = pd.DataFrame({"recency": [1], "segment": ["No E-Mail"]})
    for build in (hillstrom_customers, hillstrom_labels):
        with pytest.raises(ValueError, match="missing"):
            build(wrong)
