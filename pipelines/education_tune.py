"""`scrm edu tune`: Optuna over the DKT's size and learning rate, on the dev students.

Each trial fits on the training students and is scored by its best dev AUC (the test
students stay untouched for the comparison and the gate); each is a nested MLflow run. The
study lives in the project's Optuna sqlite (`data/tuning/optuna.db`, study `edu_dkt`; a
re-run continues it); the best params go to data/education/dkt_tuned.json, which
`scrm edu train` / `run` then use instead of the defaults.
"""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

from pipelines.io import read_json, write_json
from settings import Settings
from training.education.tracing import DKT, DKTConfig, ordered

STUDY = "edu_dkt"
TUNED = "data/education/dkt_tuned.json"


def search(train: pd.DataFrame, dev: pd.DataFrame, n_skills: int, trials: int, seed: int,
           storage: str | None = None, on_trial: Any = None) -> optuna.Study:  # fmt: skip
    """TPE over hidden units and learning rate; the value is the best dev AUC."""
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize",
                                sampler=sampler, load_if_exists=True)  # fmt: skip

    def objective(trial: optuna.Trial) -> float:
        config = DKTConfig(
            hidden=trial.suggest_categorical("hidden", [16, 32, 64]),
            lr=trial.suggest_float("lr", 1e-3, 3e-2, log=True),
            seed=seed,
        )
        DKT(config).fit(train, dev, n_skills)
        value = max(config.history)
        if on_trial is not None:
            on_trial(trial, value)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials)
    return study


def tune(settings: Settings, trials: int) -> dict[str, Any]:
    import mlflow

    from pipelines.education import DATASET, EXPERIMENT, load_validated, tracing_frame
    from pipelines.tune import study_storage
    from training.tracking import use_experiment

    frame, skills = tracing_frame(load_validated(settings))
    frame = ordered(frame).reset_index(drop=True)
    train, dev = (frame[frame["split"] == s] for s in ("train", "dev"))
    use_experiment(settings.tracking_uri, EXPERIMENT, settings.artifact_root)

    def log_trial(trial: optuna.Trial, value: float) -> None:
        with mlflow.start_run(run_name=f"{STUDY}-trial-{trial.number}", nested=True):
            mlflow.set_tags({"dataset": DATASET, "family": "dkt", "optuna_trial": trial.number})
            mlflow.log_params(trial.params)
            mlflow.log_metric("dev_auc", value)

    with mlflow.start_run(run_name=f"{STUDY}-study"):
        study = search(train, dev, len(skills), trials, settings.seed, study_storage(settings),
                       log_trial)  # fmt: skip
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric("best_dev_auc", study.best_value)
    result = {"best": study.best_params, "best_dev_auc": round(study.best_value, 4),
              "trials": len(study.trials)}  # fmt: skip
    write_json(settings.path(TUNED), study.best_params)
    return result


def tuned_config(settings: Settings) -> DKTConfig:
    """The DKT settings `scrm edu tune` found, else the defaults (seeded by params seed)."""
    path = settings.path(TUNED)
    tuned = read_json(path) if path.is_file() else {}
    return DKTConfig(seed=settings.seed, **tuned)
