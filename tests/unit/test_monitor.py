"""Online model monitoring with Evidently: drift of served traffic against the training
reference, on text descriptors and answers; quality and online accuracy per version."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from pipelines.monitor import drift, monitor_frame, online_accuracy, quality

WORDS = ["card", "transfer", "balance", "pin", "account", "fee", "limit", "top", "up"]


def traffic(n: int, seed: int, long: bool = False, unsure: bool = False) -> pd.DataFrame:
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(8, 14) if long else rng.randint(3, 6)))
             for _ in range(n)]  # fmt: skip
    confidence = [rng.uniform(0.2, 0.6) if unsure else rng.uniform(0.7, 1.0) for _ in range(n)]
    answers = pd.DataFrame({
        "label": [rng.choice(["a", "b", "c"]) for _ in range(n)], "confidence": confidence,
        "in_scope": [c >= 0.5 for c in confidence]})  # fmt: skip
    return monitor_frame(pd.Series(texts), answers)


def test_new_kinds_of_questions_drift_and_the_same_kind_does_not(tmp_path: Path) -> None:
    reference = traffic(400, 1)
    same = drift(reference, traffic(300, 2), tmp_path / "same.html")
    shifted = drift(reference, traffic(300, 3, long=True, unsure=True), tmp_path / "new.html")
    assert same["drift_share"] < 0.5 < shifted["drift_share"]
    assert shifted["columns"]["words"]["drifted"] and shifted["columns"]["confidence"]["drifted"]
    assert not same["columns"]["predicted"]["drifted"]
    assert (tmp_path / "new.html").stat().st_size > 10_000  # Evidently's HTML report


def test_quality_and_online_accuracy_per_version() -> None:
    unsure = quality(traffic(200, 4, unsure=True))
    assert unsure["abstain_rate"] > 0.5 > unsure["mean_confidence"]
    feedback = pd.DataFrame({
        "model": ["m", "m", "m", "m"], "model_version": ["1", "1", "2", "1"],
        "kind": ["intent_confirmed", "intent_corrected", "intent_confirmed", "rephrase"],
        "correct": pd.array([1, 0, 1, 0], dtype="Int64")})  # fmt: skip
    assert online_accuracy(feedback, "m", "1") == {"judged": 2, "online_accuracy": 0.5}
    assert online_accuracy(feedback, "m", "3") == {"judged": 0, "online_accuracy": None}
