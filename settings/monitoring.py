"""params.yaml `monitoring:`: metrics across replicas, alert thresholds, SLOs, alert delivery.

The thresholds here are the only place an alert's number lives: `scrm monitor rules` renders
monitoring/rules/scrm.rules.yml from them, and a unit test fails when the two disagree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from settings.base import Strict


class AlertThresholds(Strict):
    error_ratio: float = Field(0.05, gt=0, lt=1)  # 5xx share of requests over 5 min
    latency_p95_s: float = Field(1.0, gt=0)  # gateway p95 over 5 min
    consumer_lag_events: int = Field(1000, ge=1)  # a bus consumer this far behind
    drift_score: float = Field(0.2, gt=0, le=1)  # mean-confidence shift vs the version's start
    accuracy_min: float = Field(0.7, gt=0, le=1)  # online accuracy from feedback below this
    auto_answer_min: float = Field(0.5, gt=0, le=1)  # bot-answered share of messages
    auth_failures_per_s: float = Field(1.0, gt=0)  # 401s per second over 5 min
    replica_restarts: int = Field(3, ge=1)  # replica starts in 15 min
    heartbeat_stale_s: float = Field(60.0, gt=0)  # a live replica silent this long is hung
    marketing_blocked_share: float = Field(0.5, gt=0, le=1)  # a campaign's sends rules refused
    for_duration: str = "2m"  # how long a condition must hold before it fires


class SloSettings(Strict):
    # Google SRE workbook, multi-window multi-burn-rate: page at 14.4x (1h and 5m) and 6x
    # (6h and 30m), ticket at 3x (1d and 2h) and 1x (3d and 6h) of the error budget.
    availability: float = Field(0.995, gt=0.5, lt=1)  # share of requests not answered 5xx
    latency: float = Field(0.99, gt=0.5, lt=1)  # share of requests faster than latency_s
    latency_s: float = Field(0.5, gt=0)  # must be a bucket bound of the latency histogram
    period_days: int = Field(30, ge=1)


class MonitoringSettings(Strict):
    # prometheus_client multiprocess mode: every replica process of the host writes here and
    # the gateway's /metrics aggregates it; emptied when the server starts.
    multiproc_dir: str = "run/prometheus"
    telemetry_interval_s: float = Field(5.0, gt=0)
    max_label_values: int = Field(50, ge=2, le=1000)  # predicted labels per model, then _other
    drift_reference: int = Field(200, ge=10)  # a version's first answers: the reference
    drift_window: int = Field(200, ge=10)  # the recent answers compared with it
    alerts_db: str = "data/monitoring/alerts.db"
    robot_url_env: str = "SCRM_OPS_ROBOT_URL"  # the ops group robot's webhook URL
    robot_format: Literal["wecom", "dingtalk"] = "wecom"
    robot_timeout_s: float = Field(5.0, gt=0)
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    slo: SloSettings = Field(default_factory=SloSettings)
