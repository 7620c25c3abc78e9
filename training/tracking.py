"""MLflow set-up and model logging used by every training step."""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path

import joblib
import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo

MODEL_CODE = Path(__file__).with_name("text_classifier_model.py")


def use_experiment(tracking_uri: str, name: str, artifact_root: Path) -> str:
    """Select (or create) the experiment with artifacts under the project, not under the cwd."""
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = (artifact_root / name).resolve().as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_text_classifier(
    pipeline, input_example: pd.DataFrame, calibration: dict[str, float | str]
) -> ModelInfo:
    """Log a fitted scikit-learn text pipeline plus its calibration as a self-contained pyfunc."""
    from training.text_classifier_model import TextClassifier

    wrapper = TextClassifier()
    wrapper.pipeline = pipeline
    wrapper.configure(calibration)
    signature = infer_signature(input_example, wrapper.predict(None, input_example))
    with tempfile.TemporaryDirectory() as tmp:
        pipeline_file = Path(tmp) / "pipeline.joblib"
        joblib.dump(pipeline, pipeline_file)
        calibration_file = Path(tmp) / "calibration.json"
        calibration_file.write_text(json.dumps(calibration), encoding="utf-8")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"pipeline": str(pipeline_file), "calibration": str(calibration_file)},
            signature=signature,
            input_example=input_example,
            pip_requirements=[
                f"mlflow=={version('mlflow')}",
                f"scikit-learn=={version('scikit-learn')}",
                f"pandas=={version('pandas')}",
                f"numpy=={version('numpy')}",
                f"joblib=={version('joblib')}",
            ],
        )
