"""Answer histories -> the student x skill practice facts (issue 27, education scenario).

One function computes the prior practice counts that the PFA model trains on and that the
`student_skill_practice` feature view serves: for each answer, how often the student had
answered that skill right and wrong *before* it. The view's source row for an answer is
stamped at the answer's time and holds the counts before it, so a point-in-time join of a
label at that time sees only the past.
"""

from __future__ import annotations

import pandas as pd


def prior_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns prior_attempts, prior_successes, prior_failures, aligned with `frame` (rows
    in answer order per student)."""
    keys = [frame["student_id"], frame["skill"]]
    correct = frame["correct"].astype("int64")
    successes = correct.groupby(keys).cumsum() - correct
    attempts = correct.groupby(keys).cumcount()
    return pd.DataFrame(
        {
            "prior_attempts": attempts.astype("int64"),
            "prior_successes": successes.astype("int64"),
            "prior_failures": (attempts - successes).astype("int64"),
        },
        index=frame.index,
    )


def practice_source(frame: pd.DataFrame) -> pd.DataFrame:
    """The `student_skill_practice` view's source: one row per answer, keys student_id and
    skill_id, the counts before it, stamped at the answer (`answered_at`)."""
    counts = prior_counts(frame)
    return pd.DataFrame(
        {
            "student_id": frame["student_id"].astype(str),
            "skill_id": frame["skill"].astype(str),
            "event_timestamp": pd.to_datetime(frame["answered_at"], utc=True),
            **{c: counts[c] for c in counts.columns},
        }
    ).reset_index(drop=True)
