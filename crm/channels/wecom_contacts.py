"""Channel QR codes (渠道活码) and WeCom's customer-contact events: who came from which code,
their profile, the code's welcome message and tags, and tags edited in WeCom read back.

    POST /cgi-bin/externalcontact/add_contact_way   {type, scene: 2 (QR), state, user, ...}
                                                    -> {config_id, qr_code}
    POST /cgi-bin/externalcontact/update_contact_way / del_contact_way   {config_id, ...}
    event change_external_contact/add_external_contact  {UserID, ExternalUserID, State,
                                                    WelcomeCode}
    POST /cgi-bin/externalcontact/send_welcome_msg   {welcome_code, text}  (20 s, once)
    POST /cgi-bin/externalcontact/mark_tag          {userid, external_userid, add_tag}
    GET  /cgi-bin/externalcontact/get               {external_contact, follow_user[].tags}
    event change_external_contact/edit_external_contact: tags may have changed: read back
    event change_external_tag/delete (a corp tag deleted): dropped from every profile

A code's `state` (at most 30 characters, WeCom's limit) is how an add is attributed: the event
carries it back. Customers added through a code are identities on channel `wecom_external`
(their external_userid), so the tag push of crm/insight/wecom_tags.py reaches them too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from crm.channels.local_db import open_table_db
from crm.channels.senders import DeliveryFailed
from crm.channels.wecom import field
from crm.insight.tags import Tag
from privacy.ids import opaque_id

log = logging.getLogger(__name__)
EXTERNAL = "wecom_external"
WECOM_TAG = "wecom:"  # set_by prefix of tags staff set in WeCom (kept by automatic recompute)
COLUMNS = ("config_id", "tenant", "state", "name", "scope", "users", "tags", "welcome",
           "qr_code", "created_at", "removed")  # fmt: skip


class ContactWayStore:
    def __init__(self, path: Path):
        self.lock = threading.Lock()
        self.db = open_table_db(path)
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS contact_ways (config_id TEXT PRIMARY KEY, tenant TEXT"
            " NOT NULL, state TEXT NOT NULL UNIQUE, name TEXT NOT NULL, scope TEXT NOT NULL,"
            " users TEXT NOT NULL, tags TEXT NOT NULL, welcome TEXT NOT NULL, qr_code TEXT NOT"
            " NULL, created_at REAL NOT NULL, removed INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE IF NOT EXISTS contact_adds (state TEXT NOT NULL, external_userid TEXT"
            " NOT NULL, userid TEXT NOT NULL, customer_id TEXT NOT NULL, at REAL NOT NULL,"
            " PRIMARY KEY (state, external_userid));"
            "CREATE TABLE IF NOT EXISTS wecom_tag_names (tag_id TEXT PRIMARY KEY, name TEXT"
            " NOT NULL)"
        )

    def _row(self, row: tuple | None) -> dict[str, Any] | None:
        if row is None:
            return None
        way = dict(zip(COLUMNS, row, strict=True))
        way["users"], way["tags"] = json.loads(way["users"]), json.loads(way["tags"])
        way["removed"] = bool(way["removed"])
        return way

    def put(self, way: dict[str, Any]) -> None:
        values = {**way, "users": json.dumps(way["users"]), "tags": json.dumps(way["tags"],
                  ensure_ascii=False), "removed": int(way.get("removed", False))}  # fmt: skip
        with self.lock:
            self.db.execute(
                f"INSERT OR REPLACE INTO contact_ways VALUES ({', '.join('?' * len(COLUMNS))})",
                [values[c] for c in COLUMNS],
            )

    def get(self, config_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute(
                "SELECT * FROM contact_ways WHERE config_id=?", (config_id,)
            ).fetchone()
        return self._row(row)

    def by_state(self, state: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM contact_ways WHERE state=?", (state,)).fetchone()
        return self._row(row)

    def list(self, tenant: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT * FROM contact_ways WHERE tenant=? ORDER BY created_at", (tenant,)
            ).fetchall()
        return [w for w in map(self._row, rows) if w is not None]

    def record_add(self, state: str, external: str, userid: str, customer: str) -> bool:
        """True the first time this customer came through this code (WeCom retries events)."""
        with self.lock:
            return bool(self.db.execute(
                "INSERT OR IGNORE INTO contact_adds VALUES (?, ?, ?, ?, ?)",
                (state, external, userid, customer, time.time()),
            ).rowcount)  # fmt: skip

    def report(self, tenant: str, since: float = 0.0) -> list[dict[str, Any]]:
        """New customers per code (removed codes included: their customers still count)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT w.config_id, w.name, w.scope, w.state, w.removed, COUNT(a.external_userid),"
                " MAX(a.at) FROM contact_ways w LEFT JOIN contact_adds a ON a.state = w.state"
                " AND a.at >= ? WHERE w.tenant = ? GROUP BY w.config_id ORDER BY w.created_at",
                (since, tenant),
            ).fetchall()
        keys = ("config_id", "name", "scope", "state", "removed", "new_customers", "last_added_at")
        return [dict(zip(keys, r, strict=True)) | {"removed": bool(r[4])} for r in rows]

    def remember_tags(self, tags: dict[str, str]) -> None:
        with self.lock:
            self.db.executemany("INSERT OR REPLACE INTO wecom_tag_names VALUES (?, ?)",
                                list(tags.items()))  # fmt: skip

    def tag_name(self, tag_id: str) -> str | None:
        with self.lock:
            row = self.db.execute(
                "SELECT name FROM wecom_tag_names WHERE tag_id=?", (tag_id,)
            ).fetchone()
        return row[0] if row else None

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        """Who came through which code, for this customer (the report counts them no more)."""
        with self.lock:
            return self.db.execute(
                "DELETE FROM contact_adds WHERE customer_id = ?", (customer_id,)
            ).rowcount

    def close(self) -> None:
        self.db.close()


