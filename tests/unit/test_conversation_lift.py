"""Conversation aggregates as churn-model inputs (issue 19, deliverable 5): the point-in-time
join, that they change what the model sees, the simulator's stated assumption, the metrics and
the written report. The full measurement is `scrm eval conversation-lift` (seconds)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from pipelines import conversation_lift as lift
from pipelines.conversation_lift import (
    CONVERSATION_FEATURES,
    HistoryParams,
    aggregates_as_of,
    simulate_history,
    with_conversations,
)
from training.tabular.challengers import ChallengerParams, fit_logistic_regression

AS_OF = pd.Timestamp("2020-06-25T00:00:00+00:00")


def event(customer: str, days_before: float, sentiment: str | None = None,
          handoff: bool = False, intent: str = "billing") -> dict:  # fmt: skip
    return {
        "customer_id": customer,
        "at": AS_OF - timedelta(days=days_before),
        "channel": "web_chat",
        "intent": intent,
        "sentiment": sentiment,
        "handoff": handoff,
    }


def seeded_frame(n: int = 120, seed: int = 3) -> pd.DataFrame:
    """Account facts that say nothing about churn; the label follows the conversations."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "tenure_months": rng.integers(1, 60, n),
        "contract": rng.choice(["Month-to-month", "One year"], n),
        "churned": np.arange(n) % 2,
        "split": np.where(np.arange(n) < n * 3 // 4, "train", "test"),
    })  # fmt: skip


def test_the_join_is_point_in_time_within_the_views_ttl() -> None:
    events = pd.DataFrame([
        event("a", 40),  # older than the 30-day TTL: not known at the snapshot
        event("a", 10, "negative"), event("a", 2, "positive", handoff=True),
        event("b", 45),  # only old events: no row
        event("c", -1),  # after the snapshot: never leaks into the training row
        event("c", 5, "negative"),
    ])  # fmt: skip
    aggregates = aggregates_as_of(events, AS_OF)
    assert sorted(aggregates.index) == ["a", "c"]
    a = aggregates.loc["a"]
    assert (a["messages_30d"], a["messages_7d"], a["handoffs_30d"]) == (2, 1, 1)
    assert a["negative_share_30d"] == 0.5
    assert a["days_since_message"] == pytest.approx(2.0)
    assert aggregates.loc["c", "messages_30d"] == 1  # the later event is not counted


def test_the_aggregates_change_the_models_input() -> None:
    frame = seeded_frame()
    churners = frame.loc[frame["churned"] == 1, "customer_id"]
    events = pd.DataFrame([event(c, d, "negative", handoff=True)
                           for c in churners for d in (1, 3)])  # fmt: skip
    full = with_conversations(frame, aggregates_as_of(events, AS_OF))
    base = ["tenure_months", "contract"]
    assert full.loc[full["churned"] == 1, "messages_30d"].eq(2).all()
    assert full.loc[full["churned"] == 0, "messages_30d"].eq(0).all()
    assert full.loc[full["churned"] == 0, "last_intent"].eq("none").all()
    train = full[full["split"] == "train"]
    params = ChallengerParams()
    without = fit_logistic_regression(train, "churned", base, 0, params)
    with_ = fit_logistic_regression(train, "churned", base + CONVERSATION_FEATURES, 0, params)
    x_without = without["columns"].transform(full)
    x_with = with_["columns"].transform(full)
    assert x_with.shape[1] > x_without.shape[1]
    # the same facts with and without a conversation: identical inputs only without them
    talked, silent = full.index[full["churned"] == 1][0], full.index[full["churned"] == 0][0]
    twin = full.loc[[silent]].assign(**full.loc[talked, ["tenure_months", "contract"]])
    same_facts = pd.concat([full.loc[[talked]], twin])
    assert np.allclose(*np.asarray(without["columns"].transform(same_facts)))
    assert not np.allclose(*np.asarray(with_["columns"].transform(same_facts)))
    test = full[full["split"] == "test"]
    scores = lambda m: m.predict_proba(test)[:, 1]  # noqa: E731
    assert roc_auc_score(test["churned"], scores(with_)) > 0.95
    assert roc_auc_score(test["churned"], scores(without)) < 0.8


def test_the_simulator_follows_its_stated_assumption() -> None:
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(4000)],
                          "churned": np.arange(4000) % 2})  # fmt: skip
    params = HistoryParams(seed=1)
    events = simulate_history(frame, AS_OF, params)
    assert events.equals(simulate_history(frame, AS_OF, params))  # seeded
    assert events["at"].between(AS_OF - timedelta(days=30), AS_OF).all()
    churned = events["customer_id"].str[1:].astype(int) % 2 == 1
    contact = events.groupby(churned)["customer_id"].nunique() / 2000
    assert contact[True] == pytest.approx(params.contact[1], abs=0.04)
    assert contact[False] == pytest.approx(params.contact[0], abs=0.04)
    negative = (
        events.dropna(subset=["sentiment"])
        .groupby(churned)["sentiment"]
        .apply(lambda s: (s == "negative").mean())
    )
    assert negative[True] > negative[False]


def test_the_bootstrap_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.random(500), 2) + 0.3 * y  # ties included
    assert lift.roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))
    assert lift.average_precision(y, score) == pytest.approx(average_precision_score(y, score))
    report = lift.paired_lift(y, score, score + 0.2 * y * rng.random(500), seed=0, rounds=200)
    low, high = report["roc_auc"]["interval_95"]
    assert report["roc_auc"]["lift"] > 0 and low <= report["roc_auc"]["lift"] <= high


def test_the_command_writes_the_report(tmp_path, monkeypatch) -> None:
    from pipelines.cli import app

    frame = seeded_frame(400).assign(churned=lambda f: (np.arange(len(f)) % 3 == 0).astype(int))
    monkeypatch.setattr(lift, "model_frame",
                        lambda settings: (frame, ["tenure_months", "contract"], AS_OF))  # fmt: skip
    out = tmp_path / "conversation_lift.json"
    ran = CliRunner().invoke(app, ["eval", "conversation-lift", "--results-fp", str(out)])
    assert ran.exit_code == 0, ran.output
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["history"]["kind"].startswith("simulated")
    assert written["customers"] == 400 and written["customers_with_history"] > 0
    for model in ("logistic_regression", "lightgbm"):
        roc = written["models"][model]["roc_auc"]
        assert roc["lift"] == pytest.approx(roc["with"] - roc["without"], abs=1e-3)
        assert roc["with"] > roc["without"]  # the simulated history carries churn signal
    assert written["null_control"]["params"]["contact"] == [0.3, 0.3]


def test_a_served_history_replaces_the_simulation(tmp_path, monkeypatch) -> None:
    from pipelines.cli import app

    frame = seeded_frame(200)
    monkeypatch.setattr(lift, "model_frame",
                        lambda settings: (frame, ["tenure_months", "contract"], AS_OF))  # fmt: skip
    served = pd.DataFrame([event("c1", 3), event("c2", 1, "negative", handoff=True)])
    served.to_parquet(tmp_path / "conversation_events.parquet")
    out = tmp_path / "lift.json"
    ran = CliRunner().invoke(app, ["eval", "conversation-lift", "--events",
                                   str(tmp_path / "conversation_events.parquet"),
                                   "--results-fp", str(out)])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["history"]["kind"] == "served history" and "null_control" not in written
    assert written["events"] == 2 and written["customers_with_history"] == 2
    assert pd.Timestamp(written["as_of"]) == AS_OF - timedelta(days=1)  # its last event
