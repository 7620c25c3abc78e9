"""`scrm eval loop`: the learning loop on a "new products" scenario, in process.

BANKING77 with `withheld` intents left out of the first training. A stream of customer turns
(one customer per turn from a pool, sticky A/B arms by customer):

    A  before onset: test-split utterances of the known intents
    B  from onset T: known test utterances and, at `new_share`, utterances of the withheld
       intents (their train rows: never trained on). The bot answers when the model's
       calibrated confidence passes the dev-tuned threshold, else hands off; a wrong answer
       is rephrased and escalated to an agent with probability `escalate`. Agents label
       handed-off turns with the gold intent at `label_rate` (at most `max_labels` per
       intent). Evidently watches windows of `window` turns against the dev reference.
    retrain when the loop's trigger policy (pipelines/loop_run.trigger_reasons) fires on the
       new labels; the candidate is gated offline on the frozen test split of known intents
    C  the online experiment: challenger for `loop.experiment.share` of customers, a look
       every `look_every` turns with the experiment's decision (SRM, mSPRT, guardrails) on
       auto-resolution (answered and right)
    D  after promotion: known test utterances left and the withheld intents' test rows

The same code decides as in production (trigger_reasons, experiment.decide, monitor.drift),
with the same TF-IDF + LR family as the registered `intent_en` champion; what is not
exercised here is the registry and Ray (tests/unit/test_loop_steps.py covers the registry).
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.loop_run import LoopStats, trigger_reasons
from settings import Settings


@dataclass
class Scenario:
    withheld: int = 10
    onset: int = 600
    new_share: float = 0.3
    escalate: float = 0.6
    label_rate: float = 0.9
    max_labels: int = 50
    window: int = 200
    look_every: int = 100
    max_experiment: int = 2000
    customers: int = 3000
    seed: int = 42
    new_labels: int | None = None  # the trigger's label count (default: loop.trigger)
    feedback_oversample: float | None = None  # default: loop.feedback_oversample


@dataclass
class Phase:
    turns: int = 0
    answered_right: int = 0
    answered: int = 0
    new_turns: int = 0
    new_right: int = 0
    rows: list = field(default_factory=list)

    def add(self, new: bool, answered: bool, right: bool) -> None:
        self.turns += 1
        self.answered += answered
        self.answered_right += answered and right
        self.new_turns += new
        self.new_right += new and answered and right

    def summary(self) -> dict[str, Any]:
        def rate(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        known = self.turns - self.new_turns
        return {
            "turns": self.turns,
            "auto_answer_rate": rate(self.answered, self.turns),
            "correct_auto_answer_rate": rate(self.answered_right, self.turns),
            "known_intent_correct_auto_answer_rate": rate(
                self.answered_right - self.new_right, known
            ),
            "new_intent_turns": self.new_turns,
            "new_intent_correct_auto_answer_rate": rate(self.new_right, self.new_turns),
        }


class Model:
    """TF-IDF + LR with a confidence threshold tuned on dev for the task's target precision."""

    def __init__(self, settings: Settings, train: pd.DataFrame, dev: pd.DataFrame):
        from training.tfidf import fit_tfidf_classifier, normalise

        base = settings.text.baseline
        self.normalise = normalise
        self.pipeline = fit_tfidf_classifier(train, base.tfidf, base.classifier, settings.seed)
        target = settings.text.tasks["intent_en"].target_precision
        labels, confidence = self.predict(dev["text"].tolist())
        right = labels == dev["label"].to_numpy()
        self.threshold = 1.0
        for t in np.unique(confidence)[::-1]:  # the lowest threshold keeping the precision
            kept = confidence >= t
            if right[kept].mean() >= target:
                self.threshold = float(t)

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        probabilities = self.pipeline.predict_proba(self.normalise(texts))
        classes = self.pipeline.classes_
        return classes[probabilities.argmax(1)], probabilities.max(1)


def split_data(settings: Settings, scenario: Scenario) -> dict[str, Any]:
    from pipelines.datasets import load_dataset

    frame, _ = load_dataset(settings.raw_dir("banking77"), settings.dataset("banking77"),
                            settings.seed)  # fmt: skip
    rng = random.Random(scenario.seed)
    withheld = sorted(rng.sample(sorted(frame["label"].unique()), scenario.withheld))
    new = frame["label"].isin(withheld)
    pick = lambda f: f.sample(frac=1, random_state=scenario.seed).reset_index(drop=True)  # noqa: E731
    return {
        "withheld": withheld,
        "train": frame[(frame["split"] == "train") & ~new],
        "dev": frame[(frame["split"] == "dev") & ~new],
        "known_test": pick(frame[(frame["split"] == "test") & ~new]),
        "new_stream": pick(frame[frame["split"].isin(["train", "dev"]) & new]),
        "new_test": pick(frame[(frame["split"] == "test") & new]),
        "test": frame[frame["split"] == "test"],
    }


