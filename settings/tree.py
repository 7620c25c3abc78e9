"""The whole settings tree: every section of params.yaml, typed, plus the project root.

Both halves read it: the pipelines take it whole, and the application hands each Ray replica
the same (frozen) object, so a replica never re-reads files on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from settings.base import Strict, UnknownName
from settings.channels import ChannelSettings
from settings.dialogue import DialogueConfig
from settings.events import EventSettings
from settings.insight import InsightSettings
from settings.loop import LoopSettings
from settings.monitoring import MonitoringSettings
from settings.platform import (
    DatasetSpec,
    DataSettings,
    FeatureSettings,
    MlflowSettings,
    RegistrySettings,
    TabularSettings,
    TextSettings,
)
from settings.privacy import PrivacyConfig
from settings.serving import ServingSettings


class Settings(Strict):
    """All of params.yaml (with environment overrides applied), plus the project root every
    relative path hangs from."""

    root: Path
    seed: int
    mlflow: MlflowSettings
    data: DataSettings
    datasets: dict[str, DatasetSpec]
    features: FeatureSettings
    text: TextSettings
    tabular: TabularSettings
    registry: RegistrySettings
    serving: ServingSettings = Field(default_factory=ServingSettings)
    dialogue: DialogueConfig = Field(default_factory=DialogueConfig)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    events: EventSettings = Field(default_factory=EventSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    insight: InsightSettings = Field(default_factory=InsightSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)

    def path(self, relative: str | Path) -> Path:
        return self.root / relative

    @property
    def tracking_uri(self) -> str:
        """MLflow's own MLFLOW_TRACKING_URI wins, so the same code runs against a server."""
        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow.tracking_uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            uri = prefix + str(self.root / uri[len(prefix) :])
        return uri

    @property
    def artifact_root(self) -> Path:
        return self.path(self.mlflow.artifact_root)

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets))
            raise UnknownName(f"Unknown dataset {name!r}; known: {known}")
        return self.datasets[name]

    def raw_dir(self, name: str) -> Path:
        return self.path(self.data.raw_dir) / name

    def validated_file(self, name: str) -> Path:
        return self.path(self.data.validated_dir) / f"{name}.parquet"

    def validation_report(self, name: str) -> Path:
        return self.path(self.data.reports_dir) / f"{name}.json"

    def data_docs(self, name: str) -> Path:
        return self.path(self.data.reports_dir) / f"{name}_docs"

    @property
    def feature_repo(self) -> Path:
        return self.path(self.features.repo_dir)

    @property
    def features_dir(self) -> Path:
        return self.path(self.features.output_dir)

    @property
    def online_store(self) -> str:
        """ "sqlite" (the repo's feature_store.yaml) or redis://host:port[/db]."""
        return self.features.online_store

    @property
    def event_log(self) -> Path:
        return self.path(self.features.event_log)

    @property
    def prediction_log(self) -> Path:
        return self.path(self.serving.prediction_log)

    def model_dir(self, model: str) -> Path:
        """data/models/<model>: a task's step outputs (train/evaluate/promote JSON, plots)."""
        return self.path(self.text.output_dir) / model
