"""The challengers AutoML has to beat: a logistic regression and a default LightGBM.

Same split, same feature columns. If AutoGluon cannot clearly beat a scaled, one-hot logistic
regression, the simpler model is the better product: cheaper to serve and easy to explain.
Both are scikit-learn pipelines taking the raw feature frame (extra columns are ignored) and
answer `predict_proba`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler


class ChallengerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lr_C: float = Field(1.0, gt=0)
    lr_max_iter: int = Field(2000, gt=0)
    # LightGBM stays at its defaults on purpose: "default LightGBM" is the reference point.
    lgbm_n_jobs: int = Field(2, ge=1)


def split_columns(frame: pd.DataFrame, features: list[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns; booleans count as categorical."""
    numeric = [
        c
        for c in features
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    return numeric, [c for c in features if c not in numeric]


def as_text(values: pd.DataFrame) -> np.ndarray:
    """Categoricals as strings with NaN for missing: scikit-learn's imputer ignores None."""
    frame = pd.DataFrame(values)
    return frame.astype(object).where(frame.notna(), np.nan).astype(object).to_numpy()


def fit_logistic_regression(
    train: pd.DataFrame, label: str, features: list[str], seed: int, params: ChallengerParams
) -> Pipeline:
    numeric, categorical = split_columns(train, features)
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    FunctionTransformer(as_text),
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )
    model = LogisticRegression(C=params.lr_C, max_iter=params.lr_max_iter, random_state=seed)
    return Pipeline([("columns", columns), ("model", model)]).fit(train, train[label])


class Categories(BaseEstimator, TransformerMixin):
    """Select the features; text columns become pandas categoricals with the training levels.

    LightGBM splits categoricals natively, but only if test rows use the same category codes as
    training: unseen levels become missing instead of silently taking another level's code.
    """

    def __init__(self, features: list[str]):
        self.features = features

    def fit(self, frame: pd.DataFrame, y=None) -> Categories:
        _, categorical = split_columns(frame, self.features)
        self.levels_ = {
            c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical
        }
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[self.features].copy()
        for column, levels in self.levels_.items():
            text = out[column].astype(object).where(out[column].notna()).astype("string")
            out[column] = pd.Categorical(text, categories=levels)
        return out


def fit_lightgbm(
    train: pd.DataFrame, label: str, features: list[str], seed: int, params: ChallengerParams
) -> Pipeline:
    model = LGBMClassifier(random_state=seed, n_jobs=params.lgbm_n_jobs, verbose=-1)
    pipeline = Pipeline([("categories", Categories(features)), ("model", model)])
    return pipeline.fit(train, train[label])


def positive_scores(model, frame: pd.DataFrame, positive: object = 1) -> np.ndarray:
    """Probability of the `positive` class from any fitted classifier with `predict_proba`."""
    classes = list(model.classes_)
    return model.predict_proba(frame)[:, classes.index(positive)]
