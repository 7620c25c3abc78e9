"""Typed view of `params.yaml`.

Every pipeline step reads its settings from here, so a value lives in one place and a typo in
params.yaml fails loudly at start-up instead of silently falling back to a default in code.
Paths in params.yaml are relative to the project root; this module makes them absolute.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from training.tfidf import ClassifierParams, TfidfParams

PARAMS_FILE = "params.yaml"


class UnknownName(LookupError):
    """A name (data set, task) that params.yaml does not define; the message lists the known."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MlflowSettings(Strict):
    tracking_uri: str
    artifact_root: str


class DataSettings(Strict):
    raw_dir: str
    validated_dir: str
    reports_dir: str


Kind = Literal["text-classification", "text-pair", "sequence-labelling", "tabular", "transactions"]
KINDS: tuple[str, ...] = Kind.__args__


class SplitSpec(Strict):
    """How to cut `carve_from` rows into dev/test shares (seeded by params `seed`)."""

    carve_from: str
    dev: float = Field(0.0, ge=0.0, lt=1.0)
    test: float = Field(0.0, ge=0.0, lt=1.0)
    stratify: bool = True
    group_pairs: bool = False


class DatasetSpec(Strict):
    """Where a data set's files are and how they map to the schema of its kind."""

    kind: Kind
    files: dict[str, str]
    columns: dict[str, str] = Field(default_factory=dict)
    header: list[str] | None = None
    labels: list[str] = Field(default_factory=list)
    labels_file: str | None = None
    label_names: dict[str, str] = Field(default_factory=dict)
    numeric: list[str] = Field(default_factory=list)
    split: SplitSpec | None = None
    max_text_chars: int = Field(512, gt=0)
    min_rows_per_class: int = Field(1, ge=1)
    max_duplicate_share: float = Field(0.05, ge=0.0, le=1.0)
    drop_leaks: bool = False
    max_overlap_share: float = Field(0.0, ge=0.0, le=1.0)


class SyntheticConversations(Strict):
    """The seeded stand-in for chat history (no public SCRM chat logs exist)."""

    customers: int = Field(gt=0)
    events_per_customer: float = Field(gt=0)
    negative_share: float = Field(ge=0, le=1)
    handoff_share: float = Field(ge=0, le=1)


class FeatureSettings(Strict):
    repo_dir: str
    output_dir: str
    transactions_dataset: str
    accounts_dataset: str
    accounts_as_of: datetime
    conversation_events: str
    synthetic_conversations: SyntheticConversations
    event_log: str
    # "sqlite" (the repo's feature_store.yaml) or redis://host:port[/db]
    online_store: str = "sqlite"


class TextTask(Strict):
    """One registered text model: what it learns from and what it must get right."""

    head: Literal["classifier"] = "classifier"
    dataset: str
    registered_model: str
    # Precision the accepted (non-`unknown`) dev predictions must keep; sets the threshold.
    target_precision: float = Field(0.95, gt=0, le=1)
    # Behavioural gate: text -> the label the model must give.
    known_examples: dict[str, str] = Field(default_factory=dict)


class BaselineSettings(Strict):
    tfidf: TfidfParams
    classifier: ClassifierParams


class TuneSettings(Strict):
    trials: int = Field(gt=0)
    folds: int = Field(ge=2)
    timeout_s: int = Field(gt=0)


class TextSettings(Strict):
    output_dir: str
    unknown_label: str
    min_invariance: float = Field(ge=0, le=1)
    baseline: BaselineSettings
    tune: TuneSettings
    tasks: dict[str, TextTask]

    def task(self, name: str) -> TextTask:
        if name not in self.tasks:
            raise UnknownName(f"Unknown task: {name}; available: {', '.join(self.tasks)}")
        return self.tasks[name]


class TabularTask(Strict):
    """A tabular model trained on a Feast training set (features as of each label's time)."""

    training_set: str
    dataset: str  # the validated data set behind it: the gate checks its validation
    label: str
    registered_model: str
    # training.tabular.automl.AutoMLParams, checked when a tabular step starts (importing
    # AutoGluon here would slow every `scrm` command by seconds).
    automl: dict[str, Any]


class TabularSettings(Strict):
    tasks: dict[str, TabularTask]

    def task(self, name: str) -> TabularTask:
        if name not in self.tasks:
            raise UnknownName(f"Unknown tabular task: {name}; available: {', '.join(self.tasks)}")
        return self.tasks[name]


class RegistrySettings(Strict):
    min_improvement: float = Field(ge=0.0)


class ServingSettings(Strict):
    host: str
    port: int = Field(gt=0, lt=65536)
    max_text_chars: int = Field(gt=0)
    intent_replicas: int = Field(ge=1)


class Settings(Strict):
    """All of params.yaml, plus the project root every relative path hangs from."""

    root: Path
    seed: int
    mlflow: MlflowSettings
    data: DataSettings
    datasets: dict[str, DatasetSpec]
    features: FeatureSettings
    text: TextSettings
    tabular: TabularSettings
    registry: RegistrySettings
    serving: ServingSettings

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI wins, so the same code runs against a Postgres-backed server."""
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
        """SCRM_FEAST_ONLINE_STORE wins, so the same repo serves from a Redis server."""
        return os.environ.get("SCRM_FEAST_ONLINE_STORE") or self.features.online_store

    def model_dir(self, model: str) -> Path:
        """data/models/<model>: a task's step outputs (train/evaluate/promote JSON, plots)."""
        return self.path(self.text.output_dir) / model


def find_root(start: Path | None = None) -> Path:
    """SCRM_ROOT, else the nearest folder upwards from `start` (or the cwd) with params.yaml."""
    if env_root := os.environ.get("SCRM_ROOT"):
        return Path(env_root).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise FileNotFoundError(f"No {PARAMS_FILE} in {here} or any parent; run scrm from the project")


DATASET_FILE = "dataset.yaml"


def registered_datasets(raw_dir: Path) -> dict[str, dict]:
    """Data sets added with `scrm data add`: each carries its spec in data/raw/NAME/dataset.yaml."""
    found = {}
    for spec_file in sorted(raw_dir.glob(f"*/{DATASET_FILE}")):
        found[spec_file.parent.name] = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    return found


def load_settings(root: Path | None = None) -> Settings:
    root = (root or find_root()).resolve()
    with open(root / PARAMS_FILE, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    added = registered_datasets(root / raw["data"]["raw_dir"])
    raw["datasets"] = {**added, **raw["datasets"]}
    return Settings(root=root, **raw)
