"""AutoGluon on a point-in-time training set, and the small predictor we actually deploy.

AutoGluon's best model is usually a weighted ensemble of boosted trees, random forests and a
neural net: a few points of AUC better on paper, but ~100 ms per one-row call and ~200 MB on
disk, and AutoGluon's own overhead per call is ~10 ms before any model runs. Online scoring needs
one row in well under 20 ms, so `deployable` keeps a second, latency-aware ensemble: the best
weighting of the fast model families only (boosted trees, linear), refit on train + dev, cloned
without everything prediction does not need, and persisted in memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from autogluon.core.callbacks import AbstractCallback
from autogluon.tabular import TabularPredictor
from pydantic import BaseModel, ConfigDict, Field

from training.budget import WallCap

# Columns that identify or date a row, never describe it. Absolute times (`*_ts`, `*_at`,
# datetime columns) are excluded too: out-of-time test rows lie outside the training range, and
# relative versions (recency_days, tenure_days) already carry what they mean.
NON_FEATURES = frozenset({"id", "customer_id", "event_timestamp", "created_timestamp", "split"})
TIME_SUFFIXES = ("_ts", "_at", "_timestamp")

# AutoGluon model family key -> the model class that implements it (leaderboard `model_type`).
MODEL_CLASSES = {
    "GBM": "LGBModel",
    "CAT": "CatBoostModel",
    "XGB": "XGBoostModel",
    "LR": "LinearModel",
    "RF": "RFModel",
    "XT": "XTModel",
    "KNN": "KNNModel",
    "NN_TORCH": "TabularNeuralNetTorchModel",
    "FASTAI": "NNFastAiTabularModel",
}

EvalMetric = Literal[
    "roc_auc", "average_precision", "f1", "log_loss", "accuracy", "balanced_accuracy",
    "rmse", "mae", "r2",
]  # fmt: skip


class AutoMLParams(BaseModel):
    """What `scrm` passes from params.yaml; defaults are the measured churn settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # None: no clock inside AutoGluon. The preset's (or `hyperparameters`') fixed model list is
    # the budget, each model trained to its own stopping rule on dev, so a loaded machine fits
    # the same models as a quiet one. A number brings back AutoGluon's time budget, under which
    # models stop early or are skipped as the machine allows (not reproducible).
    time_limit: int | None = Field(None, gt=0)
    # Safety cap on the whole fit (seconds), checked before each model: past it the fit fails
    # with BudgetExceeded instead of returning fewer models.
    max_seconds: int = Field(900, gt=0)
    presets: str = "medium_quality"
    eval_metric: EvalMetric = "roc_auc"
    problem_type: Literal["binary", "multiclass", "regression"] | None = None
    # KNN is useless on one-hot-free categorical data and slow to score.
    excluded_model_types: tuple[str, ...] = ("KNN",)
    # A preset name ("default", "light", ...) or AutoGluon's dict; None = the preset's choice.
    hyperparameters: str | dict[str, Any] | None = None
    num_cpus: int | Literal["auto"] = "auto"
    verbosity: int = Field(1, ge=0, le=4)
    # Deployment: model families allowed in the deployed ensemble (fast one-row inference).
    deploy_model_types: tuple[str, ...] = ("GBM", "CAT", "XGB", "LR")
    refit_full: bool = True  # refit the deployed models on train + dev (their tuned sizes)
    # Permutation importance on dev after the fit (seconds; 0 skips it).
    importance_time_limit: int = Field(60, ge=0)


def feature_columns(frame: pd.DataFrame, label: str) -> list[str]:
    """Every column that describes the entity at the label time, in frame order."""
    return [
        column
        for column in frame.columns
        if column != label
        and column not in NON_FEATURES
        and not column.endswith(TIME_SUFFIXES)
        and not pd.api.types.is_datetime64_any_dtype(frame[column])
    ]


