"""The education scenario's data and models (`scrm edu ...`, issue 27).

- `write_synthetic`: the seeded simulator (training/education/simulator.py) -> the raw data
  set `edu_synthetic_kt` in ASSISTments-2009 columns, with its ground truth and SOURCE.md;
- `train`: through the validation gate, the student x skill facts into Feast, then the
  three knowledge-tracing families on the student-level split, each an MLflow run;
- `evaluate_csv`: the same comparison on an ASSISTments-2009-format CSV the user downloaded
  themselves (never copied into the repo: its terms forbid passing it on).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.io import write_json
from privacy.ids import opaque_id
from settings import Settings
from training.education import simulator
from training.education.tracing import DKTConfig, compare

DATASET = "edu_synthetic_kt"
N_STUDENTS = 1000
SPLIT_SHARES = {"train": 0.7, "dev": 0.15, "test": 0.15}
OUTPUT_DIR = "data/education"
EXPERIMENT = REGISTERED = "edu_knowledge_tracing"
VIEW = "student_skill_practice"
SOURCE_MD = """# edu_synthetic_kt: SYNTHETIC knowledge-tracing data (seeded simulator, issue 27)

**Synthetic.** Written by `scrm edu simulate` (training/education/simulator.py, seed {seed},
{students} simulated students, {rows} answers). No real student is in it.

Why synthetic: no public knowledge-tracing set was found whose licence lets us keep it in the
repo (checked for issue 27, see ../shared/datasets/INDEX.md, last paragraph):

| data set | licence finding |
|---|---|
| ASSISTments 2009-2017 | WPI terms: "You also agree to not give that data to anyone else" |
| EdNet | CC BY-NC 4.0, research purposes |
| Junyi Academy 2015 | "Any form of commercial usage is not allowed!" |
| Eedi NeurIPS 2020 | reported as CC BY-NC-ND 4.0 |
| DKT synthetic-5 (chrispiech/DeepKnowledgeTracing) | no licence file |
| XES3G5M (ai4ed/XES3G5M) | MIT code; data on an external drive under an unnamed "license" |
| Statics2011 / KDD Cup 2010 | PSLC DataShop terms, not verified |

A user who has ASSISTments 2009 (skill_builder_data.csv) may score the same models on it
locally: `scrm edu eval-csv PATH` (nothing is copied into the repo).

Files (ASSISTments-2009 column names where they exist):

- `interactions.csv`: order_id, user_id (opaque letters), skill_id, skill_name, correct,
  answered_at, split (student-level: each student in one of train/dev/test);
- `skills.csv`: the ground truth per skill: prerequisites (the true DAG), difficulty,
  learn_rate;
- `students_truth.csv`: user_id, theta (ability), speed (learning-speed multiplier);
- `mastery_truth.csv`: order_id, mastery_mask (bit k set: skill k latently mastered just
  before that answer).
