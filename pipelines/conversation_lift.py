"""`scrm eval conversation-lift`: does the churn model gain from conversation aggregates?

The same churn model (the tabular pipeline's logistic regression and LightGBM challengers,
seconds to fit) is trained twice on the Telco train split: on the account facts alone (the
`churn_model_v1` inputs) and on the account facts plus each customer's conversation
aggregates as of the Telco snapshot. The aggregates are computed by
`features.conversations.conversation_stats`, the function that builds the Feast
`conversation_stats` source from the bus's served history, and joined point in time as the
view does (latest row at or before the snapshot, none older than its 30-day TTL). The lift is
the difference in test ROC AUC / PR AUC, with a paired bootstrap interval.

Where the history comes from, honestly: the Telco customers never talked to this platform, and
the served history on a fresh machine (`scrm simulate traffic`) sends random public
utterances from Telco ids, so it carries no churn signal. By default the history is therefore
*simulated* here, from a stated assumption (`HistoryParams`: customers about to leave write
more often, more negatively, ask for agents and cancellation more); the lift then measures that
the pipeline carries a conversation signal of that size into the model, not a finding about
real customers. `--events PATH` uses a served history parquet instead (the `served_history`
stage's output), with the snapshot time set to its last event.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.accounts import churn_labels, customer_accounts
from features.conversations import CHANNELS, EVENT_COLUMNS, conversation_stats
from settings import Settings

LABEL = "churned"
TTL = timedelta(days=30)  # the conversation_stats view's TTL
CONVERSATION_FEATURES = ["messages_7d", "messages_30d", "negative_share_30d", "handoffs_30d",
                         "last_intent", "days_since_message"]  # fmt: skip
INTENTS = ("billing", "technical_issue", "plan_change", "cancel_service", "other")


@dataclass(frozen=True)
class HistoryParams:
    """The simulator's assumption: (non-churner, churner) values. Deliberately overlapping:
    most churners never write, and many loyal customers complain too."""

    contact: tuple[float, float] = (0.30, 0.45)  # writes at least once in the 30 days
    extra_messages: tuple[float, float] = (1.5, 2.5)  # Poisson mean of messages beyond one
    negative: tuple[float, float] = (0.25, 0.40)  # per message, among scored ones
    unscored: float = 0.2  # sentiment model abstained
    handoff: tuple[float, float] = (0.08, 0.14)  # per message
    cancel_intent: tuple[float, float] = (0.05, 0.15)  # per message; the rest spread evenly
    seed: int = 7


def simulate_history(customers: pd.DataFrame, as_of: pd.Timestamp,
                     params: HistoryParams) -> pd.DataFrame:  # fmt: skip
    """Conversation events (the bus history's columns) in the 30 days before `as_of`, for
    `customers` (customer_id, churned)."""
    rng = np.random.default_rng(params.seed)
    rows: list[dict[str, Any]] = []
    for customer, churned in zip(customers["customer_id"], customers[LABEL], strict=True):
        k = int(churned)
        if rng.random() >= params.contact[k]:
            continue
        for _ in range(1 + rng.poisson(params.extra_messages[k])):
            at = as_of - timedelta(seconds=float(rng.uniform(60, TTL.total_seconds())))
            sentiment = None
            if rng.random() >= params.unscored:
                sentiment = "negative" if rng.random() < params.negative[k] else "positive"
            others = [i for i in INTENTS if i != "cancel_service"]
            intent = ("cancel_service" if rng.random() < params.cancel_intent[k]
                      else others[rng.integers(len(others))])  # fmt: skip
            rows.append({"customer_id": customer, "at": at, "channel": CHANNELS[rng.integers(3)],
                         "intent": intent, "sentiment": sentiment,
                         "handoff": bool(rng.random() < params.handoff[k])})  # fmt: skip
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def aggregates_as_of(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per customer, the conversation_stats row a point-in-time join at `as_of` returns (the
    latest at or before it, within the view's TTL), as model inputs."""
    stats = conversation_stats(events)
    stats = stats[(stats["event_timestamp"] <= as_of) & (stats["event_timestamp"] > as_of - TTL)]
    latest = stats.sort_values("event_timestamp").groupby("customer_id").tail(1)
    out = latest.set_index("customer_id")
    days = (as_of - out["event_timestamp"]).dt.total_seconds() / 86_400
    return out.assign(days_since_message=days.round(3))[CONVERSATION_FEATURES[:-1]
                                                        + ["days_since_message"]]  # fmt: skip


def with_conversations(frame: pd.DataFrame, aggregates: pd.DataFrame) -> pd.DataFrame:
    """The model frame plus the aggregates; a customer with no conversation in the window
    has zero messages and handoffs, no negative share, no intent, and 31 days of silence."""
    joined = frame.join(aggregates, on="customer_id")
    fill = {"messages_7d": 0, "messages_30d": 0, "handoffs_30d": 0,
            "last_intent": "none", "days_since_message": TTL.days + 1.0}  # fmt: skip
    joined = joined.fillna(fill)
    return joined.astype({"messages_7d": float, "messages_30d": float, "handoffs_30d": float,
                          "negative_share_30d": float, "last_intent": object})  # fmt: skip


def model_frame(settings: Settings) -> tuple[pd.DataFrame, list[str], pd.Timestamp]:
    """Telco account facts + churn label + split; the feature columns; the snapshot time."""
    from pipelines.datasets import load_dataset

    table, _ = load_dataset(settings.raw_dir("telco_churn"), settings.dataset("telco_churn"),
                            settings.seed)  # fmt: skip
    as_of = pd.Timestamp(settings.features.accounts_as_of)
    facts = customer_accounts(table, as_of).drop(columns=["event_timestamp"])
    labels = churn_labels(table, as_of)[["customer_id", LABEL, "split"]]
    frame = facts.merge(labels, on="customer_id", validate="one_to_one")
    features = [c for c in facts.columns if c != "customer_id"]
    return frame, features, as_of


def fit_scores(frame: pd.DataFrame, features: list[str], seed: int) -> dict[str, np.ndarray]:
    """Test-split churn scores of the logistic regression and LightGBM challengers."""
    from training.tabular.challengers import (
        ChallengerParams,
        fit_lightgbm,
        fit_logistic_regression,
        positive_scores,
    )

    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    params = ChallengerParams()
    fits = {"logistic_regression": fit_logistic_regression, "lightgbm": fit_lightgbm}
    return {name: positive_scores(fit(train, LABEL, features, seed, params), test)
            for name, fit in fits.items()}  # fmt: skip


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney form (ties count half): sklearn's value, without its per-call checks,
    which dominate a bootstrap of hundreds of draws."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Step-wise area under precision-recall, as sklearn's average_precision_score."""
    order = np.argsort(-score, kind="stable")
    y_sorted, s_sorted = y[order], score[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(y) - 1]  # end of each tie group
    hits = np.cumsum(y_sorted)[last]
    precision = hits / (last + 1)
    recall_step = np.diff(np.r_[0, hits]) / y.sum()
    return float((precision * recall_step).sum())


def paired_lift(y: np.ndarray, base: np.ndarray, more: np.ndarray, seed: int,
                rounds: int = 1000) -> dict[str, Any]:  # fmt: skip
    """ROC AUC and PR AUC of both, their difference and a 95 % paired bootstrap interval."""
    out: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    draws = [d for d in (rng.integers(0, len(y), len(y)) for _ in range(rounds))
             if 0 < y[d].sum() < len(d)]  # fmt: skip
    for metric, score in (("roc_auc", roc_auc), ("pr_auc", average_precision)):
        diffs = [score(y[d], more[d]) - score(y[d], base[d]) for d in draws]
        low, high = np.percentile(diffs, [2.5, 97.5])
        without, with_ = score(y, base), score(y, more)
        out[metric] = {"without": round(without, 4), "with": round(with_, 4),
                       "lift": round(with_ - without, 4),
                       "interval_95": [round(float(low), 4), round(float(high), 4)]}  # fmt: skip
    return out


def load_events(path: str) -> tuple[pd.DataFrame, pd.Timestamp]:
    events = pd.read_parquet(path)
    if events.empty:
        raise ValueError(f"{path} holds no conversation events")
    return events, pd.to_datetime(events["at"], utc=True).max()


def run_lift(settings: Settings, events_path: str | None = None,
             params: HistoryParams | None = None) -> dict[str, Any]:  # fmt: skip
    """Train the churn model with and without the conversation aggregates; the report."""
    started = time.monotonic()
    frame, base, as_of = model_frame(settings)
    params = params or HistoryParams()
    if events_path:
        events, as_of = load_events(events_path)
        source: dict[str, Any] = {"kind": "served history", "path": events_path}
    else:
        events = simulate_history(frame, as_of, params)
        source = {"kind": "simulated (HistoryParams: an assumption, not observed)",
                  "params": asdict(params)}  # fmt: skip
    aggregates = aggregates_as_of(events, as_of)
    y = frame.loc[frame["split"] == "test", LABEL].to_numpy()
    without = fit_scores(frame, base, settings.seed)
    report = {
        "task": "churn (Telco)", "history": source, "as_of": as_of.isoformat(),
        "events": len(events), "customers_with_history": int(len(aggregates)),
        "customers": len(frame), "test_rows": len(y), "positive_rate_test": round(y.mean(), 4),
        "features_without": base, "conversation_features": CONVERSATION_FEATURES,
        "models": lifts(frame, aggregates, base, without, settings.seed),
    }  # fmt: skip
    if not events_path:  # the same simulator with churners writing like everyone else
        null = null_params(params)
        control = aggregates_as_of(simulate_history(frame, as_of, null), as_of)
        models = lifts(frame, control, base, without, settings.seed)
        report["null_control"] = {"params": asdict(null), "models": models}
    load = [round(x, 2) for x in os.getloadavg()]
    return report | {"seconds": round(time.monotonic() - started, 1), "load_average": load}


def null_params(params: HistoryParams) -> HistoryParams:
    """The simulator with no churn signal: every customer behaves as a non-churner."""
    return HistoryParams(**{k: (v[0], v[0]) if isinstance(v, tuple) else v
                            for k, v in asdict(params).items()})  # fmt: skip


def lifts(frame: pd.DataFrame, aggregates: pd.DataFrame, base: list[str],
          without: dict[str, np.ndarray], seed: int) -> dict[str, Any]:  # fmt: skip
    """Per challenger model: the test metrics with the aggregates vs `without` them."""
    full = with_conversations(frame, aggregates)
    y = full.loc[full["split"] == "test", LABEL].to_numpy()
    with_ = fit_scores(full, base + CONVERSATION_FEATURES, seed)
    return {name: paired_lift(y, without[name], with_[name], seed) for name in without}
