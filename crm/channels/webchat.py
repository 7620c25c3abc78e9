"""Web chat: the bank's own site, over plain HTTP or a WebSocket, with session resume.

A browser tab keeps a `session_id`; when the socket drops (mobile networks, a reload) the client
reconnects with the same id and the server replays the recent transcript, so the customer sees
the conversation where it stopped. The transcript is the channel's record of what was shown;
the dialogue state itself is keyed by customer id and lives with the dialogue manager.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from pydantic import ConfigDict, Field

from crm.channels.local_db import open_table_db
from crm.messages import ChannelResponse, InboundMessage, RawRequest, Reply
from privacy.atrest import FieldCipher, open_opt, seal_opt
from privacy.crypto import DecryptError, KeyErased
from privacy.rotation import EncryptedColumn
from serving.schemas import IntentResponse, TextRequest


class WebChatPayload(TextRequest):
    model_config = ConfigDict(extra="forbid")
    # Ignored in favour of the session token's (the gateway's routes): a body or frame naming
    # another session or customer than its token's is refused (403), never obeyed.
    session_id: str | None = Field(
        None, min_length=1, max_length=128, description="Browser chat session (the token's)."
    )
    message_id: str | None = Field(None, max_length=128)
    customer_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[\w-]+$", description="CRM id if known."
    )


class SessionPayload(WebChatPayload):
    """Without a session token (the adapter alone, in channel-mechanics tests): the body's."""

    session_id: str = Field(min_length=1, max_length=128)


class WebChatAdapter:
    name = "web_chat"

    def __init__(self, tenant: str = "default"):
        self.tenant = tenant

    def parse(self, payload: dict[str, Any], grant: Any = None) -> InboundMessage:
        """The message; with a verified session `grant` (privacy/sessions.py ChatGrant) its
        session, customer and tenant are the grant's, and the stored message id is scoped to
        the session (idempotency per tenant, channel, authenticated sender and message id)."""
        if grant is None:  # the adapter alone (unit tests of the channel mechanics)
            body = SessionPayload.model_validate(payload)
            return InboundMessage(
                tenant=self.tenant, channel=self.name, sender_id=body.session_id,
                customer_id=body.customer_id, text=body.text,
                message_id=body.message_id or uuid4().hex,
            )  # fmt: skip
        body = WebChatPayload.model_validate(payload)
        if body.session_id not in (None, grant.session_id):
            raise SessionMismatch("session_id: this session token is for another session")
        if body.customer_id not in (None, grant.customer_id):
            raise SessionMismatch("customer_id: a session writes as its own customer only")
        client_id = body.message_id or uuid4().hex
        return InboundMessage(
            tenant=grant.tenant, channel=self.name, sender_id=grant.session_id,
            customer_id=grant.customer_id, text=body.text,
            message_id=scoped_message_id(grant.session_id, client_id),
            context={"client_message_id": client_id},
        )  # fmt: skip

    def accept(self, request: RawRequest, grant: Any = None) -> InboundMessage:
        try:
            payload = json.loads(request.body or b"null")
        except json.JSONDecodeError as error:
            raise ValueError(f"body: not valid JSON ({error.msg})") from None
        if not isinstance(payload, dict):
            raise ValueError("body: expected a JSON object with text")
        return self.parse(payload, grant)

    def reply_body(self, message: InboundMessage, reply: Reply | None) -> dict[str, Any]:
        """The web chat answer; `intent` is an object (the model's full answer when the
        handler passes it as `data["intent"]`, as `/v1/intent` returns it)."""
        intent: dict[str, Any] | None = None
        if reply is not None and isinstance(reply.data.get("intent"), dict):
            intent = reply.data["intent"]
        elif reply is not None and reply.intent:
            intent = {"label": reply.intent}
        return {
            "session_id": message.sender_id,
            "message_id": message.context.get("client_message_id", message.message_id),
            "customer_id": message.customer_id,
            "status": "answered" if reply is not None else "accepted",
            "reply": reply.text if reply is not None else None,
            "intent": intent,
            "handoff": reply.handoff if reply is not None else False,
            # what the dialogue did (answer, task, handoff, queued...), for the chat widget
            "dialogue": {k: reply.data[k] for k in DIALOGUE_FIELDS if k in reply.data}
            if reply is not None
            else {},
        }

    def respond(self, message: InboundMessage, reply: Reply | None) -> ChannelResponse:
        body = json.dumps(self.reply_body(message, reply), ensure_ascii=False)
        return ChannelResponse(body, status_code=200 if reply is not None else 202)

    def render(self, message: InboundMessage, intent: IntentResponse) -> dict[str, Any]:
        """The intent-only answer of the first gateway (kept for its /v1/channels route)."""
        return {
            "session_id": message.sender_id,
            "message_id": message.message_id,
            "reply": f"已识别您的需求：{intent.label}",
            "intent": intent.model_dump(),
        }


