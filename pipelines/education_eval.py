"""The education scenario after training: prerequisites, learning paths, the ability graph.

Everything here is scored against the simulator's ground truth (data/raw/edu_synthetic_kt:
skills.csv, students_truth.csv, mastery_truth.csv), which is why the data set is synthetic
and says so:

- `prerequisite_eval`: the DAG learned from answers (training/education/prerequisites.py)
  against the true DAG, direct edges and ancestor relation;
- `path_eval`: on held-out (test) students, at every 5th answer, each policy picks a skill
  from the DKT's mastery estimate; the stated metric is the **true expected mastery gain**
  of that practice (P(the skill becomes mastered), 0 if already mastered), from the
  student's true latent state; also the observational check of the issue: the student's
  next answer on a skill they did practise, when that skill was the recommendation vs not;
- `write_ability_graph`: skills, learned PREREQUISITE_OF edges and students with their
  mastery into the customer-insight graph store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm.insight import schema
from privacy.ids import LETTERS
from settings import Settings
from training.education import simulator
from training.education.paths import parents_of, policies, recommend
from training.education.prerequisites import compare_to_truth, learn_prerequisites

CHECK_EVERY = 5
CLASS_SIZE = 30
SOURCE = "model:edu_prerequisites"


def truth(settings: Settings, dataset: str) -> dict[str, Any]:
    raw = settings.raw_dir(dataset)
    skills = pd.read_csv(raw / "skills.csv")
    students = pd.read_csv(raw / "students_truth.csv")
    masks = pd.read_csv(raw / "mastery_truth.csv").set_index("order_id")["mastery_mask"]
    edges = {(int(p), int(k)) for k, ps in zip(skills["skill_id"], skills["prerequisites"],
             strict=True) if isinstance(ps, str) for p in ps.split()}  # fmt: skip
    world = simulator.World(
        difficulty=skills["difficulty"].to_numpy(),
        learn_rate=skills["learn_rate"].to_numpy(),
        theta=students["theta"].to_numpy(),
        speed=students["speed"].to_numpy(),
    )
    index = {u: i for i, u in enumerate(students["user_id"])}
    return {"edges": edges, "world": world, "student_index": index, "masks": masks}


def prerequisite_eval(frame: pd.DataFrame, n_skills: int, true_edges: set) -> dict[str, Any]:
    """Learned on the training students only; compared with the simulator's DAG."""
    edges = learn_prerequisites(frame[frame["split"] == "train"], n_skills)
    return {"edges": edges, **compare_to_truth(edges, true_edges)}


def path_eval(frame: pd.DataFrame, models: dict, edges: list, facts: dict, seed: int) -> dict:
    """Mean true mastery gain per recommendation, per policy (and the oracle's best)."""
    test = frame[frame["split"] == "test"]
    n_skills = len(models["pfa"].practice_gain())
    rules = policies(parents_of(edges, n_skills), models["pfa"].practice_gain())
    world, rng = facts["world"], np.random.default_rng(seed)
    gains: dict[str, list[float]] = {name: [] for name in [*rules, "oracle"]}
    matched: dict[bool, list[int]] = {True: [], False: []}
    sequences = zip(test.groupby("student_id", sort=False), models["dkt"].all_skills(test),
                    strict=True)  # fmt: skip
    for (student_id, rows), p in sequences:
        s = facts["student_index"][student_id]
        skills, correct = rows["skill"].to_numpy(), rows["correct"].to_numpy()
        masks = facts["masks"].loc[rows["order"].to_numpy()].to_numpy()
        mastered = simulator.mastery_matrix(masks, n_skills)
        for t in range(1, len(skills)):
            counts = np.bincount(skills[:t], minlength=n_skills)
            picks = {name: rule(p[t], counts, rng) for name, rule in rules.items()}
            later = np.flatnonzero(skills[t + 1 :] == skills[t])
            if later.size:
                matched[picks["recommender"] == skills[t]].append(int(correct[t + 1 + later[0]]))
            if t % CHECK_EVERY:
                continue
            true_gain = [simulator.learn_probability(world, s, mastered[t], k)
                         for k in range(n_skills)]  # fmt: skip
            for name, k in picks.items():
                gains[name].append(true_gain[k])
            gains["oracle"].append(max(true_gain))
    return {
        "metric": "mean true mastery gain per recommended practice (test students)",
        "checkpoints": len(gains["oracle"]),
        "true_gain": {name: round(float(np.mean(v)), 4) for name, v in gains.items()},
        "next_answer_correct_when_practised": {
            "recommended_skill": round(float(np.mean(matched[True])), 4),
            "other_skill": round(float(np.mean(matched[False])), 4),
            "n_recommended": len(matched[True]),
            "n_other": len(matched[False]),
        },
    }


def class_of(position: int) -> str:
    """A teacher's class of CLASS_SIZE students, named by letters (never a number)."""
    group = position // CLASS_SIZE
    return f"class-{LETTERS[group // len(LETTERS)]}{LETTERS[group % len(LETTERS)]}"


