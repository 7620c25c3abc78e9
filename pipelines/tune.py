"""`scrm tune TASK`: Optuna search over the TF-IDF challenger, each trial a nested MLflow run.

Trials are scored by stratified k-fold accuracy on the train split only (dev and test stay
untouched for calibration and the gate); each fold is reported as an intermediate value, so the
median pruner stops a trial whose first folds already trail. The study lives in sqlite
(`data/tuning/optuna.db`): `optuna-dashboard sqlite:///data/tuning/optuna.db` shows it, and a
re-run continues the same study. The best params go to data/models/<model>/tuned.json, which the
train stage reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from sklearn.model_selection import StratifiedKFold

from pipelines.io import write_json
from pipelines.progress import bar
from pipelines.text import TUNED, Target, load_split
from settings import Settings
from settings.platform import BaselineSettings
from training.budget import WallCap
from training.tfidf import ClassifierParams, TfidfParams, fit_tfidf_classifier, normalise
from training.tracking import use_experiment


def study_storage(settings: Settings) -> str:
    path = settings.path("data/tuning/optuna.db")
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def sample_params(trial: optuna.Trial, default: BaselineSettings) -> BaselineSettings:
    tfidf = TfidfParams(
        analyzer=trial.suggest_categorical("analyzer", ["char_wb", "char"]),
        ngram_min=1,
        ngram_max=trial.suggest_int("ngram_max", 2, 5),
        min_df=trial.suggest_int("min_df", 1, 3),
        sublinear_tf=trial.suggest_categorical("sublinear_tf", [True, False]),
    )
    classifier = ClassifierParams(
        C=trial.suggest_float("C", 0.5, 100.0, log=True), max_iter=default.classifier.max_iter
    )
    return BaselineSettings(tfidf=tfidf, classifier=classifier)


def tune_text(settings: Settings, target: Target, trials: int | None = None) -> dict[str, Any]:
    """Run `trials` (params: text.tune.trials) more trials of the task's study, with a progress
    bar; the best params so far go to tuned.json for the train stage."""
    config = settings.text.tune
    train = load_split(settings, target.dataset, "train")
    use_experiment(settings.tracking_uri, target.model_name, settings.artifact_root)
    study = open_study(settings, target)
    objective = cv_objective(settings, train)
    count = trials or config.trials
    with mlflow.start_run(run_name="tune-tfidf") as parent:
        mlflow.set_tags({"task": target.task, "dataset": target.dataset, "kind": "tuning"})
        with bar(f"Optuna trials ({target.model_name})", total=count, unit="trials") as shown:

            def trial_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                try:
                    info = f"best cv accuracy {study.best_value:.4f}"
                except ValueError:  # no complete trial yet
                    info = ""
                shown.update(advance=1, info=info, budget_left=cap.left)
                cap.check(f"after {trial.number + 1} trials of {count}")

            # The budget is `count` trials: Optuna's own timeout would end a study early on a
            # busy machine and tune different params; timeout_s is only a cap that fails.
            cap = WallCap(config.timeout_s, "tuning", "text.tune.timeout_s")
            study.optimize(objective, n_trials=count, catch=(), callbacks=[trial_done])
        best = sample_params(optuna.trial.FixedTrial(study.best_params), settings.text.baseline)
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric("best_cv_accuracy", study.best_value)
    pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
    result = {
        "run_id": parent.info.run_id,
        "model_name": target.model_name,
        "study": study.study_name,
        "trials": len(study.trials),
        "pruned": pruned,
        "best_cv_accuracy": study.best_value,
        "params": best.model_dump(),
    }
    write_json(target.out_dir / TUNED, result)
    return result


def open_study(settings: Settings, target: Target) -> optuna.Study:
    """The model's study in sqlite (a re-run continues it); a new study's first trial is
    params.yaml's values, so tuning can only improve on them."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{target.model_name}-tfidf",
        storage=study_storage(settings),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    if not study.trials:
        default = settings.text.baseline
        study.enqueue_trial(
            {
                "analyzer": default.tfidf.analyzer,
                "ngram_max": default.tfidf.ngram_max,
                "min_df": default.tfidf.min_df,
                "sublinear_tf": default.tfidf.sublinear_tf,
                "C": default.classifier.C,
            }
        )
    return study


def cv_objective(settings: Settings, train: pd.DataFrame) -> Callable[[optuna.Trial], float]:
    """Stratified k-fold accuracy on train, each fold reported so the pruner can stop a trial
    whose first folds trail; every trial is a nested MLflow run."""
    folds = list(
        StratifiedKFold(settings.text.tune.folds, shuffle=True, random_state=settings.seed).split(
            train["text"], train["label"]
        )
    )

    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, settings.text.baseline)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params(trial.params)
            scores = []
            for step, (fit_rows, score_rows) in enumerate(folds):
                fold_train, fold_score = train.iloc[fit_rows], train.iloc[score_rows]
                pipeline = fit_tfidf_classifier(
                    fold_train, params.tfidf, params.classifier, settings.seed
                )
                predicted = pipeline.predict(normalise(fold_score["text"].tolist()))
                scores.append(float(np.mean(predicted == fold_score["label"].to_numpy())))
                trial.report(float(np.mean(scores)), step)
                mlflow.log_metric("cv_accuracy", float(np.mean(scores)), step=step)
                if trial.should_prune():
                    mlflow.set_tag("pruned", "true")
                    raise optuna.TrialPruned()
            return float(np.mean(scores))

    return objective
