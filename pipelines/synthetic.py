"""Seeded synthetic conversation events, for the one input no public data set provides.

Real retail customer ids and the real intent label set are used so the events join to real
features; times, channels, sentiment and handoffs are drawn from simple documented rates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.conversations import CHANNELS, EVENT_COLUMNS
from settings.platform import SyntheticConversations

CHANNEL_WEIGHTS = (0.6, 0.15, 0.25)  # wecom, dingtalk, web_chat


def conversation_events(
    customer_ids: list[str],
    intents: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    spec: SyntheticConversations,
    seed: int,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(
        sorted(customer_ids), size=min(spec.customers, len(customer_ids)), replace=False
    )
    counts = rng.poisson(spec.events_per_customer, size=len(chosen)) + 1
    customer = np.repeat(chosen, counts)
    span = (end - start).total_seconds()
    at = start + pd.to_timedelta(rng.uniform(0, span, size=len(customer)).round(), unit="s")
    sentiment = rng.choice(
        ["negative", "neutral", "positive", None],
        size=len(customer),
        p=[spec.negative_share, 0.4, 0.4 - spec.negative_share + 0.1, 0.1],
    )
    events = pd.DataFrame(
        {
            "customer_id": customer,
            "at": at,
            "channel": rng.choice(CHANNELS, size=len(customer), p=CHANNEL_WEIGHTS),
            "intent": rng.choice(sorted(intents), size=len(customer)),
            "sentiment": sentiment,
            "handoff": rng.random(len(customer)) < spec.handoff_share,
        }
    )
    return events[EVENT_COLUMNS].sort_values(["customer_id", "at"], ignore_index=True)
