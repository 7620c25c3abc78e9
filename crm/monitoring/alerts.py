"""Alert delivery: what Alertmanager posts to our webhook, kept for the console's alert list
and forwarded to the operations group robot (WeCom or DingTalk group bot, markdown).

Alertmanager groups alerts (by alertname and severity, monitoring/alertmanager.yml) and posts
one webhook per group; each alert is stored by its fingerprint and start time, so a retried
post or a repeat notification updates the same row instead of adding one. A robot that does
not answer makes the webhook answer 502, so Alertmanager retries the notification.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
  fingerprint TEXT NOT NULL, starts_at TEXT NOT NULL, status TEXT NOT NULL,
  alertname TEXT NOT NULL, severity TEXT NOT NULL, labels TEXT NOT NULL,
  annotations TEXT NOT NULL, ends_at TEXT, received_at REAL NOT NULL, receiver TEXT,
  PRIMARY KEY (fingerprint, starts_at)
)
"""


class AlertIn(BaseModel):
    """One alert of an Alertmanager webhook (payload version 4)."""

    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = Field(min_length=1, max_length=64)  # noqa: N815 - Alertmanager's names
    endsAt: str | None = Field(None, max_length=64)  # noqa: N815
    fingerprint: str = Field("", max_length=64)


class AlertWebhook(BaseModel):
    """Alertmanager's webhook body (https://prometheus.io/docs/alerting/latest/configuration/
    #webhook_config); unknown fields are ignored, the ones we use are checked."""

    model_config = ConfigDict(extra="ignore")
    version: str = "4"
    status: Literal["firing", "resolved"]
    receiver: str = Field("", max_length=128)
    groupKey: str = Field("", max_length=1024)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    alerts: list[AlertIn] = Field(min_length=1, max_length=1000)


class AlertStore:
    """The console's alert list in sqlite (one file; every gateway replica opens it)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.Lock()
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def save(self, webhook: AlertWebhook) -> int:
        now = time.time()
        rows = [
            (
                alert.fingerprint or json.dumps(alert.labels, sort_keys=True)[:64],
                alert.startsAt,
                alert.status,
                alert.labels.get("alertname", "unnamed"),
                alert.labels.get("severity", "none"),
                json.dumps(alert.labels, sort_keys=True),
                json.dumps(alert.annotations, sort_keys=True),
                alert.endsAt,
                now,
                webhook.receiver,
            )
            for alert in webhook.alerts
        ]
        with self.lock, self.connect() as db:
            db.executemany(
                "INSERT INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(fingerprint, "
                "starts_at) DO UPDATE SET status=excluded.status, ends_at=excluded.ends_at, "
                "annotations=excluded.annotations, received_at=excluded.received_at",
                rows,
            )
        return len(rows)

    def list(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = "SELECT * FROM alerts"
        args: list[Any] = []
        if status:
            query += " WHERE status = ?"
            args.append(status)
        query += " ORDER BY received_at DESC LIMIT ?"
        args.append(limit)
        with self.connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(query, args).fetchall()
        return [
            {
                **dict(row),
                "labels": json.loads(row["labels"]),
                "annotations": json.loads(row["annotations"]),
            }
            for row in rows
        ]


def robot_markdown(webhook: AlertWebhook) -> tuple[str, str]:
    """(title, markdown) for the group robot: one line per alert with its summary."""
    firing = [a for a in webhook.alerts if a.status == "firing"]
    title = f"[{webhook.status.upper()}] " + ", ".join(
        sorted({a.labels.get("alertname", "alert") for a in webhook.alerts})
    )
    resolved = len(webhook.alerts) - len(firing)
    lines = [f"### {title}", f"firing: {len(firing)}, resolved: {resolved}"]
    for alert in webhook.alerts[:20]:
        severity = alert.labels.get("severity", "none")
        summary = alert.annotations.get("summary") or alert.annotations.get("description", "")
        colour = "warning" if alert.status == "firing" else "info"
        lines.append(
            f'> <font color="{colour}">{alert.status}</font> **{alert.labels.get("alertname")}**'
            f" ({severity}) {summary}"
        )
    return title[:64], "\n".join(lines)


def robot_body(webhook: AlertWebhook, fmt: str) -> dict[str, Any]:
    """WeCom group robot: {"msgtype": "markdown", "markdown": {"content"}}; DingTalk: also
    markdown, with a `title` and the text under `text`."""
    title, text = robot_markdown(webhook)
    if fmt == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    return {"msgtype": "markdown", "markdown": {"content": text}}


class Robot:
    """Posts to the ops group robot at `url` (None: not configured, nothing is sent)."""

    def __init__(self, url: str | None, fmt: str = "wecom", timeout_s: float = 5.0):
        self.url, self.fmt, self.timeout_s = url, fmt, timeout_s

    def send(self, webhook: AlertWebhook) -> str:
        if not self.url:
            return "not configured"
        response = httpx.post(self.url, json=robot_body(webhook, self.fmt), timeout=self.timeout_s)
        response.raise_for_status()
        answer = response.json() if response.content else {}
        if isinstance(answer, dict) and answer.get("errcode", 0) != 0:  # both vendors' shape
            raise RuntimeError(f"robot refused: {answer.get('errmsg', answer)}")
        return "sent"