def arm_of(customer: str, share: float) -> str:
    digest = hashlib.sha1(f"intent_en:{customer}".encode()).digest()
    return "challenger" if int.from_bytes(digest[:4], "big") / 2**32 < share else "champion"


def monitor_frame_of(model: Model, texts: list[str]) -> pd.DataFrame:
    from pipelines.monitor import monitor_frame

    labels, confidence = model.predict(texts)
    answers = pd.DataFrame({"label": labels, "confidence": confidence,
                            "in_scope": confidence >= model.threshold})  # fmt: skip
    return monitor_frame(pd.Series(texts), answers)


class Stream:
    """The turns in order: known test utterances, and withheld-intent ones from onset."""

    def __init__(self, data: dict[str, Any], scenario: Scenario):
        self.data, self.s = data, scenario
        self.rng = random.Random(scenario.seed + 1)
        self.known = data["known_test"].itertuples()
        self.new = data["new_stream"].itertuples()
        self.new_test = data["new_test"].itertuples()
        self.count = 0

    def next(self, final: bool = False) -> tuple[str, str, bool, str] | None:
        """(text, gold, is_new, customer) or None when the data runs out."""
        self.count += 1
        customer = f"c{self.rng.randrange(self.s.customers)}"
        onset = self.count > self.s.onset
        source = self.known
        if onset and self.rng.random() < self.s.new_share:
            source = self.new_test if final else self.new
        row = next(source, None)
        if row is None:
            return None
        return row.text, row.label, source is not self.known, customer


def serve_turn(model: Model, text: str, gold: str) -> tuple[bool, bool, str]:
    """(answered, right, predicted) as the dialogue would: answer above the threshold."""
    labels, confidence = model.predict([text])
    answered = bool(confidence[0] >= model.threshold)
    return answered, answered and labels[0] == gold, str(labels[0])


def collect(phase: Phase, model: Model, turn: tuple, scenario: Scenario, rng: random.Random,
            labels: list) -> bool:  # fmt: skip
    """Serve one turn; an agent labels a handed-off turn. Returns auto-resolved."""
    text, gold, new, _ = turn
    answered, right, _ = serve_turn(model, text, gold)
    phase.add(new, answered, right)
    handed_off = not answered or (not right and rng.random() < scenario.escalate)
    per_intent = sum(1 for _, g in labels if g == gold)
    if handed_off and rng.random() < scenario.label_rate and per_intent < scenario.max_labels:
        labels.append((text, gold))
    return answered and right


def retrain(settings: Settings, data: dict[str, Any], labels: list) -> Model:
    """v2 as the train stage builds it: the train split plus the feedback labels, balanced
    as `with_feedback` does (`loop.feedback_oversample`)."""
    from pipelines.loop import balance_feedback

    extra = pd.DataFrame(labels, columns=["text", "label"])
    extra = balance_feedback(data["train"], extra, settings.loop.feedback_oversample)
    return Model(settings, pd.concat([data["train"], extra], ignore_index=True), data["dev"])


def test_set_rates(model: Model, data: dict[str, Any]) -> dict[str, float]:
    """Accuracy and correct auto-answers on every test utterance of the known and of the
    withheld intents (the stream's phases see only part of them: a steadier view)."""
    out = {}
    for name in ("known_test", "new_test"):
        frame = data[name]
        labels, confidence = model.predict(frame["text"].tolist())
        right = labels == frame["label"].to_numpy()
        out[f"{name}_accuracy"] = round(float(right.mean()), 4)  # abstention aside
        answered_right = right & (confidence >= model.threshold)
        out[f"{name}_correct_auto_answer_rate"] = round(float(answered_right.mean()), 4)
    return out


