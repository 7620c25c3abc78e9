"""MasteryUpdater: keeps each student's mastery in the ability graph current from
`answer.recorded` events on the bus (issue 27).

The update is the PFA model's (training/education/tracing.py), whose coefficients
`scrm edu run` writes to data/education/pfa.json as {skill_id: [intercept, per log success,
per log failure]}: P(correct) = sigmoid(b + g log(1 + successes) + r log(1 + failures)).
The counts live in the derived sqlite store and commit with the consumer's checkpoint; the
graph write after the commit sets absolute values (the student's `mastery` JSON entry for the
skill, the PRACTISED edge's weight and confidence), so replaying a batch changes nothing.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crm.insight.schema import upsert_edges

SCHEMA = """
CREATE TABLE IF NOT EXISTS edu_answer_counts (
    student_id TEXT NOT NULL, skill_id TEXT NOT NULL, successes INTEGER NOT NULL,
    failures INTEGER NOT NULL, last_at TEXT NOT NULL, PRIMARY KEY (student_id, skill_id)
);
"""


def load_coefficients(path: Path) -> dict[str, list[float]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def pfa_mastery(coefficients: list[float], successes: int, failures: int) -> float:
    b, g, r = coefficients
    z = b + g * math.log1p(successes) + r * math.log1p(failures)
    return 1 / (1 + math.exp(-z))


class MasteryUpdater:
    name = "mastery_updater"

    def __init__(self, graph: Any, coefficients: dict[str, list[float]]):
        self.graph, self.coefficients = graph, coefficients

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Any]]) -> list:
        """Fold answers into the counts; return (student, skill, successes, failures, at)."""
        ops = []
        for _, event in batch:
            if event.type != "answer.recorded" or event.skill_id not in self.coefficients:
                continue
            right, wrong = int(event.correct), int(not event.correct)
            db.execute(
                "INSERT INTO edu_answer_counts VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                "(student_id, skill_id) DO UPDATE SET successes = successes + excluded.successes,"
                " failures = failures + excluded.failures, last_at = excluded.last_at",
                (event.customer_id, event.skill_id, right, wrong, event.at.isoformat()),
            )
            s, f = db.execute(
                "SELECT successes, failures FROM edu_answer_counts WHERE student_id = ? AND "
                "skill_id = ?",
                (event.customer_id, event.skill_id),
            ).fetchone()
            ops.append((event.customer_id, event.skill_id, s, f, event.at.isoformat()))
        return ops

    def after_commit(self, changed: list) -> None:
        latest = {(student, skill): (s, f, at) for student, skill, s, f, at in changed}
        for (student, skill), (s, f, at) in latest.items():
            p = round(pfa_mastery(self.coefficients[skill], s, f), 3)
            found = self.graph.run(
                "MATCH (n:Student {id: $id}) RETURN n.mastery AS m", {"id": student}
            )
            mastery = json.loads(found[0]["m"] or "{}") if found else {}
            mastery[skill] = p
            self.graph.run(
                "MERGE (n:Student {id: $id}) SET n.mastery = $m",
                {"id": student, "m": json.dumps(mastery, sort_keys=True)},
            )
            upsert_edges(self.graph, "PRACTISED", [{"a": student, "b": f"skill-{skill}",
                         "weight": s + f, "confidence": p, "source": "bus:answer.recorded",
                         "updated_at": at}])  # fmt: skip
