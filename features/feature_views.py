"""Feature views: what is stored per customer, offline for training and online for serving."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from features.data_sources import accounts_source, conversation_push, rfm_source, scores_push
from features.entities import customer
from features.rfm import WINDOWS
from features.scores import SCORED_MODELS

customer_rfm = FeatureView(
    name="customer_rfm",
    entities=[customer],
    # Daily snapshots: the latest one before a timestamp is the truth at that time.
    ttl=timedelta(0),
    schema=[
        Field(name="recency_days", dtype=Int64, description="days since the last purchase"),
        Field(name="tenure_days", dtype=Int64, description="days since the first purchase"),
        Field(name="days_active", dtype=Int64, description="days with at least one purchase"),
        Field(name="orders_total", dtype=Int64, description="invoices so far"),
        Field(name="returns_total", dtype=Int64, description="cancelled invoices so far"),
        Field(name="monetary_total", dtype=Float64, description="GBP spent so far"),
        *[
            field
            for w in WINDOWS
            for field in (
                Field(name=f"frequency_{w}d", dtype=Int64, description=f"invoices, {w} days"),
                Field(name=f"monetary_{w}d", dtype=Float64, description=f"GBP spent, {w} days"),
                Field(
                    name=f"basket_size_{w}d", dtype=Float64, description=f"units/invoice, {w} days"
                ),
            )
        ],
        Field(name="last_purchase_ts", dtype=Int64, description="latest invoice, unix seconds"),
    ],
    online=True,
    source=rfm_source,
    tags={"owner": "scrm-platform", "source": "online_retail"},
)

ACCOUNT_FIELDS = {
    "gender": String,
    "senior_citizen": Int64,
    "partner": String,
    "dependents": String,
    "tenure_months": Int64,
    "phone_service": String,
    "multiple_lines": String,
    "internet_service": String,
    "online_security": String,
    "online_backup": String,
    "device_protection": String,
    "tech_support": String,
    "streaming_tv": String,
    "streaming_movies": String,
    "contract": String,
    "paperless_billing": String,
    "payment_method": String,
    "monthly_charges": Float64,
    "total_charges": Float64,
}

customer_accounts = FeatureView(
    name="customer_accounts",
    entities=[customer],
    ttl=timedelta(0),
    schema=[Field(name=name, dtype=dtype) for name, dtype in ACCOUNT_FIELDS.items()],
    online=True,
    source=accounts_source,
    tags={"owner": "scrm-platform", "source": "telco_churn"},
)

conversation_stats = FeatureView(
    name="conversation_stats",
    entities=[customer],
    # A summary older than its widest window says nothing about now: training sets get null.
    ttl=timedelta(days=30),
    schema=[
        Field(name="messages_1d", dtype=Int64),
        Field(name="messages_7d", dtype=Int64),
        Field(name="messages_30d", dtype=Int64),
        Field(name="negative_share_30d", dtype=Float64, description="of messages with sentiment"),
        Field(name="handoffs_30d", dtype=Int64, description="transfers to a human agent"),
        Field(name="last_intent", dtype=String),
        Field(name="channels_30d", dtype=String, description="comma-separated, sorted"),
        Field(name="last_message_ts", dtype=Int64, description="unix seconds"),
    ],
    online=True,
    source=conversation_push,
    tags={"owner": "scrm-platform", "source": "gateway events"},
)

customer_scores = FeatureView(
    name="customer_scores",
    entities=[customer],
    # A score stands until the next batch run replaces it.
    ttl=timedelta(0),
    schema=[
        field
        for model in SCORED_MODELS
        for field in (
            Field(name=f"{model}_score", dtype=Float64, description=f"{model} model score"),
            Field(name=f"{model}_label", dtype=String, description="its decision"),
            Field(name=f"{model}_model_version", dtype=String, description="registry version"),
            Field(name=f"{model}_scored_ts", dtype=Int64, description="scored at, unix seconds"),
        )
    ],
    online=True,
    source=scores_push,
    tags={"owner": "scrm-platform", "source": "scrm predict batch"},
)
