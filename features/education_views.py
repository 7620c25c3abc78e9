"""A student's practice on a skill as a feature view (issue 27, knowledge tracing).

The source is written by `features.education.practice_source` (`scrm edu train` writes it,
applies and materialises the view): one row per answer with the counts before it, so a
point-in-time join of a label gets only what came before, and the online store holds each
student x skill pair's latest counts (what the PFA model and the teacher page read).
"""

from datetime import timedelta

from feast import FeatureService, FeatureView, Field, FileSource
from feast.types import Int64

from features.entities import skill, student

practice_source = FileSource(
    name="student_skill_practice_source",
    path="../data/features/student_skill_practice.parquet",
    timestamp_field="event_timestamp",
    description="SYNTHETIC answers (edu_synthetic_kt): prior practice per student and skill.",
)

student_skill_practice = FeatureView(
    name="student_skill_practice",
    entities=[student, skill],
    ttl=timedelta(0),
    schema=[
        Field(name="prior_attempts", dtype=Int64, description="answers on the skill before"),
        Field(name="prior_successes", dtype=Int64, description="correct answers before"),
        Field(name="prior_failures", dtype=Int64, description="wrong answers before"),
    ],
    online=True,
    source=practice_source,
    tags={"owner": "scrm-platform", "source": "edu_synthetic_kt", "synthetic": "true"},
)

knowledge_tracing_v1 = FeatureService(
    name="knowledge_tracing_v1",
    features=[student_skill_practice],
    description="Inputs of the PFA knowledge-tracing model: prior successes and failures.",
)
