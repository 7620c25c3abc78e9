"""Customer insight features: segments and CLV (`scrm insight segments`) and automatic tags
(`scrm insight tags`, and the tag engine's pushes)."""

from datetime import timedelta

from feast import FeatureService, FeatureView, Field, FileSource, PushSource
from feast.types import Float64, Int64, String

from features.entities import customer

segments_source = FileSource(
    name="customer_segments_source",
    path="../data/insight/features/customer_segments.parquet",
    timestamp_field="event_timestamp",
    description="RFM tier, behaviour cluster and CLV per retail customer, per pipeline run.",
)

tags_batch_source = FileSource(
    name="customer_tags_source",
    path="../data/insight/features/customer_tags.parquet",
    timestamp_field="event_timestamp",
    description="A customer's current automatic tags (comma-separated), per recomputation.",
)
tags_push = PushSource(name="customer_tags_push", batch_source=tags_batch_source)

customer_segments = FeatureView(
    name="customer_segments",
    entities=[customer],
    ttl=timedelta(0),
    schema=[
        Field(name="rfm_r", dtype=Int64, description="recency quintile, 5 = most recent"),
        Field(name="rfm_f", dtype=Int64, description="frequency quintile, 5 = most frequent"),
        Field(name="rfm_m", dtype=Int64, description="spend quintile, 5 = highest"),
        Field(name="rfm_tier", dtype=String, description="champions, loyal, at_risk, ..."),
        Field(name="cluster", dtype=Int64, description="behaviour cluster (k-means)"),
        Field(name="segment_description", dtype=String, description="the cluster in words"),
        Field(name="clv", dtype=Float64, description="predicted spend, next 90 days, GBP"),
        Field(name="expected_purchases", dtype=Float64, description="BG/NBD, next 90 days"),
        Field(name="probability_alive", dtype=Float64, description="BG/NBD P(still a buyer)"),
        Field(name="high_value", dtype=Int64, description="1: top share by predicted CLV"),
    ],
    online=True,
    source=segments_source,
    tags={"owner": "scrm-platform", "source": "scrm insight segments"},
)

customer_tags = FeatureView(
    name="customer_tags",
    entities=[customer],
    ttl=timedelta(0),
    schema=[
        Field(name="tags", dtype=String, description="comma-separated, sorted"),
        Field(name="tags_updated_ts", dtype=Int64, description="unix seconds"),
    ],
    online=True,
    source=tags_push,
    tags={"owner": "scrm-platform", "source": "tag engine"},
)

customer_insight_v1 = FeatureService(
    name="customer_insight_v1",
    features=[customer_segments, customer_tags],
    description="Segment, CLV and tags: the insight part of the customer profile.",
)
