"""Feast objects: the single source of truth for entities, sources, views and services.

Kept in one module because `feast apply` imports each file of the repo as its own top-level
module; objects shared across files would be registered twice.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A retail/bank customer; the id is the source system's customer number.",
)

customer_transactions_source = FileSource(
    name="customer_transactions_source",
    path="../data/features/customer_transactions.parquet",
    timestamp_field="event_timestamp",
    description="One row per invoice: the customer's running totals as of that invoice.",
)

customer_transactions = FeatureView(
    name="customer_transactions",
    entities=[customer],
    # Running totals never go stale: the latest row before a timestamp is the truth then.
    ttl=timedelta(0),
    schema=[
        Field(name="orders_count", dtype=Int64, description="invoices so far"),
        Field(name="total_spend", dtype=Float64, description="GBP spent so far"),
        Field(name="avg_order_value", dtype=Float64, description="GBP per invoice"),
        Field(name="last_order_value", dtype=Float64, description="GBP of the latest invoice"),
        Field(name="total_items", dtype=Int64, description="units bought so far"),
        Field(name="returns_count", dtype=Int64, description="cancelled invoices so far"),
        Field(name="tenure_days", dtype=Int64, description="days since the first invoice"),
    ],
    online=True,
    source=customer_transactions_source,
    tags={"owner": "scrm-platform", "source": "online_retail"},
)

customer_profile_v1 = FeatureService(
    name="customer_profile_v1",
    features=[customer_transactions],
    description="What the customer endpoint serves.",
)

ALL = [customer, customer_transactions_source, customer_transactions, customer_profile_v1]