class ContactWays:
    """Channel codes and the customer-contact events, over the WeCom API (`api.call`)."""

    def __init__(self, api: Any, store: ContactWayStore, identity: Any, insight: Any,
                 tenant_of_corp: str, tag_group: str = "SCRM auto tags"):  # fmt: skip
        self.api, self.store, self.identity, self.insight = api, store, identity, insight
        self.tenant, self.corp_id, self.tag_group = tenant_of_corp, api.corp_id, tag_group

    async def create(self, tenant: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A QR code for `spec` (name, scope, users, tags, welcome, state?, skip_verify)."""
        state = spec.get("state") or f"c{opaque_id()}"[:30]
        if await asyncio.to_thread(self.store.by_state, state):
            raise ValueError(f"state {state!r} is already used by another code")
        body = {"type": 1 if len(spec["users"]) == 1 else 2, "scene": 2, "state": state,
                "remark": spec["name"][:30], "skip_verify": spec.get("skip_verify", True),
                "user": spec["users"]}  # fmt: skip
        answer = await self.api.call("/cgi-bin/externalcontact/add_contact_way", body)
        way = {"config_id": answer["config_id"], "tenant": tenant, "state": state,
               "name": spec["name"], "scope": spec.get("scope", ""), "users": spec["users"],
               "tags": spec.get("tags", []), "welcome": spec.get("welcome", ""),
               "qr_code": answer.get("qr_code", ""), "created_at": time.time(),
               "removed": False}  # fmt: skip
        await asyncio.to_thread(self.store.put, way)
        return way

    async def update(self, config_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        way = await asyncio.to_thread(self.store.get, config_id)
        if way is None or way["removed"]:
            raise KeyError(config_id)
        if "users" in changes:  # who answers the code is WeCom's; tags and welcome are ours
            body = {"config_id": config_id, "user": changes["users"]}
            await self.api.call("/cgi-bin/externalcontact/update_contact_way", body)
        way.update({k: v for k, v in changes.items() if v is not None})
        await asyncio.to_thread(self.store.put, way)
        return way

    async def remove(self, config_id: str) -> dict[str, Any]:
        way = await asyncio.to_thread(self.store.get, config_id)
        if way is None or way["removed"]:
            raise KeyError(config_id)
        await self.api.call("/cgi-bin/externalcontact/del_contact_way", {"config_id": config_id})
        way["removed"] = True
        await asyncio.to_thread(self.store.put, way)
        return way

    async def on_event(self, plain: ET.Element) -> None:
        event, change = field(plain, "Event"), field(plain, "ChangeType") or ""
        if event == "change_external_contact" and change == "add_external_contact":
            await self.added(plain)
        elif event == "change_external_contact" and change == "edit_external_contact":
            await self.read_tags(field(plain, "UserID") or "", field(plain, "ExternalUserID") or "")
        elif event == "change_external_tag" and change == "delete" and field(plain, "Id"):
            await self.tag_deleted(field(plain, "Id") or "")

    async def added(self, plain: ET.Element) -> None:
        """Attribute, create the profile, welcome (the code's text), tag (the code's tags).
        Counted once per customer and code: WeCom's retries of the event do nothing more. Each
        step that WeCom refuses is logged and does not stop the others (the welcome code is
        valid once, for 20 s: there is no retrying it later)."""
        userid, external = field(plain, "UserID") or "", field(plain, "ExternalUserID") or ""
        state, code = field(plain, "State") or "", field(plain, "WelcomeCode") or ""
        if not external:
            return
        way = await asyncio.to_thread(self.store.by_state, state) if state else None
        customer = await asyncio.to_thread(self.identity.resolve, self.corp_id, EXTERNAL, external)
        first = await asyncio.to_thread(
            self.store.record_add, state or "-", external, userid, customer
        )
        if not first:
            return
        if way is not None and way["welcome"] and code:
            body = {"welcome_code": code, "text": {"content": way["welcome"]}}
            await logged(self.api.call("/cgi-bin/externalcontact/send_welcome_msg", body))
        contact = await logged(self.read_tags(userid, external, customer)) or {}
        name = (contact.get("external_contact") or {}).get("name", "")
        code_name = way["name"] if way else state
        profile = {"wecom_name": name, "wecom_staff": userid, "channel_code": code_name}
        contacts = getattr(self.insight, "contacts", None)
        if contacts is not None:
            fields = {k: v for k, v in profile.items() if v}
            await asyncio.to_thread(contacts.put, self.tenant, customer, fields)
        if way is not None and way["tags"]:
            await logged(self.mark(userid, external, customer, way))

    async def mark(self, userid: str, external: str, customer: str, way: dict) -> None:
        """The code's tags on the contact in WeCom (ids made in our group) and in the profile."""
        answer = await self.api.call(
            "/cgi-bin/externalcontact/add_corp_tag",
            {"group_name": self.tag_group, "tag": [{"name": n} for n in way["tags"]]},
        )
        ids = {t["name"]: t["id"] for t in (answer.get("tag_group") or {}).get("tag", [])}
        await asyncio.to_thread(self.store.remember_tags, {v: k for k, v in ids.items()})
        body = {"userid": userid, "external_userid": external, "add_tag": list(ids.values())}
        await self.api.call("/cgi-bin/externalcontact/mark_tag", body)
        for name in way["tags"]:
            tag = Tag(name, f"channel_code:{way['config_id']}", f"added via {way['name']}")
            await asyncio.to_thread(self.insight.tags.set_manual, self.tenant, customer, tag, True)

    async def read_tags(self, userid: str, external: str, customer: str | None = None) -> dict:
        """externalcontact/get: the tags staff set in WeCom become the profile's `wecom:` tags
        (our own group's tags are ours already); returns WeCom's answer."""
        if not external:
            return {}
        customer = customer or await asyncio.to_thread(
            self.identity.resolve, self.corp_id, EXTERNAL, external
        )
        answer = await self.api.get("/cgi-bin/externalcontact/get", {"external_userid": external})
        names: dict[str, str] = {}
        for follow in answer.get("follow_user") or []:
            for tag in follow.get("tags") or []:
                if tag.get("type", 1) == 1 and tag.get("group_name") != self.tag_group:
                    names[tag["tag_id"]] = tag["tag_name"]
        await asyncio.to_thread(self.store.remember_tags, names)
        await asyncio.to_thread(self.sync_tags, customer, userid, set(names.values()))
        return answer

    def sync_tags(self, customer: str, userid: str, wanted: set[str]) -> None:
        tags = self.insight.tags
        have = {t["tag"] for t in tags.current(self.tenant, customer)
                if t["set_by"].startswith(WECOM_TAG)}  # fmt: skip
        for name in sorted(wanted - have):
            tags.set_manual(self.tenant, customer, Tag(name, WECOM_TAG + userid, "set in WeCom"),
                            True)  # fmt: skip
        for name in sorted(have - wanted):
            tags.set_manual(self.tenant, customer, Tag(name, WECOM_TAG + userid,
                                                       "removed in WeCom"), False)  # fmt: skip

    async def tag_deleted(self, tag_id: str) -> None:
        name = await asyncio.to_thread(self.store.tag_name, tag_id)
        if name is None:
            return
        tags = self.insight.tags
        rows = await asyncio.to_thread(
            lambda: tags.db.execute(
                "SELECT customer_id, set_by FROM tags WHERE tenant=? AND tag=?", (self.tenant, name)
            ).fetchall()
        )
        for customer, set_by in rows:
            if set_by.startswith(WECOM_TAG):
                gone = Tag(name, set_by, "tag deleted in WeCom")
                await asyncio.to_thread(tags.set_manual, self.tenant, customer, gone, False)


async def logged(step: Any) -> Any:
    """Await one WeCom step; a refusal is logged (None) instead of failing the event."""
    try:
        return await step
    except DeliveryFailed as error:
        log.warning("WeCom contact event step failed: %s", error)
        return None


def contacts_of(parts: Any, api: Any, path: Path) -> ContactWays | None:
    """Channel codes when the 360 profile (tags, contacts) is there to receive customers."""
    if parts.insight is None:
        return None
    return ContactWays(api, ContactWayStore(path), parts.channels.identity, parts.insight,
                       parts.access.default_tenant)  # fmt: skip
