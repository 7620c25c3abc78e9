"""Uplift targeting: who should get which campaign, learned from a randomised experiment.

A response model ranks who will buy anyway; an uplift model ranks whom the message changes.
Hillstrom (data/raw/hillstrom) randomised 64,000 customers to a men's e-mail, a women's e-mail
or none, so the difference of arm means is an unbiased effect and a model of it can be scored
with the Qini curve on a held-out part.

Our model is one logistic regression over all three arms with arm interactions (an S-learner
with a separate slope per arm): the arms share the baseline response, so each treatment's
effect is estimated with all the control data, and an "any e-mail" uplift is the mean of the
two. The feature set (the data set's 18 columns, or those plus log spend, recency one-hot and
purchase mix) is chosen per task by cross-validated Qini on the training part only, never on
the holdout. The baseline is the shared data set's recipe: scikit-uplift's TwoModels with two
scaled logistic regressions on the 18 columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklift.metrics import qini_auc_score, uplift_at_k, uplift_auc_score
from sklift.models import TwoModels

ARMS = {"No E-Mail": 0, "Mens E-Mail": 1, "Womens E-Mail": 2}
# treatment vs none: which arms count as treated
TASKS = {"any_email": (1, 2), "womens_email": (2,), "mens_email": (1,)}
OUTCOMES = ("visit", "conversion")
TOP_SHARE = 0.3


@dataclass(frozen=True)
class Experiment:
    """The randomised data: features by name, arm per row (0 = control), outcomes."""

    features: dict[str, np.ndarray]
    arm: np.ndarray
    outcomes: pd.DataFrame


def load_hillstrom(path: Path) -> Experiment:
    """The experiment straight from the data set's CSV (tests and a check of the Feast path;
    `scrm eval uplift` trains from the Feast training set, `pipelines/uplift.py`)."""
    try:
        return experiment(pd.read_csv(path))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def experiment(frame: pd.DataFrame) -> Experiment:
    """The experiment from one row per customer with the data set's columns, in a fixed
    order (the CSV's, or a training set sorted back into it): features, arm, outcomes."""
    missing = {"segment", "visit", "conversion", "spend", "history", "recency"} - set(frame)
    if missing:
        raise ValueError(f"not the Hillstrom columns, missing {sorted(missing)}")
    unknown = set(frame["segment"]) - set(ARMS)
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}; expected {sorted(ARMS)}")
    frame = frame.reset_index(drop=True)
    base = pd.concat(
        [
            frame[["recency", "history", "mens", "womens", "newbie"]].astype(float),
            pd.get_dummies(frame[["zip_code", "channel", "history_segment"]]).astype(float),
        ],
        axis=1,
    )
    rich = base.assign(
        log_history=np.log1p(frame["history"]),
        mens_only=((frame["mens"] == 1) & (frame["womens"] == 0)).astype(float),
        womens_only=((frame["mens"] == 0) & (frame["womens"] == 1)).astype(float),
        both=((frame["mens"] == 1) & (frame["womens"] == 1)).astype(float),
        **{f"recency_{m}": (frame["recency"] == m).astype(float) for m in range(1, 13)},
    )
    return Experiment(
        features={"base": base.to_numpy(), "rich": rich.to_numpy()},
        arm=frame["segment"].map(ARMS).to_numpy(),
        outcomes=frame[["visit", "conversion", "spend"]],
    )


class MultiArmLogit:
    """One logistic regression with a slope per arm; uplift of `treated` arms vs control."""

    def __init__(self, c: float = 0.05) -> None:
        self.c = c

    @staticmethod
    def _design(x: np.ndarray, arm: np.ndarray) -> np.ndarray:
        mens, womens = (arm == 1)[:, None], (arm == 2)[:, None]
        return np.hstack([x, x * mens, x * womens, mens, womens]).astype(float)

    def fit(self, x: np.ndarray, y: np.ndarray, arm: np.ndarray) -> MultiArmLogit:
        self.scaler = StandardScaler().fit(x)
        self.model = LogisticRegression(C=self.c, max_iter=3000)
        self.model.fit(self._design(self.scaler.transform(x), arm), y)
        return self

    def uplift(self, x: np.ndarray, treated: tuple[int, ...]) -> np.ndarray:
        scaled = self.scaler.transform(x)

        def response(arm: int) -> np.ndarray:
            arms = np.full(len(scaled), arm)
            return self.model.predict_proba(self._design(scaled, arms))[:, 1]

        return np.mean([response(a) for a in treated], axis=0) - response(0)


