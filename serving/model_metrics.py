"""AI metrics of one model replica, per model and registry version: scoring latency, the
confidence histogram, abstentions, the predicted-label distribution and a drift score.

Recorded where the scoring happens (the model replica, `RegistryModel.score_items`), so every
caller counts: the model routes, the Conversation's dialogue and batch jobs alike; in
multiprocess mode the gateway's /metrics shows them summed over replicas.

Drift score: the shift of mean confidence between a version's first `reference` answers in
this replica and its latest `window` answers (0 = same, 1 = from always sure to never). It
needs no stored training data and reacts to what operators see as drift: inputs the model
no longer recognises (lower confidence) or a sudden over-confidence. Label values are capped
at `max_labels` per model (further labels count as `_other`), so cardinality stays bounded.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.metrics import LATENCY_BUCKETS

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
OTHER = "_other"
CONFIDENCE_KEYS = ("confidence", "probability", "score")


def confidence_of(answer: dict[str, Any]) -> float | None:
    for key in CONFIDENCE_KEYS:
        value = answer.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
    return None


def label_of(answer: dict[str, Any]) -> str | None:
    value = answer.get("label")
    if value is None and isinstance(answer.get("entities"), list):
        return "entities" if answer["entities"] else "none"
    return None if value is None else str(value)


def abstained(answer: dict[str, Any]) -> bool:
    return answer.get("in_scope") is False or answer.get("abstain") is True


class DriftTracker:
    """Reference = the version's first answers; score = |mean(recent) - mean(reference)|."""

    def __init__(self, reference: int, window: int):
        self.size = reference
        self.reference: list[float] = []
        self.recent: deque[float] = deque(maxlen=window)

    def add(self, confidence: float) -> float | None:
        if len(self.reference) < self.size:
            self.reference.append(confidence)
            return None
        self.recent.append(confidence)
        if len(self.recent) < max(10, self.recent.maxlen // 4):  # type: ignore[operator]
            return None
        base = sum(self.reference) / len(self.reference)
        return abs(sum(self.recent) / len(self.recent) - base)


class ModelMetrics:
    def __init__(
        self,
        model: str,
        max_labels: int = 50,
        reference: int = 200,
        window: int = 200,
        registry: CollectorRegistry | None = None,
    ):
        self.model, self.max_labels = model, max_labels
        self.reference, self.window = reference, window
        self.labels_seen: set[str] = set()
        self.drift: dict[str, DriftTracker] = {}
        registry = registry if registry is not None else CollectorRegistry()
        mv = ["model", "version"]
        self.latency = Histogram(
            "scrm_model_latency_seconds",
            "Scoring time of a batch, per answered item.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.confidence = Histogram(
            "scrm_model_confidence",
            "Confidence of each answer.",
            mv,
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.answers = Counter("scrm_model_answers", "Answers given.", mv, registry=registry)
        self.abstains = Counter(
            "scrm_model_abstains",
            "Answers where the model abstained (out of scope).",
            mv,
            registry=registry,
        )
        self.predicted = Counter(
            "scrm_model_predicted_labels",
            f"Predicted labels (first {max_labels} per model, then _other).",
            [*mv, "label"],
            registry=registry,
        )
        self.errors = Counter(
            "scrm_model_errors", "Scoring calls that failed.", ["model"], registry=registry
        )
        self.drift_score = Gauge(
            "scrm_model_drift_score",
            "Shift of mean confidence vs the version's first answers.",
            mv,
            registry=registry,
            multiprocess_mode="livemax",
        )

    def label(self, value: str) -> str:
        if value in self.labels_seen:
            return value
        if len(self.labels_seen) < self.max_labels:
            self.labels_seen.add(value)
            return value
        return OTHER

    def observe(self, version: str, answers: list[dict[str, Any]], seconds: float) -> None:
        """One scored batch of `answers` by `version`, which took `seconds`."""
        version = str(version)
        tracker = self.drift.setdefault(version, DriftTracker(self.reference, self.window))
        for answer in answers:
            self.answers.labels(self.model, version).inc()
            self.latency.labels(self.model, version).observe(seconds)
            if abstained(answer):
                self.abstains.labels(self.model, version).inc()
            if (label := label_of(answer)) is not None:
                self.predicted.labels(self.model, version, self.label(label)).inc()
            if (confidence := confidence_of(answer)) is not None:
                self.confidence.labels(self.model, version).observe(confidence)
                if (score := tracker.add(confidence)) is not None:
                    self.drift_score.labels(self.model, version).set(score)

    def failed(self) -> None:
        self.errors.labels(self.model).inc()
