"""What monitoring adds to a gateway replica: the guard's security observer, the replica's
system telemetry, the alert list and the ops robot. Built by `build_parts`, held in
`AppParts.monitor`; its metrics live on the replica's `Metrics` registry (and, in
multiprocess mode, in the shared directory every replica writes)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from crm.monitoring.alerts import AlertStore, Robot
from crm.monitoring.routes import AlertCounters
from crm.monitoring.security import SecurityMetrics
from serving.metrics import Metrics
from serving.telemetry import Telemetry
from settings import Settings


@dataclass
class GatewayMonitoring:
    security: SecurityMetrics
    telemetry: Telemetry
    alerts: AlertStore
    robot: Robot
    counters: AlertCounters

    def stop(self) -> None:
        self.telemetry.stop()


def monitor_gateway(settings: Settings, metrics: Metrics, guard: object) -> GatewayMonitoring:
    watch = settings.monitoring
    security = SecurityMetrics(metrics.registry)
    guard.observer = security.notify  # type: ignore[attr-defined]
    telemetry = Telemetry("Gateway", watch.telemetry_interval_s, metrics.registry).start()
    robot = Robot(os.environ.get(watch.robot_url_env), watch.robot_format, watch.robot_timeout_s)
    return GatewayMonitoring(security, telemetry, AlertStore(settings.path(watch.alerts_db)),
                             robot, AlertCounters(metrics.registry))  # fmt: skip
