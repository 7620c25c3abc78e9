"""params.yaml `loop:`: feedback labels, the retrain trigger and the online experiment's rules
(pipelines/loop.py, training/experiment.py)."""

from __future__ import annotations

from pydantic import Field

from settings.base import Strict


class TriggerSettings(Strict):
    """Any one of these starts `scrm loop run`'s retrain."""

    # Share of monitored columns whose distribution drifted from the training reference.
    drift_share: float = Field(0.5, ge=0, le=1)
    # Agent-confirmed accuracy of the champion on the turns agents judged since its promotion.
    min_online_accuracy: float = Field(0.8, ge=0, le=1)
    min_judged: int = Field(30, ge=1)  # judged turns before online accuracy may trigger
    new_labels: int = Field(200, ge=1)  # agent labels not yet trained on
    schedule_days: float = Field(7.0, gt=0)  # the champion's age that forces a retrain


class ExperimentSettings(Strict):
    """The online experiment (training/experiment.py: SRM, mSPRT, guardrails)."""

    share: float = Field(0.5, gt=0, lt=1)  # traffic the challenger gets (sticky per customer)
    alpha: float = Field(0.05, gt=0, lt=1)
    srm_alpha: float = Field(0.001, gt=0, lt=1)
    tau: float = Field(0.1, gt=0)
    min_samples: int = Field(100, ge=1)
    max_samples: int = Field(20_000, ge=1)
    max_latency_increase: float = Field(0.5, ge=0)
    max_error_rate: float = Field(0.02, ge=0, le=1)
    max_accuracy_drop: float = Field(0.02, ge=0, le=1)
    min_judged: int = Field(30, ge=1)


class MonitorSettings(Strict):
    """Online model monitoring (pipelines/monitor.py, Evidently): per model and version."""

    window_rows: int = Field(2000, ge=10)  # the latest served rows of a version
    min_rows: int = Field(50, ge=10)  # fewer: no report for that version
    reference_rows: int = Field(1000, ge=10)  # dev texts scored by the version: the reference
    max_abstain_rate: float = Field(0.3, ge=0, le=1)
    min_mean_confidence: float = Field(0.5, ge=0, le=1)


class LoopSettings(Strict):
    # Snapshots of the feedback consumer (feedback.parquet, served_turns.parquet) and the
    # validated label sets per text task (labels_<task>.parquet), DVC-tracked.
    feedback_dir: str = "data/feedback"
    # What `scrm loop` writes: experiment looks, decisions, the loop's state.
    state_dir: str = "data/loop"
    # Text tasks whose served turns feedback can label: task -> served model name.
    tasks: dict[str, str] = Field(
        default_factory=lambda: {"intent": "intent", "intent_en": "intent_en"}
    )
    # Feedback rows of a class the train split barely knows (a new intent) are repeated
    # until it has this share of the median class size (0: off); see pipelines/loop.py.
    feedback_oversample: float = Field(1.0, ge=0, le=5)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    experiment: ExperimentSettings = Field(default_factory=ExperimentSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
