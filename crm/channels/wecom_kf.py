"""WeChat Customer Service (微信客服, "kf"): external WeChat users talking to a kf account.

WeCom does not post kf messages to the callback: it posts a `kf_msg_or_event` event (signed and
encrypted like every WeCom callback) carrying a short-lived `Token` and the `OpenKfId`, and the
messages are then pulled with `kf/sync_msg` ({cursor, token, limit, open_kfid} -> {next_cursor,
has_more, msg_list}). `origin` 3 is the customer, 4 a system event, 5 a servicer (staff).

- No loss, no duplicates across restarts: each message is appended to the intake log
  (idempotent on its `msgid`) *before* the page's `next_cursor` is stored; a crash in between
  pulls the page again and the intake log answers the repeats as duplicates (nothing re-sent).
- Replies go out with `kf/send_msg` ({touser, open_kfid, msgtype: text, text}); WeCom accepts
  them only while the session is in state 0 (new) or 1 (bot), so the sender refuses other
  states instead of spending the customer's five-replies-per-message quota on errors.
- `enter_session` (the user opened the kf chat) is welcomed with `kf/send_msg_on_event` and the
  event's `welcome_code` (valid 20 s, once).
- Session state (`kf/service_state/trans`) follows our handoff: a queued handoff -> 2 (pool),
  an agent accepting the ticket -> 3 with `servicer_userid` = the desk agent id (a WeCom
  userid that answers in the WeCom client), the ticket closed or handed back -> 4 (ended; the
  customer's next message opens a new session at 0). `session_status_change` events (a
  servicer acting in WeCom) update the state we keep.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from crm.channels.local_db import open_table_db
from crm.channels.senders import DeliveryFailed, WeComAppSender
from crm.channels.wecom_media import MEDIA_KINDS, MediaStore, media_reply
from crm.messages import ChannelResponse, InboundMessage, MessageHandler, RawRequest, Reply

log = logging.getLogger(__name__)
CHANNEL = "wecom_kf"
NEW, BOT, POOL, HUMAN, ENDED = range(5)  # kf service_state values
# Transitions WeCom allows (kf/service_state/trans); 4 is final until the customer writes.
ALLOWED = {NEW: {BOT, POOL, HUMAN, ENDED}, BOT: {BOT, POOL, HUMAN, ENDED},
           POOL: {POOL, HUMAN, ENDED}, HUMAN: {HUMAN, ENDED}, ENDED: set()}  # fmt: skip
CUSTOMER, SYSTEM, SERVICER = 3, 4, 5  # msg_list[].origin


class KfStore:
    """The pull cursor per kf account and the session state per (account, customer)."""

    def __init__(self, path: Path):
        self.lock = threading.Lock()
        self.db = open_table_db(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS kf_cursors (open_kfid TEXT PRIMARY KEY, cursor TEXT NOT"
            " NULL, at REAL NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS kf_sessions (open_kfid TEXT NOT NULL, external_userid"
            " TEXT NOT NULL, state INTEGER NOT NULL, servicer TEXT, at REAL NOT NULL,"
            " PRIMARY KEY (open_kfid, external_userid))"
        )

    def cursor(self, open_kfid: str) -> str:
        with self.lock:
            row = self.db.execute(
                "SELECT cursor FROM kf_cursors WHERE open_kfid=?", (open_kfid,)
            ).fetchone()
        return row[0] if row else ""

    def save_cursor(self, open_kfid: str, cursor: str) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO kf_cursors VALUES (?, ?, ?)",
                (open_kfid, cursor, time.time()),
            )

    def state(self, open_kfid: str, user: str) -> int:
        with self.lock:
            row = self.db.execute(
                "SELECT state FROM kf_sessions WHERE open_kfid=? AND external_userid=?",
                (open_kfid, user),
            ).fetchone()
        return int(row[0]) if row else NEW

    def set_state(self, open_kfid: str, user: str, state: int, servicer: str = "") -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO kf_sessions VALUES (?, ?, ?, ?, ?)",
                (open_kfid, user, state, servicer, time.time()),
            )

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        """The customer's kf session states (their kf sender ids, read from the identity map
        in the same file: erase before `identities`)."""
        where = "channel = 'wecom_kf' AND customer_id = ?" + (" AND tenant = ?" if tenant else "")
        params = (customer_id, tenant) if tenant else (customer_id,)
        with self.lock:
            return self.db.execute(
                "DELETE FROM kf_sessions WHERE external_userid IN (SELECT sender_id FROM"
                f" identities WHERE {where})",
                params,
            ).rowcount

    def close(self) -> None:
        self.db.close()


class KfAdapter:
    """The router's entry for `wecom_kf` (identity binding, errors): kf messages never come as
    HTTP requests of their own, only pulled after a `kf_msg_or_event` callback."""

    name = CHANNEL

    def __init__(self, corp_id: str):
        self.tenant = corp_id

    def accept(self, request: RawRequest) -> InboundMessage:
        raise ValueError(
            "WeCom kf messages arrive as kf_msg_or_event on /v1/channels/wecom/messages"
        )

    def respond(self, message: InboundMessage, reply: Reply | None) -> ChannelResponse:
        return ChannelResponse("", media_type="text/plain")


def text_of(item: dict) -> str:
    """What the dialogue reads of a kf message: text, a location or a link in words; media
    kinds get a placeholder (their bytes are fetched and stored separately)."""
    kind = item.get("msgtype", "")
    body = item.get(kind) or {}
    if kind == "text":
        return str(body.get("content", "")).strip()
    if kind == "location":
        where = " ".join(str(body.get(k, "")) for k in ("name", "address")).strip()
        return f"[位置] {where} ({body.get('latitude')}, {body.get('longitude')})"
    if kind == "link":
        return f"[链接] {body.get('title', '')} {body.get('url', '')}".strip()
    return f"[{kind}]"


class KfService:
    """Pulls, answers and keeps the session state of WeChat Customer Service chats."""

    def __init__(
        self,
        api: WeComAppSender,
        channels: Any,  # crm.channels.service.ChannelService
        store: KfStore,
        media: MediaStore | None,
        welcome: str,
        page: int = 1000,
    ):
        self.api, self.channels, self.store, self.media = api, channels, store, media
        self.corp_id, self.welcome, self.page = api.corp_id, welcome, page
        self.locks: dict[str, asyncio.Lock] = {}
        self.tasks: set[asyncio.Task] = set()

    def on_event(self, token: str, open_kfid: str, handler: MessageHandler) -> None:
        """The callback's part: start a pull and answer WeCom at once (it retries after 5 s)."""
        task = asyncio.get_running_loop().create_task(self.pull(open_kfid, token, handler))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def pull(self, open_kfid: str, token: str, handler: MessageHandler) -> int:
        """kf/sync_msg from the stored cursor until has_more is 0; returns messages seen.
        One pull per account at a time: a second callback waits and finds the cursor moved."""
        lock = self.locks.setdefault(open_kfid, asyncio.Lock())
        seen = 0
        async with lock:
            try:
                while True:
                    cursor = await asyncio.to_thread(self.store.cursor, open_kfid)
                    body = {"cursor": cursor, "token": token, "limit": self.page,
                            "open_kfid": open_kfid}  # fmt: skip
                    answer = await self.api.call("/cgi-bin/kf/sync_msg", body)
                    for item in answer.get("msg_list") or []:
                        try:
                            await self.handle(item, handler)
                        except DeliveryFailed as error:  # WeCom refused a send: logged, the
                            # message and our reply stay in the intake log; the pull goes on
                            log.warning("kf message %s: %s", item.get("msgid"), error)
                        seen += 1
                    if answer.get("next_cursor"):
                        await asyncio.to_thread(
                            self.store.save_cursor, open_kfid, answer["next_cursor"]
                        )
                    if not answer.get("has_more"):
                        return seen
            except Exception:  # the next callback pulls again from the stored cursor
                log.exception("kf/sync_msg pull of %s stopped", open_kfid)
                return seen

    async def handle(self, item: dict, handler: MessageHandler) -> None:
        origin = item.get("origin")
        if origin == CUSTOMER:
            await self.customer_message(item, handler)
        elif origin == SYSTEM and item.get("msgtype") == "event":
            await self.system_event(item.get("event") or {})
        # origin 5: a servicer wrote in the WeCom client; it is in WeCom's own record.

    async def customer_message(self, item: dict, handler: MessageHandler) -> None:
        open_kfid, user = item.get("open_kfid", ""), item.get("external_userid", "")
        if not (open_kfid and user and item.get("msgid")):
            log.warning("kf message without open_kfid/external_userid/msgid skipped")
            return
        kind = item.get("msgtype", "")
        message = InboundMessage(
            tenant=self.corp_id, channel=CHANNEL, sender_id=user, text=text_of(item),
            message_id=item["msgid"], context={"open_kfid": open_kfid, "msgtype": kind},
        )  # fmt: skip
        if kind in MEDIA_KINDS:
            if self.media is None:
                raise DeliveryFailed("kf media arrived but no media store is configured")
            media_id = (item.get(kind) or {}).get("media_id", "")
            try:
                message = await self.media.keep(message, media_id)
            except DeliveryFailed as error:  # logged without its file rather than lost
                log.warning("kf media %s not fetched: %s", item["msgid"], error)
            handler = media_reply(handler)
        state = await asyncio.to_thread(self.store.state, open_kfid, user)
        if state == ENDED:  # the customer writes again: WeCom opened a new session
            await asyncio.to_thread(self.store.set_state, open_kfid, user, NEW)
        outcome = await self.channels.submit(message, handler)
        if outcome.duplicate or outcome.reply is None:
            return
        await self.answered(open_kfid, user, outcome.reply)

    async def answered(self, open_kfid: str, user: str, reply: Reply) -> None:
        """Send the bot's reply while WeCom lets us, then move the session if it handed off."""
        if reply.text:
            await self.send(user, reply.text, {"open_kfid": open_kfid})
        state = await asyncio.to_thread(self.store.state, open_kfid, user)
        if reply.handoff and state in (NEW, BOT):
            await self.transfer(open_kfid, user, POOL)
        elif reply.text and state == NEW:
            await self.transfer(open_kfid, user, BOT)

    async def send(self, user: str, text: str, route: dict) -> None:
        """kf/send_msg, only in states 0/1 (WeCom refuses others); DeliveryFailed otherwise."""
        open_kfid = route.get("open_kfid", "")
        if not open_kfid:
            raise DeliveryFailed(f"no kf account (open_kfid) known for {user}")
        state = await asyncio.to_thread(self.store.state, open_kfid, user)
        if state not in (NEW, BOT):
            raise DeliveryFailed(
                f"kf session of {user} is in state {state}: WeCom lets only its servicer write"
            )
        body = {"touser": user, "open_kfid": open_kfid, "msgtype": "text",
                "text": {"content": text}}  # fmt: skip
        await self.api.call("/cgi-bin/kf/send_msg", body)

    async def transfer(self, open_kfid: str, user: str, state: int, servicer: str = "") -> bool:
        """kf/service_state/trans when WeCom allows the move from the state we know."""
        current = await asyncio.to_thread(self.store.state, open_kfid, user)
        if state not in ALLOWED[current]:
            log.info("kf state %s -> %s not allowed by WeCom; left as is", current, state)
            return False
        body: dict[str, Any] = {"open_kfid": open_kfid, "external_userid": user,
                                "service_state": state}  # fmt: skip
        if state == HUMAN:
            body["servicer_userid"] = servicer
        await self.api.call("/cgi-bin/kf/service_state/trans", body)
        await asyncio.to_thread(self.store.set_state, open_kfid, user, state, servicer)
        return True

    async def system_event(self, event: dict) -> None:
        kind = event.get("event_type")
        open_kfid, user = event.get("open_kfid", ""), event.get("external_userid", "")
        if kind == "enter_session" and event.get("welcome_code") and self.welcome:
            body = {"code": event["welcome_code"], "msgtype": "text",
                    "text": {"content": self.welcome}}  # fmt: skip
            await self.api.call("/cgi-bin/kf/send_msg_on_event", body)
        elif kind == "session_status_change" and open_kfid and user:
            # change_type 1 taken from the pool, 2 transferred, 3 ended, 4 re-opened
            change = {1: HUMAN, 2: HUMAN, 3: ENDED, 4: HUMAN}.get(event.get("change_type"))
            if change is not None:
                servicer = event.get("new_servicer_userid", "")
                await asyncio.to_thread(self.store.set_state, open_kfid, user, change, servicer)

    async def on_ticket(self, ticket: dict) -> None:
        """Our desk moved a ticket: move the customer's kf sessions the same way."""
        customer, state = ticket.get("customer_id"), ticket.get("state")
        target = {"open": HUMAN, "resolved": ENDED, "bot": ENDED}.get(state or "")
        if not customer or target is None:
            return
        senders = await asyncio.to_thread(
            self.channels.identity.senders, CHANNEL, customer, self.corp_id
        )
        for user in senders:
            route = await asyncio.to_thread(self.channels.identity.route, CHANNEL, user)
            if route.get("open_kfid"):
                servicer = ticket.get("agent_id") or ""
                await self.transfer(route["open_kfid"], user, target, servicer)

    async def sender(self, user: str, text: str, role: str, route: dict) -> None:
        """The channel service's active sender for `wecom_kf` (agent replies, notices)."""
        await self.send(user, text, route)


class KfDesk:
    """The desk, with each ticket move mirrored to WeCom's kf session state."""

    def __init__(self, inner: Any, kf: KfService):
        self.inner, self.kf = inner, kf

    async def call(self, op: str, **args: Any) -> Any:
        result = await self.inner.call(op, **args)
        if op in ("accept", "close", "transfer") and isinstance(result, dict):
            try:
                await self.kf.on_ticket(result)
            except Exception as error:  # the desk's answer stands; WeCom's state lags
                log.warning("kf state for ticket %s not moved: %s", result.get("id"), error)
        return result
