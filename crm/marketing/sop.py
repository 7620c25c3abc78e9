"""SOP task plans for WeCom customers (issue 28): time- and event-based steps per segment.

A plan targets the customers who carry a tag (a segment, a channel code's tag...). Each is
enrolled the first time a run sees them; step `day` N is due N days later. A step is either
- `mass`: an enterprise mass message to that one customer (`externalcontact/add_msg_template`
  `{chat_type: single, external_userid, sender, text}`), which the owning staff member
  confirms in WeCom; completion is read back with `externalcontact/get_groupmsg_send_result`
  (status 1 sent, 2 not a contact, 3 the customer's limit reached). WeCom lets a customer
  receive at most as many mass messages a month as the month has days: we count ours per
  customer and month (Asia/Shanghai) and skip a step that would exceed it ("limit");
- `reminder`: an app message (`message/send`) to the owning staff member, done when they say
  so (`POST /v1/wecom/sop/tasks/{id}/done`).
Event-based: a conversation the dialogue hands off for negative sentiment creates the plan's
`on_negative` reminder for the owning staff member, once per customer and day.
The owning staff member is the one the customer added through a channel code (contact_adds);
a customer without a WeCom contact gets a task marked `skipped` saying so.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from crm.channels.local_db import open_table_db
from crm.channels.senders import DeliveryFailed
from crm.messages import InboundMessage, MessageHandler, Reply
from privacy.ids import opaque_id

log = logging.getLogger(__name__)
DAY_S = 86_400.0
CHINA = ZoneInfo("Asia/Shanghai")
TASK_COLUMNS = ("id", "plan_id", "customer_id", "step", "kind", "staff", "text", "status",
                "detail", "msgid", "external_userid", "created_at", "done_at")  # fmt: skip


def month_limit(now: float) -> tuple[float, int]:
    """Start of the current month (Unix time, China) and its number of days (the limit)."""
    day = datetime.fromtimestamp(now, CHINA)
    start = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), calendar.monthrange(day.year, day.month)[1]


class SopStore:
    def __init__(self, path: Path):
        self.lock = threading.Lock()
        self.db = open_table_db(path)
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS sop_plans (id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " body TEXT NOT NULL, created_at REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS sop_enrolments (plan_id TEXT NOT NULL, customer_id TEXT"
            " NOT NULL, enrolled_at REAL NOT NULL, PRIMARY KEY (plan_id, customer_id));"
            "CREATE TABLE IF NOT EXISTS sop_tasks (id TEXT PRIMARY KEY, plan_id TEXT NOT NULL,"
            " customer_id TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL, staff TEXT NOT"
            " NULL, text TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL, msgid TEXT"
            " NOT NULL, external_userid TEXT NOT NULL, created_at REAL NOT NULL, done_at REAL,"
            " UNIQUE (plan_id, customer_id, step))"
        )

    def add_plan(self, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
        plan = {"id": f"sop{opaque_id()}", "tenant": tenant, **body}
        with self.lock:
            self.db.execute("INSERT INTO sop_plans VALUES (?, ?, ?, ?)",
                            (plan["id"], tenant, json.dumps(body, ensure_ascii=False),
                             time.time()))  # fmt: skip
        return plan

    def plans(self, tenant: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE tenant = ?", (tenant,)) if tenant else ("", ())
        with self.lock:
            rows = self.db.execute(f"SELECT id, tenant, body FROM sop_plans {where}", params)
            found = rows.fetchall()
        return [{"id": i, "tenant": t, **json.loads(b)} for i, t, b in found]

    def plan(self, plan_id: str) -> dict[str, Any] | None:
        return next((p for p in self.plans() if p["id"] == plan_id), None)

    def enrol(self, plan_id: str, customers: list[str], now: float) -> None:
        with self.lock:
            self.db.executemany("INSERT OR IGNORE INTO sop_enrolments VALUES (?, ?, ?)",
                                [(plan_id, c, now) for c in customers])  # fmt: skip

    def enrolled(self, plan_id: str) -> list[tuple[str, float]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT customer_id, enrolled_at FROM sop_enrolments WHERE plan_id=?", (plan_id,)
            )
            return [tuple(r) for r in rows.fetchall()]

    def add_task(self, task: dict[str, Any]) -> bool:
        """False when the step already has its task (a run repeated, an event retried)."""
        row = {"id": f"t{opaque_id()}", "detail": "", "msgid": "", "external_userid": "",
               "created_at": time.time(), "done_at": None, **task}  # fmt: skip
        with self.lock:
            return bool(self.db.execute(
                f"INSERT OR IGNORE INTO sop_tasks VALUES ({', '.join('?' * len(TASK_COLUMNS))})",
                [row[c] for c in TASK_COLUMNS],
            ).rowcount)  # fmt: skip

    def tasks(self, where: str = "1", params: tuple = ()) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(f"SELECT * FROM sop_tasks WHERE {where} ORDER BY created_at",
                                   params).fetchall()  # fmt: skip
        return [dict(zip(TASK_COLUMNS, r, strict=True)) for r in rows]

    def update(self, task_id: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.lock:
            self.db.execute(
                f"UPDATE sop_tasks SET {sets} WHERE id = ?", (*values.values(), task_id)
            )

    def mass_this_month(self, customer: str, now: float) -> int:
        start, _ = month_limit(now)
        with self.lock:
            row = self.db.execute(
                "SELECT COUNT(*) FROM sop_tasks WHERE customer_id=? AND kind='mass' AND status IN"
                " ('sent', 'done') AND created_at >= ?", (customer, start)).fetchone()  # fmt: skip
        return int(row[0])

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        with self.lock:
            self.db.execute("DELETE FROM sop_enrolments WHERE customer_id=?", (customer_id,))
            return self.db.execute(
                "DELETE FROM sop_tasks WHERE customer_id=?", (customer_id,)
            ).rowcount

    def close(self) -> None:
        self.db.close()


class SopService:
    """Runs the plans: enrols, creates and delivers due tasks, reads mass-message results."""

    def __init__(self, api: Any, store: SopStore, tags: Any, identity: Any, owners: Any):
        self.api, self.store, self.tags, self.identity = api, store, tags, identity
        self.owners = owners  # crm.channels.wecom_contacts.ContactWayStore (who added whom)
        self.lock = asyncio.Lock()

    def contact_of(self, customer: str) -> tuple[str, str] | None:
        """(external_userid, owning staff userid) of the customer's latest code add."""
        externals = self.identity.senders("wecom_external", customer)
        with self.owners.lock:
            row = self.owners.db.execute(
                "SELECT external_userid, userid FROM contact_adds WHERE customer_id=? ORDER BY"
                " at DESC LIMIT 1", (customer,)).fetchone()  # fmt: skip
        return (row[0], row[1]) if row and row[0] in externals else None

    def tagged(self, tenant: str, tag: str) -> list[str]:
        with self.tags.lock:
            rows = self.tags.db.execute(
                "SELECT customer_id FROM tags WHERE tenant=? AND tag=?", (tenant, tag)
            ).fetchall()
        return [r[0] for r in rows]

    async def run(self, now: float | None = None) -> dict[str, int]:
        """One pass over every plan (the gateway runs it every minute; the route on demand)."""
        now = now or time.time()
        async with self.lock:
            made = 0
            for plan in await asyncio.to_thread(self.store.plans):
                customers = await asyncio.to_thread(
                    self.tagged, plan["tenant"], plan["segment_tag"]
                )
                await asyncio.to_thread(self.store.enrol, plan["id"], customers, now)
                for customer, since in await asyncio.to_thread(self.store.enrolled, plan["id"]):
                    for index, step in enumerate(plan["steps"]):
                        if since + step["day"] * DAY_S <= now:
                            made += await self.deliver(plan, customer, f"day{index}", step, now)
            checked = await self.check_mass(now)
        return {"tasks": made, "checked": checked}

    async def deliver(self, plan: dict, customer: str, key: str, step: dict, now: float) -> int:
        contact = await asyncio.to_thread(self.contact_of, customer)
        task = {"plan_id": plan["id"], "customer_id": customer, "step": key,
                "kind": step["kind"], "staff": contact[1] if contact else "",
                "text": step["text"], "external_userid": contact[0] if contact else "",
                "status": "pending"}  # fmt: skip
        if not await asyncio.to_thread(self.store.add_task, task):
            return 0  # this step of this customer has its task already
        found = await asyncio.to_thread(
            self.store.tasks, "plan_id=? AND customer_id=? AND step=?", (plan["id"], customer, key)
        )
        task_id = found[0]["id"]
        if contact is None:
            await asyncio.to_thread(self.store.update, task_id, status="skipped",
                                    detail="no WeCom contact (channel code) known")  # fmt: skip
            return 1
        try:
            if step["kind"] == "mass":
                await self.mass(task_id, customer, contact, step["text"], now)
            else:
                text = f"【SOP】{plan['name']}：客户 {customer}，{step['text']}"
                await self.api(contact[1], text, "system", {})
                await asyncio.to_thread(self.store.update, task_id, status="open")
        except DeliveryFailed as error:
            await asyncio.to_thread(self.store.update, task_id, status="failed", detail=str(error))
        return 1

    async def mass(
        self, task_id: str, customer: str, contact: tuple, text: str, now: float
    ) -> None:
        sent = await asyncio.to_thread(self.store.mass_this_month, customer, now)
        if sent >= month_limit(now)[1]:
            await asyncio.to_thread(self.store.update, task_id, status="limit",
                                    detail="the customer's mass messages this month")  # fmt: skip
            return
        body = {"chat_type": "single", "external_userid": [contact[0]], "sender": contact[1],
                "text": {"content": text}}  # fmt: skip
        answer = await self.api.call("/cgi-bin/externalcontact/add_msg_template", body)
        await asyncio.to_thread(self.store.update, task_id, status="sent",
                                msgid=answer.get("msgid", ""))  # fmt: skip

    async def check_mass(self, now: float) -> int:
        """Mass tasks the staff member has not confirmed yet: ask WeCom how each went."""
        pending = await asyncio.to_thread(self.store.tasks, "kind='mass' AND status='sent'")
        for task in pending:
            body = {"msgid": task["msgid"], "userid": task["staff"], "limit": 1000}
            try:
                answer = await self.api.call(
                    "/cgi-bin/externalcontact/get_groupmsg_send_result", body
                )
            except DeliveryFailed as error:
                log.warning("SOP mass result of %s: %s", task["id"], error)
                continue
            mine = [r for r in answer.get("send_list") or []
                    if r.get("external_userid") == task["external_userid"]]  # fmt: skip
            status = {1: "done", 2: "failed", 3: "limit"}.get(mine[0].get("status") if mine else 0)
            if status:
                await asyncio.to_thread(self.store.update, task["id"], status=status, done_at=now)
        return len(pending)

    async def negative(self, customer: str, now: float | None = None) -> int:
        """A conversation handed off for negative sentiment: each plan of the customer's
        segments with an `on_negative` text reminds the owning staff member (once a day)."""
        now = now or time.time()
        day = datetime.fromtimestamp(now, CHINA).date().isoformat()
        made = 0
        for plan in await asyncio.to_thread(self.store.plans):
            if not plan.get("on_negative"):
                continue
            if customer not in await asyncio.to_thread(
                self.tagged, plan["tenant"], plan["segment_tag"]
            ):
                continue
            step = {"kind": "reminder", "text": plan["on_negative"], "day": 0}
            made += await self.deliver(plan, customer, f"negative:{day}", step, now)
        return made

    def watch(self, handler: MessageHandler) -> MessageHandler:
        """The message handler, with negative-sentiment handoffs starting SOP follow-ups."""

        async def handle(message: InboundMessage) -> Reply:
            reply = await handler(message)
            if reply.data.get("handoff_reason") == "negative_sentiment" and message.customer_id:
                try:
                    await self.negative(message.customer_id)
                except Exception:  # the customer's answer must not depend on the SOP
                    log.exception("SOP follow-up for %s not created", message.customer_id)
            return reply

        return handle
