"""Pipeline step: score the trained model on the frozen test split, as serving would load it."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from pipelines.io import read_json, write_json
from pipelines.settings import Settings
from pipelines.train import load_split
from training.evaluate import classification_metrics, confusion_figure


def predict_labels(model_uri: str, texts: pd.Series) -> pd.Series:
    model = mlflow.pyfunc.load_model(model_uri)
    return model.predict(pd.DataFrame({"text": texts}))["label"]


def test_accuracy(settings: Settings, model_uri: str) -> float:
    """The champion gate's yardstick: accuracy on the same frozen test split for every model."""
    test = load_split(settings, settings.intent.dataset, "test")
    return classification_metrics(test["label"], predict_labels(model_uri, test["text"]))[
        "accuracy"
    ]


def evaluate_intent(settings: Settings) -> dict[str, Any]:
    config = settings.intent
    trained = read_json(settings.intent_dir / "train.json")
    mlflow.set_tracking_uri(settings.tracking_uri)
    test = load_split(settings, config.dataset, "test")
    predicted = predict_labels(trained["model_uri"], test["text"])
    metrics = classification_metrics(test["label"], predicted)
    labels = settings.dataset(config.dataset).labels
    figure = confusion_figure(test["label"], predicted, labels)
    figure.savefig(settings.intent_dir / "confusion_matrix.png", dpi=120)
    pd.DataFrame({"actual": test["label"], "predicted": predicted}).to_csv(
        settings.intent_dir / "confusion.csv", index=False
    )
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"test_{name}": value for name, value in metrics.items()})
        mlflow.log_figure(figure, "confusion_matrix.png")
    result = {**{k: trained[k] for k in ("run_id", "model_uri", "dataset")}, "test": metrics}
    write_json(settings.intent_dir / "evaluation.json", result)
    return result
