"""Where feature values come from: parquet written by `scrm features build`, pushes, requests.

Paths are relative to this folder (the Feast repo), so the repo works from any directory.
"""

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import UnixTimestamp

rfm_source = FileSource(
    name="customer_rfm_source",
    path="../data/features/customer_rfm.parquet",
    timestamp_field="event_timestamp",
    description="Daily RFM snapshot per retail customer, stamped at the end of its day.",
)

accounts_source = FileSource(
    name="customer_accounts_source",
    path="../data/features/customer_accounts.parquet",
    timestamp_field="event_timestamp",
    description="Telco account facts, one snapshot per customer.",
)

conversation_batch_source = FileSource(
    name="conversation_stats_source",
    path="../data/features/conversation_stats.parquet",
    timestamp_field="event_timestamp",
    description="Conversation aggregates as of each message, replayed from the event log.",
)

# The gateway pushes a fresh aggregate row here on every message (online in milliseconds);
# the batch source above holds the same rows for point-in-time training sets.
conversation_push = PushSource(name="conversation_push", batch_source=conversation_batch_source)

scores_batch_source = FileSource(
    name="customer_scores_source",
    path="../data/scores/customer_scores.parquet",
    timestamp_field="event_timestamp",
    description="Batch model scores per customer (scrm predict batch), one row per run.",
)

# `scrm predict batch` appends to the file above and pushes the same rows online.
scores_push = PushSource(name="customer_scores_push", batch_source=scores_batch_source)

request_context = RequestSource(
    name="request_context",
    schema=[Field(name="request_at", dtype=UnixTimestamp)],
    description="When the caller asks: the reference time of on-demand features.",
)