class SessionMismatch(PermissionError):
    """A body or frame naming another session or customer than its session token (403)."""


def scoped_message_id(session_id: str, client_id: str) -> str:
    """The intake log's id of a web chat message: the client's id within its session, so one
    customer reusing another's message id neither gets their reply nor loses their message."""
    return f"{session_id}/{client_id}"


def session_hash(session_id: str) -> str:
    """A session named in logs without its id (the id is a bearer of the customer's chat)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


def like(text: str) -> str:
    """`text` escaped for a LIKE pattern (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


DIALOGUE_FIELDS = (
    "kind", "state", "flow", "flow_status", "ticket_id", "queue_position", "served_by",
)  # fmt: skip


TEXT = "web_chat_transcript.text"
COLUMNS = [
    EncryptedColumn("web_chat_transcript", "text", TEXT, "{data_key}", encrypt_plaintext=True)
]


log = logging.getLogger(__name__)


class ChatTranscript:
    """What each web chat session has shown, replayed to a client that reconnects.

    At rest (with a `cipher`) each text is an AES-256-GCM token bound to the data key that
    `owner_of(session_id)` names (`tenant/customer`, from the identity map), so erasing the
    customer shreds their transcript too.
    """

    def __init__(
        self,
        path: Path | str,
        cipher: FieldCipher | None = None,
        owner_of: Callable[[str], str | None] | None = None,
        sessions_of: Callable[[str, str, str | None], list[str]] | None = None,
    ):
        self.path = Path(path)
        self.cipher = cipher
        self.owner_of = owner_of
        # (channel, customer, tenant) -> the customer's session ids (the identity map's)
        self.sessions_of = sessions_of
        self.lock = threading.Lock()
        self.db = open_table_db(self.path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS web_chat_transcript ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,"
            " role TEXT NOT NULL, text TEXT NOT NULL, message_id TEXT, at REAL NOT NULL,"
            " data_key TEXT NOT NULL DEFAULT '')"
        )
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(web_chat_transcript)")}
        if "data_key" not in columns:  # a file from before encryption at rest
            self.db.execute(
                "ALTER TABLE web_chat_transcript ADD COLUMN data_key TEXT NOT NULL DEFAULT ''"
            )
        self.db.execute(
            "CREATE INDEX IF NOT EXISTS web_chat_session ON web_chat_transcript(session_id, seq)"
        )

    def add(self, session_id: str, role: str, text: str, message_id: str | None = None) -> None:
        owner = (self.owner_of(session_id) if self.owner_of else None) or ""
        sealed = seal_opt(self.cipher, text, TEXT, owner)
        with self.lock:
            self.db.execute(
                "INSERT INTO web_chat_transcript(session_id, role, text, message_id, at, data_key)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, role, sealed, message_id, time.time(), owner),
            )

    def recent(self, session_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The last lines, oldest first; lines of an erased customer are gone."""
        with self.lock:
            rows = self.db.execute(
                "SELECT role, text, message_id, at, data_key FROM web_chat_transcript"
                " WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        lines, unreadable = [], 0
        for role, text, mid, at, owner in reversed(rows):
            try:
                plain = open_opt(self.cipher, text, TEXT, owner)
            except KeyErased:  # the customer was erased: their lines are gone by design
                continue
            except DecryptError:  # the key exists: a line lost to the client, never silently
                unreadable += 1
                continue
            lines.append({"role": role, "text": plain, "message_id": mid, "at": at})
        if unreadable:
            log.warning(
                "web chat session #%s: %d transcript line(s) skipped: they do not decrypt"
                " although the customer's data key exists",
                session_hash(session_id), unreadable,
            )  # fmt: skip
        return lines

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        """Delete the transcript lines bound to a customer (in one tenant or all), and every
        line of their sessions, those written before they logged in included."""
        sessions = self.sessions_of("web_chat", customer_id, tenant) if self.sessions_of else []
        with self.lock:
            if tenant:
                query, params = "data_key = ?", (f"{tenant}/{customer_id}",)
            else:
                query, params = "data_key LIKE ? ESCAPE '\\'", (f"%/{like(customer_id)}",)
            deleted = self.db.execute(
                f"DELETE FROM web_chat_transcript WHERE {query}", params
            ).rowcount
            for session in sessions:
                deleted += self.db.execute(
                    "DELETE FROM web_chat_transcript WHERE session_id = ?", (session,)
                ).rowcount
            return deleted

    def close(self) -> None:
        self.db.close()
