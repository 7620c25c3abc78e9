"""Customer segments: RFM tiers (rules a marketer can read) and behaviour clusters (k-means)
described in words from how each cluster differs from the typical customer.

Why both: tiers are stable and explainable ("champions", "at risk"); clusters find groups the
rules do not name, and their descriptions are generated from the centres so nobody has to
guess what "cluster 3" means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

# (tier, rule) in priority order: the first rule a customer meets names their tier.
# r, f, m are quintile scores 1 (worst) .. 5 (best) within the population.
TIERS: list[tuple[str, str]] = [
    ("champions", "r >= 4 and f >= 4 and m >= 4"),
    ("loyal", "f >= 4"),
    ("big_spenders", "m >= 5"),
    ("new", "r >= 4 and f <= 2"),
    ("at_risk", "r <= 2 and f >= 3"),
    ("hibernating", "r <= 2"),
    ("needs_attention", "True"),
]
BEHAVIOUR = ["recency_days", "frequency", "monetary_value", "tenure_days", "clv"]
WORDS = {
    "recency_days": ("recently active", "long inactive"),
    "frequency": ("frequent buyers", "rare buyers"),
    "monetary_value": ("big baskets", "small baskets"),
    "tenure_days": ("long-standing", "newly acquired"),
    "clv": ("high predicted value", "low predicted value"),
}


def quintile(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """Score 1..5 by rank (ties share the lower rank), 5 = best."""
    ranks = values.rank(method="min", pct=True, ascending=higher_is_better)
    return np.ceil(ranks * 5).clip(1, 5).astype(int)


def rfm_tiers(table: pd.DataFrame) -> pd.DataFrame:
    """r/f/m scores and the tier per customer; `table` has recency_days, frequency,
    monetary_total."""
    scores = pd.DataFrame(
        {
            "r": quintile(table["recency_days"], higher_is_better=False),
            "f": quintile(table["frequency"]),
            "m": quintile(table["monetary_total"]),
        },
        index=table.index,
    )
    tier = pd.Series("needs_attention", index=table.index)
    unassigned = pd.Series(True, index=table.index)
    for name, rule in TIERS:
        hit = scores.eval(rule) & unassigned
        if isinstance(hit, bool):  # "True": everybody left
            hit = unassigned.copy()
        tier[hit] = name
        unassigned &= ~hit
    return scores.assign(rfm_tier=tier)


def clusters(table: pd.DataFrame, k: int, seed: int) -> tuple[pd.Series, dict[int, str]]:
    """k-means on log-scaled behaviour features; a description per cluster."""
    features = np.log1p(table[BEHAVIOUR].clip(lower=0).astype(float))
    scaled = StandardScaler().fit_transform(features)
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(scaled)
    centres = pd.DataFrame(model.cluster_centers_, columns=BEHAVIOUR)
    return pd.Series(model.labels_, index=table.index), {
        int(i): describe(centres.loc[i]) for i in centres.index
    }


def describe(centre: pd.Series, threshold: float = 0.5) -> str:
    """Words for the features where a centre is at least `threshold` sd from the mean."""
    parts = []
    for feature, z in centre.sort_values(key=np.abs, ascending=False).items():
        if abs(z) < threshold:
            continue
        high, low = WORDS[str(feature)]
        # Recency in days: a high value means long ago.
        parts.append(high if (z > 0) != (feature == "recency_days") else low)
    return ", ".join(parts[:3]) if parts else "typical customers"


def segment(table: pd.DataFrame, k: int, seed: int, high_value_share: float) -> pd.DataFrame:
    """Tiers, clusters and the high-value flag (top share by predicted CLV)."""
    tiers = rfm_tiers(table)
    labels, descriptions = clusters(table, k, seed)
    cutoff = table["clv"].quantile(1 - high_value_share)
    return pd.DataFrame(
        {
            "customer_id": table["customer_id"],
            "rfm_r": tiers["r"],
            "rfm_f": tiers["f"],
            "rfm_m": tiers["m"],
            "rfm_tier": tiers["rfm_tier"],
            "cluster": labels.astype(int),
            "segment_description": labels.map(descriptions),
            "clv": table["clv"].astype(float),
            "high_value": (table["clv"] >= cutoff) & (table["clv"] > 0),
        }
    )
