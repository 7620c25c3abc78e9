"""Batch and single-customer predictions of the registered tabular champions.

batch:   every customer of the task's population, features as of now from the Feast offline
         store (the same point-in-time join that built the training set), scored by the
         `champion` pyfunc inside Ray Data actors (the model code serving loads, never training
         code), written to a parquet file and to the `customer_scores` feature view, offline
         and online, so profiles and campaigns read the scores by customer id
explain: one customer's score and the features behind it, from the online store
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.scores import new_score_rows
from features.store import (
    OnlineFeatureClient,
    open_store,
    previous_scores,
    training_set,
    write_scores,
)
from pipelines.progress import bar
from settings import Settings, UnknownName
from settings.platform import TabularTask

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})


def batch_task(settings: Settings, model: str) -> TabularTask:
    spec = settings.tabular.task(model)
    if spec.batch is None:
        scored = [name for name, task in settings.tabular.tasks.items() if task.batch]
        raise UnknownName(f"{model} has no batch scoring settings; batch models: {scored}")
    return spec


def champion(settings: Settings, registered_model: str) -> tuple[str, str]:
    """(model URI pinned to the version, version) of the `champion` alias."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(registered_model, "champion")
    except mlflow.exceptions.MlflowException as error:
        raise UnknownName(
            f"{registered_model} has no champion yet: run `scrm promote` first"
        ) from error
    return f"models:/{registered_model}/{found.version}", str(found.version)


class PyfuncBatchScorer:
    """A Ray Data actor: loads the pyfunc once, then scores pandas batches."""

    def __init__(self, tracking_uri: str, model_uri: str):
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        self.model = mlflow.pyfunc.load_model(model_uri)
        self.inputs = list(self.model.metadata.get_input_schema().input_names())

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch[self.inputs]
        integers = rows.select_dtypes(include=["integer", "bool"]).columns
        output = self.model.predict(rows.astype({c: "float64" for c in integers}))
        return pd.DataFrame(
            {
                "customer_id": batch["customer_id"].astype(str).to_numpy(),
                "score": output["score"].astype(float).to_numpy(),
                "label": output["label"].astype(str).to_numpy(),
            }
        )


def score_with_ray(
    frame: pd.DataFrame, tracking_uri: str, model_uri: str, batch_size: int, actors: int
) -> pd.DataFrame:
    """Ray Data over `frame`; starts a local Ray (no dashboard) unless one is connected."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.from_pandas(frame).map_batches(
            PyfuncBatchScorer,
            fn_constructor_kwargs={"tracking_uri": tracking_uri, "model_uri": model_uri},
            batch_format="pandas",
            batch_size=batch_size,
            concurrency=actors,
            num_cpus=1,
        )
        # What `to_pandas()` does, batch by batch, so the bar moves as the actors answer.
        parts = []
        with bar("batch scoring", total=len(frame), unit="rows") as shown:
            for scored in dataset.iter_batches(batch_format="pandas", batch_size=None):
                parts.append(scored)
                shown.update(advance=len(scored))
        return pd.concat(parts, ignore_index=True) if parts else dataset.to_pandas()
    finally:
        if started:
            ray.shutdown()


def batch_predict(
    settings: Settings,
    model: str,
    output: Path,
    at: datetime | None = None,
    batch_size: int = 1024,
    actors: int = 1,
) -> dict[str, Any]:
    spec = batch_task(settings, model)
    model_uri, version = champion(settings, spec.registered_model)
    population = pd.read_parquet(settings.path(spec.batch.population), columns=["customer_id"])
    at = at or datetime.now(UTC)
    entities = population.drop_duplicates().assign(event_timestamp=pd.Timestamp(at))
    store = open_store(settings.feature_repo, settings.online_store)
    features = training_set(store, spec.batch.feature_service, entities)
    scores = score_with_ray(features, settings.tracking_uri, model_uri, batch_size, actors)
    scored_at = pd.Timestamp(at).tz_convert("UTC")
    scores = scores.assign(model=spec.registered_model, model_version=version, scored_at=scored_at)
    output.parent.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(output, index=False)
    rows = new_score_rows(previous_scores(store), scores, model, version, scored_at)
    table = write_scores(store, rows)
    return {
        "model": spec.registered_model,
        "model_version": version,
        "rows": len(scores),
        "mean_score": float(scores["score"].mean()),
        "output": str(output),
        "feature_view": "customer_scores",
        "offline_table": str(table),
        "scored_at": scored_at.isoformat(),
    }


def explain_customer(
    settings: Settings, model: str, customer_id: str, top: int = 5
) -> dict[str, Any]:
    """The champion's score for one customer from online features, with its top reasons."""
    import json

    import mlflow

    spec = batch_task(settings, model)
    model_uri, version = champion(settings, spec.registered_model)
    client = OnlineFeatureClient(
        settings.feature_repo, spec.batch.feature_service, settings.online_store
    )
    values = client.get(customer_id)
    if values is None:
        raise UnknownName(f"Unknown customer: {customer_id} has no {model} features online")
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    schema = pyfunc.metadata.get_input_schema()
    row = pd.DataFrame([{name: values.get(name) for name in schema.input_names()}])
    for name, kind in zip(schema.input_names(), schema.input_types(), strict=True):
        if getattr(kind, "name", "") in NUMERIC_TYPES:  # a missing value must stay a float NaN
            row[name] = pd.to_numeric(row[name], errors="coerce").astype("float64")
    answer = pyfunc.predict(row, params={"explain": top}).iloc[0]
    return {
        "customer_id": customer_id,
        "model": spec.registered_model,
        "model_version": version,
        "score": float(answer["score"]),
        "label": str(answer["label"]),
        "reasons": json.loads(answer["explanation"]),
    }
