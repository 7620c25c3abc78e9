"""The one entity every view is keyed by."""

from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A bank, retail or school customer; the id is the source system's number.",
)

# The education scenario (issue 27): answers are keyed by the student and the skill.
student = Entity(
    name="student",
    join_keys=["student_id"],
    value_type=ValueType.STRING,
    description="A learner (a minor: served under the stricter education privacy defaults).",
)
skill = Entity(
    name="skill",
    join_keys=["skill_id"],
    value_type=ValueType.STRING,
    description="A skill (knowledge component) of the curriculum.",
)
