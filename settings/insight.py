"""params.yaml `insight:`: relation inference, customer value and segments, the graph, tags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from settings.base import Strict


class RelationSettings(Strict):
    # email_eu_core (data/raw/email_eu_core): the README's split, seeds and baselines.
    dataset_dir: str = "data/raw/email_eu_core"
    seeds: list[int] = Field(default_factory=lambda: list(range(10)))
    spectral_dims: int = Field(64, ge=2, le=512)
    netmf_window: int = Field(3, ge=1, le=20)
    netmf_dims: int = Field(128, ge=2, le=512)
    folds: int = Field(10, ge=2, le=50)
    c: float = Field(10.0, gt=0)
    # An inferred edge below this confidence is a suggestion, never shown as fact.
    min_confidence: float = Field(0.6, ge=0, le=1)
    output_dir: str = "data/insight/relations"


class ValueSettings(Strict):
    # Online Retail: calibration period up to and including calibration_end, holdout after.
    calibration_end: str = "2010-12-31"
    holdout_end: str = "2011-01-20"
    # "High value": the top share of customers by predicted CLV.
    high_value_share: float = Field(0.2, gt=0, lt=1)
    clusters: int = Field(5, ge=2, le=20)
    output_dir: str = "data/insight/value"


class GraphSettings(Strict):
    # embedded: ladybug (embedded Cypher, no server); server: FalkorDB (Redis protocol).
    engine: Literal["embedded", "server"] = "embedded"
    path: str = "data/insight/graph.lbdb"
    server_url: str = "redis://127.0.0.1:6379"
    graph_name: str = "scrm"
    # Customers per tenant that the build loads from each population (0: all).
    limit_customers: int = Field(0, ge=0)


class InsightSettings(Strict):
    relations: RelationSettings = Field(default_factory=RelationSettings)
    value: ValueSettings = Field(default_factory=ValueSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    tags_file: str = "crm/insight/tag_rules.yaml"
    tags_output: str = "data/insight/tags.parquet"
    # Current tags and their audit (sqlite).
    tags_db: str = "data/insight/tags.db"
    # The WeCom staff account that marks external contacts' tags (mark_tag's userid).
    wecom_staff_userid: str = "scrm-bot"