def mastery_table(frame: pd.DataFrame, dkt: Any, skill_ids: list[str]) -> pd.DataFrame:
    """Per student: the tracer's P(correct) per skill after their last answer, the class."""
    students = frame.groupby("student_id", sort=False).size().index
    final = np.array([p[-1] for p in dkt.all_skills(frame)])
    table = pd.DataFrame(final.round(3), index=students, columns=skill_ids)
    return table.assign(class_id=[class_of(i) for i in range(len(table))])


def console_files(folder: Path, frame: pd.DataFrame, mastery: pd.DataFrame, edges: list,
                  models: dict, names: dict[str, str]) -> None:  # fmt: skip
    """What the teacher pages read (crm/console/education.py): mastery with each student's
    recommended next skill, the skills and learned prerequisites, the answers; and the PFA
    coefficients the bus consumer updates mastery with (crm/insight/mastery.py)."""
    ids = list(names)
    parents = parents_of(edges, len(ids))
    effect = models["pfa"].practice_gain()
    chosen = [ids[recommend(row.to_numpy(), parents, effect)] for _, row in mastery[ids].iterrows()]
    mastery.assign(next_skill=chosen).to_parquet(folder / "mastery.parquet")
    skills = {
        "ids": ids,
        "names": names,
        "parents": {ids[k]: [ids[p] for p in ps] for k, ps in enumerate(parents) if ps},
    }
    (folder / "skills.json").write_text(json.dumps(skills, ensure_ascii=False), encoding="utf-8")
    pfa = models["pfa"].model
    coef, k = pfa.coef_[0], len(ids)
    online = {s: [float(pfa.intercept_[0] + coef[i]), float(coef[k + i]), float(coef[2 * k + i])]
              for i, s in enumerate(ids)}  # fmt: skip
    (folder / "pfa.json").write_text(json.dumps(online), encoding="utf-8")
    columns = ["student_id", "skill_id", "correct", "answered_at"]
    frame[columns].astype({"skill_id": str}).to_parquet(folder / "history.parquet", index=False)


def write_ability_graph(store: Any, frame: pd.DataFrame, mastery: pd.DataFrame,
                        edges: list, skill_names: dict[str, str]) -> dict[str, int]:  # fmt: skip
    """Skills, learned prerequisites, students (mastery JSON) and what each practised."""
    skill_ids = list(skill_names)
    schema.upsert_nodes(store, "Skill", [{"id": f"skill-{k}", "name": n}
                                         for k, n in skill_names.items()])  # fmt: skip
    schema.upsert_edges(store, "PREREQUISITE_OF", [
        {"a": f"skill-{skill_ids[e['a']]}", "b": f"skill-{skill_ids[e['b']]}",
         "confidence": e["confidence"], "source": SOURCE} for e in edges
    ])  # fmt: skip
    scores = mastery[skill_ids]
    schema.upsert_nodes(store, "Student", [
        {"id": sid, "class_id": row.class_id,
         "mastery": json.dumps(scores.loc[sid].to_dict(), sort_keys=True)}
        for sid, row in mastery.iterrows()
    ])  # fmt: skip
    tries = frame.groupby(["student_id", "skill_id"]).size()
    schema.upsert_edges(store, "PRACTISED", [
        {"a": sid, "b": f"skill-{k}", "weight": int(n),
         "confidence": float(scores.loc[sid, str(k)]), "source": "model:dkt"}
        for (sid, k), n in tries.items()
    ])  # fmt: skip
    return {"skills": len(skill_ids), "prerequisites": len(edges), "students": len(mastery),
            "practised": len(tries)}  # fmt: skip


def run(settings: Settings) -> dict[str, Any]:
    """`scrm edu run`: train (gate, Feast, MLflow), then prerequisites, paths, the graph;
    every figure of the README section, in data/education/education.json."""
    from crm.insight.graph import open_graph
    from pipelines.education import DATASET, OUTPUT_DIR, train
    from pipelines.io import write_json

    trained = train(settings)
    frame, models = trained["frame"], trained["models"]
    skill_ids = sorted(frame["skill_id"].astype(str).unique(), key=lambda v: (len(v), v))
    names = frame.groupby(frame["skill_id"].astype(str))["skill_name"].first()
    facts = truth(settings, DATASET)
    prerequisites = prerequisite_eval(frame, len(skill_ids), facts["edges"])
    paths = path_eval(frame, models, prerequisites["edges"], facts, settings.seed)
    mastery = mastery_table(frame, models["dkt"], skill_ids)
    console_files(settings.path(OUTPUT_DIR), frame, mastery, prerequisites["edges"], models,
                  {k: str(names[k]) for k in skill_ids})  # fmt: skip
    store = open_graph(settings)
    try:
        graph = write_ability_graph(store, frame, mastery, prerequisites["edges"],
                                    {k: str(names[k]) for k in skill_ids})  # fmt: skip
    finally:
        store.close()
    summary = {key: trained[key] for key in ("dataset", "synthetic", "students", "answers",
               "test", "order_holds", "mlflow_runs", "promotion", "seconds")}  # fmt: skip
    summary |= {"prerequisites": prerequisites, "paths": paths, "graph": graph}
    write_json(settings.path(OUTPUT_DIR) / "education.json", summary)
    return summary
