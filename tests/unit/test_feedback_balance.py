"""A new intent's few feedback labels are repeated up to the median class size before the
retrain (`loop.feedback_oversample`), so the classifier does not abstain on it for being rare;
the scenario (`scrm eval loop`) retrains exactly as the train stage does."""

from __future__ import annotations

import pandas as pd

from pipelines.loop import balance_feedback
from pipelines.loop_eval import retrain
from tests.support import REPO, settings_at


def frame(counts: dict[str, int]) -> pd.DataFrame:
    rows = [(f"{label} {i}", label) for label, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def test_a_rare_class_is_repeated_up_to_the_median_and_a_known_one_is_not() -> None:
    train = frame({"a": 100, "b": 120, "c": 80})  # median 100
    extra = frame({"new": 30, "a": 5})
    out = balance_feedback(train, extra, 1.0)
    counts = out["label"].value_counts()
    assert counts["new"] == 120  # 30 x ceil(100 / 30): at least the median
    assert counts["a"] == 5  # a well-known class gets its labels once
    assert set(out["text"]) == set(extra["text"])  # repeated, never invented
    half = balance_feedback(train, extra, 0.5)["label"].value_counts()
    assert half["new"] == 60 and half["a"] == 5
    assert balance_feedback(train, extra, 0.0).equals(extra)


def test_the_scenario_retrains_with_the_same_balancing(tmp_path, monkeypatch) -> None:
    from pipelines import loop_eval

    settings = settings_at(tmp_path)
    assert settings.loop.feedback_oversample == 1.0
    assert REPO.joinpath("params.yaml").read_text().count("feedback_oversample: 1.0") == 1
    seen = []
    monkeypatch.setattr(loop_eval, "Model", lambda s, train, dev: seen.append(train))
    data = {"train": frame({"card": 20, "pay": 30}), "dev": frame({"card": 2})}
    retrain(settings, data, [("verify my identity please", "new"), ("who am I", "new")])
    assert seen[0]["label"].value_counts().to_dict() == {"pay": 30, "card": 20, "new": 26}
