"""The one entity every view is keyed by."""

from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A bank, retail or school customer; the id is the source system's number.",
)
