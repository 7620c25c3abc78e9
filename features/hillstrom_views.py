"""The Hillstrom customers as a feature view: what the uplift model trains on (issue 22).

The source is written by `features.hillstrom.hillstrom_customers` (`scrm eval uplift` builds
it, applies and materialises the view); the uplift model's training set is the point-in-time
join of the experiment's labels with `uplift_hillstrom_v1` (`features.store.training_set`).
"""

from datetime import timedelta

from feast import FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String

from features.entities import customer

hillstrom_source = FileSource(
    name="hillstrom_customers_source",
    path="../data/features/hillstrom_customers.parquet",
    timestamp_field="event_timestamp",
    description="Hillstrom's customers as of the e-mail send (one nominal time, no dates).",
)

hillstrom_customers = FeatureView(
    name="hillstrom_customers",
    entities=[customer],
    ttl=timedelta(0),
    schema=[
        Field(name="recency", dtype=Int64, description="months since the last purchase"),
        Field(name="history_segment", dtype=String, description="spend band, past year"),
        Field(name="history", dtype=Float64, description="USD spent, past year"),
        Field(name="mens", dtype=Int64, description="1: bought men's merchandise, past year"),
        Field(name="womens", dtype=Int64, description="1: bought women's merchandise"),
        Field(name="zip_code", dtype=String, description="Urban, Surburban or Rural"),
        Field(name="newbie", dtype=Int64, description="1: new customer in the past year"),
        Field(name="channel", dtype=String, description="Phone, Web or Multichannel"),
    ],
    online=True,
    source=hillstrom_source,
    tags={"owner": "scrm-platform", "source": "hillstrom"},
)

uplift_hillstrom_v1 = FeatureService(
    name="uplift_hillstrom_v1",
    features=[hillstrom_customers],
    description="Inputs of the Hillstrom uplift model: the customer before the e-mail.",
)