def run_scenario(settings: Settings, scenario: Scenario) -> dict[str, Any]:
    from pipelines.monitor import drift
    from training.experiment import Arm, ExperimentRules, decide

    started = time.monotonic()
    if (share := scenario.feedback_oversample) is not None:
        loop = settings.loop.model_copy(update={"feedback_oversample": share})
        settings = settings.model_copy(update={"loop": loop})
    data = split_data(settings, scenario)
    rng = random.Random(scenario.seed + 2)
    v1 = Model(settings, data["train"], data["dev"])
    reference = monitor_frame_of(v1, data["dev"]["text"].tolist())
    stream, labels, window = Stream(data, scenario), [], []
    trigger = settings.loop.trigger
    if scenario.new_labels is not None:
        trigger = trigger.model_copy(update={"new_labels": scenario.new_labels})
    phases = {name: Phase() for name in ("before_onset", "after_onset", "experiment", "after")}
    detected, retrain_at, reasons, false_alarms = None, None, [], 0
    while retrain_at is None:  # A and B: serve v1, watch drift, collect labels
        turn = stream.next()
        if turn is None:
            raise ValueError("the data ran out before the trigger fired")
        phase = phases["before_onset" if stream.count <= scenario.onset else "after_onset"]
        collect(phase, v1, turn, scenario, rng, labels if stream.count > scenario.onset else [])
        window.append(turn[0])
        if len(window) == scenario.window:
            report = drift(reference, monitor_frame_of(v1, window), None)
            fired = report["drift_share"] > settings.loop.trigger.drift_share
            if fired and stream.count <= scenario.onset:
                false_alarms += 1
            elif fired and detected is None:
                detected = stream.count
            window = []
        reasons = trigger_reasons(LoopStats(new_labels=len(labels)), trigger)
        if reasons and stream.count > scenario.onset:
            retrain_at = stream.count
    v2 = retrain(settings, data, labels)
    test = data["test"]
    offline = {name: float((m.predict(test["text"].tolist())[0] == test["label"]).mean())
               for name, m in (("v1", v1), ("v2", v2))}  # fmt: skip
    share = settings.loop.experiment.share
    rules = ExperimentRules(**settings.loop.experiment.model_dump(exclude={"share"}))
    arms = {"champion": Arm("champion", "1"), "challenger": Arm("challenger", "2")}
    decision, p_value, looks = None, None, 0
    while decision is None or decision.action == "continue":
        turn = stream.next()
        if turn is None or looks * scenario.look_every >= scenario.max_experiment:
            break
        arm = arm_of(turn[3], share)
        resolved = collect(phases["experiment"], v2 if arm == "challenger" else v1, turn,
                           scenario, rng, [])  # fmt: skip
        arms[arm].turns += 1
        arms[arm].auto_resolved += resolved
        if sum(a.turns for a in arms.values()) % scenario.look_every == 0:
            looks += 1
            decision = decide(arms["champion"], arms["challenger"], share, rules, p_value)
            p_value = decision.p_value if decision.p_value is not None else p_value
    promoted_at = stream.count if decision is not None and decision.promote else None
    final = v2 if promoted_at else v1
    while (turn := stream.next(final=True)) is not None and phases["after"].turns < 1500:
        collect(phases["after"], final, turn, scenario, rng, [])
    per_intent = pd.Series([g for _, g in labels]).value_counts()
    return {
        "scenario": vars(scenario), "withheld_intents": data["withheld"],
        "threshold_v1": round(v1.threshold, 4), "threshold_v2": round(v2.threshold, 4),
        "drift_detected_after_turns": None if detected is None else detected - scenario.onset,
        "drift_false_alarms_before_onset": false_alarms,
        "labels": len(labels), "labels_new_intents": int(per_intent.reindex(
            data["withheld"]).fillna(0).sum()), "max_labels_per_intent": int(per_intent.max()),
        "retrain_after_turns": retrain_at - scenario.onset, "trigger": reasons,
        "offline_test_accuracy": {k: round(v, 4) for k, v in offline.items()},
        "feedback_oversample": settings.loop.feedback_oversample,
        "test_sets": {name: test_set_rates(m, data) for name, m in (("v1", v1), ("v2", v2))},
        "experiment": None if decision is None else {
            "decision": decision.action, "reason": decision.reason,
            "lift": decision.lift, "interval": decision.interval, "p_value": decision.p_value,
            "srm_p": decision.srm_p, "looks": looks, "arms": decision.arms},
        "promoted_after_turns": None if promoted_at is None else promoted_at - scenario.onset,
        "phases": {name: phase.summary() for name, phase in phases.items()},
        "seconds": round(time.monotonic() - started, 1),
    }  # fmt: skip