class CapCallback(AbstractCallback):
    """Fails the fit (BudgetExceeded) before the next model once the wall cap has passed."""

    def __init__(self, seconds: float):
        super().__init__()
        self.cap = WallCap(seconds, "AutoGluon fit", "automl.max_seconds")

    def _before_model_fit(self, trainer: Any, model: Any, **kwargs: Any) -> tuple[bool, bool]:
        self.cap.check(f"before {model.name}")
        return False, False


def fit_automl(
    train: pd.DataFrame,
    dev: pd.DataFrame,
    label: str,
    params: AutoMLParams,
    seed: int,
    path: Path,
) -> TabularPredictor:
    """Fit AutoGluon on `train`, using `dev` for early stopping, model choice and ensembling.

    `dev` is the pipeline's own split (a later cutoff for repurchase), not a random holdout
    AutoGluon would carve; with bagging presets it is the bag holdout. AutoGluon seeds every
    model with a fixed default and, without `time_limit`, trains every model of its list to the
    end, so a fit is repeatable; `seed` varies the bag folds. `max_seconds` only fails a runaway.
    """
    features = feature_columns(train, label)
    columns = [*features, label]
    fresh_directory(path)
    predictor = TabularPredictor(
        label=label,
        eval_metric=params.eval_metric,
        problem_type=params.problem_type,
        path=str(path),
        verbosity=params.verbosity,
    )
    return predictor.fit(
        train[columns],
        tuning_data=dev[columns],
        time_limit=params.time_limit,
        presets=params.presets,
        hyperparameters=params.hyperparameters,
        excluded_model_types=list(params.excluded_model_types),
        num_cpus=params.num_cpus,
        use_bag_holdout=True,  # ignored unless the preset bags; then dev is the holdout
        ag_args_ensemble={"model_random_seed": seed},
        callbacks=[CapCallback(params.max_seconds)],
    )


def fast_models(predictor: TabularPredictor, families: tuple[str, ...]) -> list[str]:
    """First-level models of the allowed families that were scored on dev, best first."""
    allowed = {MODEL_CLASSES.get(family, family) for family in families}
    board = predictor.leaderboard(extra_info=True, silent=True)
    kind = board["child_model_type"].fillna(board["model_type"])
    chosen = board[
        (board["stack_level"] == 1)
        & board["can_infer"]
        & board["score_val"].notna()
        & kind.isin(allowed)
    ]
    return chosen.sort_values("score_val", ascending=False)["model"].tolist()


def deployable(
    predictor: TabularPredictor, path: Path, params: AutoMLParams | None = None
) -> TabularPredictor:
    """A small, fast predictor at `path`: fast families only, refit, cloned, persisted.

    Adds two models to `predictor` (the fast ensemble and, with `refit_full`, its refit) but
    leaves its best model unchanged, so the full and the deployable predictor can be compared.
    Falls back to the overall best model when no fast family was trained.
    """
    params = params or AutoMLParams()
    candidates = fast_models(predictor, params.deploy_model_types)
    if candidates:
        (model,) = predictor.fit_weighted_ensemble(base_models=candidates, name_suffix="Deploy")
    else:
        model = predictor.model_best
    already_refit = model in predictor.model_refit_map().values()  # refit_full presets
    if params.refit_full and not already_refit:
        model = predictor.refit_full(model=model, set_best_to_refit_full=False)[model]
    fresh_directory(path)
    # `clone_for_deployment` step by step, choosing the best model first: AutoGluon 1.6's version
    # re-ranks the remaining models after deleting, which crashes when only refit ones remain.
    clone = predictor.clone(str(path), return_clone=True)
    clone.set_model_best(model, save_trainer=True)
    clone.delete_models(models_to_keep=model, dry_run=False)
    clone.save_space()
    clone.persist()
    return clone


def fresh_directory(path: Path) -> None:
    """Clear a previous predictor at `path`, but never a directory that is something else."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if not (path / "predictor.pkl").is_file():
            raise FileExistsError(f"{path} exists and is not an AutoGluon predictor")
        shutil.rmtree(path)


def directory_mb(path: Path) -> float:
    """On-disk size of a predictor directory: what MLflow uploads and serving downloads."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20