def baseline_uplift(
    x_train: np.ndarray, y_train: np.ndarray, t_train: np.ndarray, x_test: np.ndarray
) -> np.ndarray:
    """The shared README's recipe: TwoModels, two scaled logistic regressions."""

    def logit():
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))

    model = TwoModels(estimator_trmnt=logit(), estimator_ctrl=logit(), method="vanilla")
    model.fit(x_train, y_train, t_train)
    return model.predict(x_test)


def is_treated(arm: np.ndarray, treated: tuple[int, ...]) -> np.ndarray:
    """1 where the row's arm is one of the task's treatments, 0 for control."""
    return np.isin(arm, treated).astype(int)


def choose_features(
    data: Experiment, rows: np.ndarray, treated: tuple[int, ...], outcome: str, seed: int
) -> tuple[str, dict[str, float]]:
    """The feature set with the best 3-fold Qini on `rows` (the training part)."""
    y = data.outcomes[outcome].to_numpy()[rows]
    t = is_treated(data.arm[rows], treated)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    scores = {}
    for name, x in data.features.items():
        fold_scores = []
        for fit_at, score_at in folds.split(rows, t * 2 + y):
            fit_rows, score_rows = rows[fit_at], rows[score_at]
            model = MultiArmLogit().fit(x[fit_rows], y[fit_at], data.arm[fit_rows])
            uplift = model.uplift(x[score_rows], treated)
            fold_scores.append(qini_auc_score(y[score_at], uplift, t[score_at]))
        scores[name] = float(np.mean(fold_scores))
    return max(scores, key=scores.__getitem__), scores


def split(
    data: Experiment, treated: tuple[int, ...], outcome: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The shared README's split: 30% holdout of the task's rows, stratified on t*2+y."""
    rows = np.flatnonzero(np.isin(data.arm, (0, *treated)))
    y = data.outcomes[outcome].to_numpy()[rows]
    t = is_treated(data.arm[rows], treated)
    train, test = train_test_split(rows, test_size=0.3, random_state=seed, stratify=t * 2 + y)
    return np.sort(train), np.sort(test)


def scores(y: np.ndarray, uplift: np.ndarray, t: np.ndarray) -> dict[str, float]:
    return {
        "qini_auc": float(qini_auc_score(y, uplift, t)),
        "uplift_auc": float(uplift_auc_score(y, uplift, t)),
        "uplift_at_30": float(uplift_at_k(y, uplift, t, strategy="overall", k=TOP_SHARE)),
    }


def campaign(outcomes: pd.DataFrame, uplift: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """Incremental visits and conversions per 10,000 customers of the holdout, e-mailing the
    top 30% by predicted uplift, a random 30%, or everyone (observed arm differences)."""
    top = uplift >= np.quantile(uplift, 1 - TOP_SHARE)
    everyone = np.ones_like(top)
    per = 10_000
    result = {}
    for outcome in ("visit", "conversion"):
        y = outcomes[outcome].to_numpy()
        targeted, overall = effect(y, t, top), effect(y, t, everyone)
        result[f"{outcome}_top_30"] = per * TOP_SHARE * targeted
        result[f"{outcome}_random_30"] = per * TOP_SHARE * overall  # a random 30%: expected
        result[f"{outcome}_everyone"] = per * overall
    return result


def effect(y: np.ndarray, t: np.ndarray, mask: np.ndarray) -> float:
    """Treated minus control mean among `mask` (randomised: an unbiased effect)."""
    return float(y[mask & (t == 1)].mean() - y[mask & (t == 0)].mean())


def evaluate_task(data: Experiment, task: str, outcome: str, seed: int) -> dict[str, object]:
    """Ours against the baseline on one task's holdout, with the campaign simulation."""
    treated = TASKS[task]
    train, test = split(data, treated, outcome, seed)
    y = data.outcomes[outcome].to_numpy()
    t = is_treated(data.arm, treated)
    chosen, cv = choose_features(data, train, treated, outcome, seed)
    x = data.features[chosen]
    ours = MultiArmLogit().fit(x[train], y[train], data.arm[train]).uplift(x[test], treated)
    base = data.features["base"]
    theirs = baseline_uplift(base[train], y[train], t[train], base[test])
    return {
        "task": task,
        "outcome": outcome,
        "seed": seed,
        "holdout_rows": int(len(test)),
        "features": chosen,
        "cv_qini": cv,
        "ours": scores(y[test], ours, t[test]),
        "baseline": scores(y[test], theirs, t[test]),
        "ate": effect(y[test], t[test], np.ones(len(test), dtype=bool)),
        "campaign": campaign(data.outcomes.iloc[test], ours, t[test]),
    }
