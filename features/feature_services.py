"""Feature services: the versioned unit a model trains on and an endpoint serves."""

from feast import FeatureService

from features.feature_views import (
    conversation_stats,
    customer_accounts,
    customer_rfm,
    customer_scores,
)
from features.on_demand import customer_recency

churn_model_v1 = FeatureService(
    name="churn_model_v1",
    features=[customer_accounts],
    description="Inputs of the churn AutoML model: contract, tenure, charges and services.",
)

repurchase_model_v1 = FeatureService(
    name="repurchase_model_v1",
    features=[customer_rfm],
    description="Inputs of the repurchase model: RFM snapshot as of each cutoff.",
)

customer_360_v1 = FeatureService(
    name="customer_360_v1",
    features=[
        customer_rfm,
        customer_accounts,
        conversation_stats,
        customer_scores,
        customer_recency,
    ],
    description="Everything known about a customer: the profile endpoint and dashboard.",
)

conversation_context_v1 = FeatureService(
    name="conversation_context_v1",
    features=[
        conversation_stats,
        customer_rfm[["recency_days", "frequency_90d", "monetary_90d"]],
        customer_recency,
    ],
    description="What the dialogue manager knows about the customer it is talking to.",
)
