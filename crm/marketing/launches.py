"""Large launches off the request: queued in the campaign store, run by the replica's
background task, watched through a status URL.

`launch` freezes the audience in the request (the snapshot is of the moment the marketer
pressed launch) and sends inline when the audience is at most `inline_max` customers; a larger
one is queued (`launch_jobs`, in the campaign store's file) and the route answers 202 with the
job's status URL. `run_due` (the gateway's marketing task, crm/marketing/work.py) takes queued
jobs under a lease, runs the campaign and records the run's counts: queued -> running ->
done | failed. A replica that dies mid-run leaves the job `running` with an expired lease; the
next one picks it up again, and sends nothing twice (sends are claimed per customer and
step). A second launch while a job is unfinished answers that job, not a new one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from privacy.ids import opaque_id

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS launch_jobs (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, campaign_id TEXT NOT NULL, state TEXT NOT NULL,
    audience INTEGER NOT NULL, queued_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    run TEXT, error TEXT, lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS launch_jobs_campaign ON launch_jobs (tenant, campaign_id, state);
"""
COLUMNS = ("id", "tenant", "campaign_id", "state", "audience", "queued_at", "started_at",
           "finished_at", "run", "error")  # fmt: skip
UNFINISHED = ("queued", "running")


@dataclass
class LaunchQueue:
    store: Any  # crm.marketing.store.CampaignStore (its sqlite file holds the jobs too)
    marketing_of: Callable[[], Any]
    inline_max: int = 100  # at the default 20 sends/s: at most ~5 s inside a request
    lease_s: float = 600.0
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    metrics: Any = None  # crm.monitoring.marketing.MarketingMetrics

    def __post_init__(self) -> None:
        with self.store.lock:
            self.store.db.executescript(SCHEMA)

    async def launch(self, tenant: str, campaign_id: str) -> tuple[str, dict[str, Any]]:
        """("inline", the run's report) or ("queued", the job). StateError, KeyError as the
        campaign's `launch` raises them."""
        marketing = self.marketing_of()
        found = marketing.prepare(tenant, campaign_id)
        size = len(found["members"] or [])
        if size <= self.inline_max:
            report = await marketing.run(tenant, campaign_id)
            self.count("inline", "done")
            return "inline", report
        return "queued", self.enqueue(tenant, campaign_id, size)

    def enqueue(self, tenant: str, campaign_id: str, size: int) -> dict[str, Any]:
        with self.store.lock:  # one unfinished job per campaign
            row = self.store.db.execute(
                "SELECT id FROM launch_jobs WHERE tenant = ? AND campaign_id = ? AND state IN "
                "('queued', 'running')",
                (tenant, campaign_id),
            ).fetchone()
            if row is None:
                job_id = opaque_id()
                self.store.db.execute(
                    "INSERT INTO launch_jobs (id, tenant, campaign_id, state, audience, "
                    "queued_at) VALUES (?, ?, ?, 'queued', ?, ?)",
                    (job_id, tenant, campaign_id, size, self.clock().isoformat()),
                )
                self.count("queued", "queued")
            else:
                job_id = row[0]
        return self.status(tenant, job_id)  # type: ignore[return-value]

    def status(self, tenant: str, job_id: str, campaign_id: str | None = None) -> dict | None:
        """The job of this tenant (and campaign, when given); None like a missing one."""
        row = self.store._run(
            f"SELECT {', '.join(COLUMNS)} FROM launch_jobs WHERE id = ? AND tenant = ?",
            (job_id, tenant),
        ).fetchone()
        if row is None or (campaign_id is not None and row[2] != campaign_id):
            return None
        job = dict(zip(COLUMNS, row, strict=True))
        job["run"] = json.loads(job["run"]) if job["run"] else None
        return job

    def take(self) -> dict[str, Any] | None:
        """The oldest unfinished job whose lease expired, now leased to this replica."""
        now = time.time()
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT id, tenant FROM launch_jobs WHERE state IN ('queued', 'running') AND "
                "lease_until < ? ORDER BY queued_at LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            taken = self.store.db.execute(
                "UPDATE launch_jobs SET state = 'running', started_at = COALESCE(started_at, ?),"
                " lease_until = ? WHERE id = ? AND lease_until < ?",
                (self.clock().isoformat(), now + self.lease_s, row[0], now),
            )
            if taken.rowcount != 1:
                return None
        return self.status(row[1], row[0])

    async def run_due(self) -> int:
        """Run every due job to its end; how many finished."""
        finished = 0
        while (job := self.take()) is not None:
            try:
                report = await self.marketing_of().run(job["tenant"], job["campaign_id"])
                self.end(job["id"], "done", json.dumps(report), None)
            except Exception as error:  # visible on the status URL, not retried forever
                log.exception("launch job %s failed", job["id"])
                self.end(job["id"], "failed", None, repr(error)[:500])
            finished += 1
        return finished

    def end(self, job_id: str, state: str, run: str | None, error: str | None) -> None:
        self.store._run(
            "UPDATE launch_jobs SET state = ?, finished_at = ?, run = ?, error = ?, "
            "lease_until = 0 WHERE id = ?",
            (state, self.clock().isoformat(), run, error, job_id),
        )
        self.count("queued", state)

    def count(self, mode: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.launches.labels(mode, outcome).inc()