"""


def _split_of(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(list(SPLIT_SHARES), size=n, p=list(SPLIT_SHARES.values()))


def write_synthetic(settings: Settings, n_students: int = N_STUDENTS) -> dict[str, Any]:
    """Simulate and write the raw data set with its truth and provenance."""
    out = settings.raw_dir(DATASET)
    out.mkdir(parents=True, exist_ok=True)
    sim = simulator.simulate(n_students, settings.seed)
    rng = random.Random(settings.seed)
    ids = np.array([opaque_id(12, rng) for _ in range(n_students)])
    frame, world = sim["interactions"], sim["world"]
    names = [name for name, _ in simulator.SKILLS]
    pd.DataFrame(
        {
            "order_id": frame["order_id"],
            "user_id": ids[frame["student"]],
            "skill_id": frame["skill_id"],
            "skill_name": [names[k] for k in frame["skill_id"]],
            "correct": frame["correct"],
            "answered_at": frame["at"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "split": _split_of(n_students, settings.seed)[frame["student"]],
        }
    ).to_csv(out / "interactions.csv", index=False)
    pd.DataFrame(
        {
            "skill_id": range(len(names)),
            "skill_name": names,
            "prerequisites": [" ".join(map(str, p)) for _, p in simulator.SKILLS],
            "difficulty": world.difficulty.round(4),
            "learn_rate": world.learn_rate.round(4),
        }
    ).to_csv(out / "skills.csv", index=False)
    pd.DataFrame({"user_id": ids, "theta": world.theta.round(4), "speed": world.speed.round(4)}
                 ).to_csv(out / "students_truth.csv", index=False)  # fmt: skip
    pd.DataFrame({"order_id": frame["order_id"], "mastery_mask": sim["mastery_mask"]}).to_csv(
        out / "mastery_truth.csv", index=False
    )
    text = SOURCE_MD.format(seed=settings.seed, students=n_students, rows=len(frame))
    (out / "SOURCE.md").write_text(text, encoding="utf-8")
    return {"dataset": DATASET, "students": n_students, "answers": len(frame), "dir": str(out)}


def tracing_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """A validated interactions frame -> the models' frame (skill as 0..K-1, answer order)
    and the skill ids in index order."""
    frame = frame.sort_values("order", kind="stable").reset_index(drop=True)
    skills = sorted(frame["skill_id"].astype(str).unique(), key=_natural)
    index = {s: i for i, s in enumerate(skills)}
    out = frame.assign(
        student_id=frame["student_id"].astype(str),
        skill=frame["skill_id"].astype(str).map(index).astype("int64"),
        correct=frame["correct"].astype("int64"),
    )
    return out, skills


def _natural(value: str) -> tuple:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def load_validated(settings: Settings) -> pd.DataFrame:
    """The gate first: validate the raw set (writes the report), then read what passed."""
    from pipelines.validate import validate_dataset

    validate_dataset(settings, DATASET)
    return pd.read_parquet(settings.validated_file(DATASET))


def build_feast(settings: Settings, frame: pd.DataFrame) -> dict[str, Any]:
    """Write the `student_skill_practice` source, apply the repo, materialise it online."""
    from features.education import practice_source
    from features.store import apply_definitions, batch_path, inside, open_store

    source = practice_source(frame)
    store = open_store(settings.feature_repo, settings.online_store)
    apply_definitions(store)
    path = batch_path(store, store.get_feature_view(VIEW))
    path.parent.mkdir(parents=True, exist_ok=True)
    source.to_parquet(path, index=False)
    start = source["event_timestamp"].min().to_pydatetime()
    end = (source["event_timestamp"].max() + pd.Timedelta(seconds=1)).to_pydatetime()
    with inside(store):
        store.materialize(start, end, feature_views=[VIEW])
    return {"rows": len(source), "source": str(path), "online": VIEW}


COUNTS = ["prior_successes", "prior_failures"]


def feast_training_set(settings: Settings, frame: pd.DataFrame) -> pd.DataFrame:
    """The PFA inputs as a point-in-time join from Feast's offline store (each answer gets
    the counts as of its time), checked against the same counts computed in memory: a
    difference is train/serve skew and stops training."""
    from features.education import prior_counts
    from features.store import inside, open_store

    keys = pd.DataFrame(
        {
            "student_id": frame["student_id"].astype(str),
            "skill_id": frame["skill_id"].astype(str),
            "event_timestamp": pd.to_datetime(frame["answered_at"], utc=True),
        }
    )
    store = open_store(settings.feature_repo, settings.online_store)
    with inside(store):
        joined = store.get_historical_features(
            entity_df=keys, features=[f"{VIEW}:{c}" for c in COUNTS]
        ).to_df()
    joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True)
    counts = keys.merge(joined, on=["student_id", "skill_id", "event_timestamp"], how="left")
    expected = prior_counts(frame)[COUNTS].reset_index(drop=True)
    if len(counts) != len(frame) or not counts[COUNTS].astype("int64").equals(expected):
        raise ValueError(f"{VIEW}: Feast's point-in-time counts differ from the answers")
    return frame.assign(**{c: counts[c].astype("int64").to_numpy() for c in COUNTS})


def log_runs(settings: Settings, result: dict[str, Any], dataset: str) -> dict[str, str]:
    """One MLflow run per family (params, test AUC/accuracy); DKT's weights as an artifact."""
    import mlflow
    import torch

    from training.tracking import use_experiment

    use_experiment(settings.tracking_uri, EXPERIMENT, settings.artifact_root)
    runs = {}
    for family, model in result["models"].items():
        with mlflow.start_run(run_name=f"{dataset}-{family}") as run:
            mlflow.set_tags({"dataset": dataset, "family": family, "task": "knowledge_tracing"})
            mlflow.log_metrics({f"test_{k}": v for k, v in result["test"][family].items()})
            if family == "dkt":
                mlflow.log_params({k: v for k, v in vars(model.config).items() if k != "history"})
                mlflow.log_metric("dev_best_auc", max(model.config.history))
                info = mlflow.pytorch.log_model(
                    model.net,
                    name="model",
                    serialization_format="pickle",
                    pip_requirements=[f"torch=={torch.__version__}"],
                )
                runs["dkt_model_uri"] = info.model_uri
            runs[family] = run.info.run_id
    return runs


