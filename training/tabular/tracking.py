"""Log a deployable AutoGluon predictor as a self-contained MLflow pyfunc with a signature."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from autogluon.tabular import TabularPredictor
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo

MODEL_CODE = Path(__file__).with_name("tabular_model.py")


def float_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as float64: a signature inferred as `long` rejects a missing value later.

    Online features are often missing (a customer not yet materialised), and MLflow cannot put
    NaN in an integer column; `double` accepts both. AutoGluon casts back to what it trained on.
    """
    integers = frame.select_dtypes(include=["integer", "bool"]).columns
    return frame.astype({column: "float64" for column in integers})


def log_tabular_model(
    predictor: TabularPredictor,
    input_example: pd.DataFrame,
    name: str = "model",
    baselines_file: Path | None = None,
) -> ModelInfo:
    """Log `predictor` (a `deployable` one: its whole directory is uploaded) in the active run.

    `input_example` holds a few rows of feature columns only (no ids, label or split); the
    signature is inferred from it, integer columns widened to float. With `baselines_file`
    (`explain.write_baselines`) the model can explain rows: `params={"explain": k}`.
    """
    from training.tabular.tabular_model import TabularScorer

    example = float_integers(input_example.reset_index(drop=True))
    output = TabularScorer().attach(predictor).predict(None, example)
    artifacts = {"predictor": str(Path(predictor.path).resolve())}
    if baselines_file is not None:
        artifacts["baselines"] = str(Path(baselines_file).resolve())
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(MODEL_CODE),
        artifacts=artifacts,
        signature=infer_signature(example, output, params={"explain": 0}),
        input_example=example,
        pip_requirements=[
            f"mlflow=={version('mlflow')}",
            f"autogluon.tabular[lightgbm]=={version('autogluon.tabular')}",
            f"pandas=={version('pandas')}",
            f"threadpoolctl=={version('threadpoolctl')}",
        ],
    )
