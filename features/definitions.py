"""Every Feast object of the repo, in the order `apply` needs them.

The objects live in small modules (entities, data sources, views, on-demand views, services);
this is the one file the Feast CLI reads (`.feastignore` hides the others so nothing is
registered twice) and the list `scrm features apply` applies.
"""

from features.data_sources import (
    accounts_source,
    conversation_batch_source,
    conversation_push,
    request_context,
    rfm_source,
    scores_batch_source,
    scores_push,
)
from features.education_views import (
    knowledge_tracing_v1,
    practice_source,
    student_skill_practice,
)
from features.entities import customer, skill, student
from features.feature_services import (
    churn_model_v1,
    conversation_context_v1,
    customer_360_v1,
    repurchase_model_v1,
)
from features.feature_views import (
    conversation_stats,
    customer_accounts,
    customer_rfm,
    customer_scores,
)
from features.hillstrom_views import hillstrom_customers, hillstrom_source, uplift_hillstrom_v1
from features.insight_views import (
    customer_insight_v1,
    customer_segments,
    customer_tags,
    segments_source,
    tags_batch_source,
    tags_push,
)
from features.on_demand import customer_recency

ALL = [
    customer,
    rfm_source,
    accounts_source,
    conversation_batch_source,
    conversation_push,
    scores_batch_source,
    scores_push,
    request_context,
    customer_rfm,
    customer_accounts,
    conversation_stats,
    customer_scores,
    customer_recency,
    churn_model_v1,
    repurchase_model_v1,
    customer_360_v1,
    conversation_context_v1,
    segments_source,
    tags_batch_source,
    tags_push,
    customer_segments,
    customer_tags,
    customer_insight_v1,
    hillstrom_source,
    hillstrom_customers,
    uplift_hillstrom_v1,
    student,
    skill,
    practice_source,
    student_skill_practice,
    knowledge_tracing_v1,
]
SERVICES = {
    service.name: service
    for service in (
        churn_model_v1,
        repurchase_model_v1,
        customer_360_v1,
        conversation_context_v1,
        customer_insight_v1,
        uplift_hillstrom_v1,
        knowledge_tracing_v1,
    )
}