def promote(settings: Settings, result: dict, runs: dict, test: pd.DataFrame) -> dict:
    """The shared gate: DKT is registered as `edu_knowledge_tracing`; champion only if the
    data passed validation, it beats PFA on the test students, and it beats the champion
    (rescored on the same students)."""
    import mlflow

    from pipelines.promotion import promote_evaluated
    from training.education.tracing import DKT, ordered, scores

    test = ordered(test)  # the order DKT.predict answers in
    y = test["correct"].to_numpy()

    def score_champion(uri: str) -> float:
        return scores(y, DKT.from_net(mlflow.pytorch.load_model(uri)).predict(test))["auc"]

    auc = result["test"]
    blockers = [] if auc["dkt"]["auc"] > auc["pfa"]["auc"] else ["DKT does not beat PFA"]
    evaluation = {"model_uri": runs["dkt_model_uri"], "run_id": runs["dkt"], "test": auc["dkt"]}
    return promote_evaluated(settings, evaluation, name=REGISTERED, dataset=DATASET,
                             metric="auc", candidate_score=auc["dkt"]["auc"],
                             score_champion=score_champion, blockers=blockers,
                             out_file=settings.path(OUTPUT_DIR) / "promotion.json")  # fmt: skip


def train(settings: Settings, dkt: DKTConfig | None = None) -> dict[str, Any]:
    """Gate -> Feast -> three families on the student split -> MLflow; figures to JSON.
    DKT uses `scrm edu tune`'s best params when there are any."""
    started = time.perf_counter()
    frame, skills = tracing_frame(load_validated(settings))
    feast = build_feast(settings, frame)
    frame = feast_training_set(settings, frame)  # PFA trains on what Feast serves
    settings.path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    from pipelines.education_tune import tuned_config

    result = compare(frame, len(skills), dkt or tuned_config(settings))
    runs = log_runs(settings, result, DATASET)
    promotion = promote(settings, result, runs, frame[frame["split"] == "test"])
    test = result["test"]
    summary = {
        "dataset": DATASET,
        "synthetic": True,
        "students": int(frame["student_id"].nunique()),
        "answers": len(frame),
        "test": test,
        "order_holds": test["dkt"]["auc"] > test["pfa"]["auc"] > test["skill_baseline"]["auc"],
        "feast": feast,
        "mlflow_runs": runs,
        "promotion": {k: promotion.get(k) for k in ("alias", "version", "reason")},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(settings.path(OUTPUT_DIR) / "tracing.json", summary)
    return {**summary, "models": result["models"], "frame": frame}


ASSISTMENTS = {"user_id": "student_id", "skill_id": "skill_id", "correct": "correct",
               "order_id": "order"}  # fmt: skip


def read_assistments(path: Path, seed: int) -> pd.DataFrame:
    """ASSISTments 2009 skill-builder CSV (latin-1) -> interactions with a student split.
    Common preprocessing: rows without a skill dropped, first skill of a multi-skill row."""
    raw = pd.read_csv(path, usecols=list(ASSISTMENTS), dtype=str, encoding="latin-1")
    frame = raw.rename(columns=ASSISTMENTS).dropna(subset=["skill_id", "student_id"])
    frame = frame.assign(
        skill_id=frame["skill_id"].str.split("_").str[0].str.strip(),
        correct=pd.to_numeric(frame["correct"], errors="coerce"),
        order=pd.to_numeric(frame["order"], errors="coerce"),
    ).dropna(subset=["correct", "order"])
    frame = frame[frame["correct"].isin([0, 1])]
    students = np.array(sorted(frame["student_id"].unique()))
    split = dict(zip(students, _split_of(len(students), seed), strict=True))
    return frame.assign(split=frame["student_id"].map(split))


def evaluate_csv(path: Path, seed: int, dkt: DKTConfig | None = None) -> dict[str, Any]:
    """The three families on a local ASSISTments-2009 CSV; nothing written to the repo."""
    frame, skills = tracing_frame(read_assistments(path, seed))
    result = compare(frame, len(skills), dkt or DKTConfig(seed=seed))
    return {"file": str(path), "students": int(frame["student_id"].nunique()),
            "answers": len(frame), "skills": len(skills), "test": result["test"]}  # fmt: skip
