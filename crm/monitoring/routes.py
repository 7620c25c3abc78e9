"""/v1/ops/alerts: Alertmanager's webhook in (role `ops`, action `ops.alert`) and the
console's alert list out (action `ops.read`)."""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from prometheus_client import CollectorRegistry, Counter

from crm.monitoring.alerts import AlertStore, AlertWebhook, Robot
from serving.http import ERRORS
from serving.schemas import ErrorResponse

log = logging.getLogger("ray.serve")


class AlertCounters:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.received = Counter(
            "scrm_ops_alerts_received",
            "Alerts Alertmanager delivered.",
            ["status", "severity"],
            registry=registry,
        )
        self.robot_failures = Counter(
            "scrm_ops_robot_failures",
            "Alert notifications the ops robot did not take.",
            registry=registry,
        )


def ops_alert_router(
    access: Any, store: AlertStore, robot: Robot, counters: AlertCounters
) -> APIRouter:
    router = APIRouter(prefix="/v1/ops", tags=["ops"])

    @router.post(
        "/alerts",
        responses={**ERRORS, 502: {"model": ErrorResponse}},
        dependencies=[Depends(access.require("ops.alert"))],
    )
    def receive(webhook: AlertWebhook) -> dict[str, Any]:
        """Alertmanager's webhook: store the alerts, then tell the ops group robot (502 when the
        robot fails, so Alertmanager retries; the alert list has them either way)."""
        stored = store.save(webhook)
        for alert in webhook.alerts:
            counters.received.labels(alert.status, alert.labels.get("severity", "none")).inc()
        try:
            delivered = robot.send(webhook)
        except Exception as error:
            counters.robot_failures.inc()
            log.warning("ops robot failed: %s", error)
            raise HTTPException(502, detail=f"alerts stored, ops robot failed: {error}") from None
        return {"stored": stored, "robot": delivered}

    @router.get("/alerts", responses=ERRORS, dependencies=[Depends(access.require("ops.read"))])
    def alerts(
        status: Literal["firing", "resolved"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """The console's alert list, newest first."""
        return {"alerts": store.list(status, limit)}

    return router
