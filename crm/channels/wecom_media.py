"""Media from WeCom customers (image, voice, file, video): fetched, stored sealed, referenced.

A media message carries only a `media_id` valid for three days; the bytes come from
`/cgi-bin/media/get`. They are sealed at once with the customer's data key (AES-256-GCM,
privacy/atrest.py), so erasing the customer (crypto-shredding their key) makes them
unreadable, and the message that goes through the intake log and the dialogue reads
`[图片] media:<ref>`: the transcript points at the stored file and never holds its bytes.
The bot cannot look at a picture: unless a human owns the conversation, the customer hears
that it arrived and how to reach a person (`media_reply`), not a guess.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path
from typing import Any

from crm.channels.local_db import open_table_db
from crm.messages import InboundMessage, MessageHandler, Reply
from privacy.atrest import FieldCipher, data_key
from privacy.ids import opaque_id
from privacy.rotation import EncryptedColumn

LABELS = {"image": "图片", "voice": "语音", "file": "文件", "video": "视频"}
MEDIA_KINDS = frozenset(LABELS)
# For key rotation and erasure (crm/stores.py): each body sealed with its customer's key.
COLUMNS = [EncryptedColumn("wecom_media", "body", "wecom.media.{kind}", "{tenant}/{customer_id}")]
ACK = (
    "已收到您的{label}，机器人暂时无法查看{label}内容。"
    "请用文字描述您的问题，或回复“转人工”由客服为您查看。"
)


class MediaStore:
    """Sealed media blobs in the channels' sqlite file, one row per (channel, message id)."""

    def __init__(self, path: Path, cipher: FieldCipher | None, api: Any, identity: Any):
        self.cipher, self.api, self.identity = cipher, api, identity
        self.lock = threading.Lock()
        self.db = open_table_db(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS wecom_media (ref TEXT PRIMARY KEY, channel TEXT NOT NULL,"
            " message_id TEXT NOT NULL, tenant TEXT NOT NULL, customer_id TEXT NOT NULL,"
            " kind TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,"
            " body TEXT NOT NULL, at REAL NOT NULL, UNIQUE (channel, message_id))"
        )

    def _known(self, channel: str, message_id: str) -> str | None:
        with self.lock:
            row = self.db.execute(
                "SELECT ref FROM wecom_media WHERE channel=? AND message_id=?",
                (channel, message_id),
            ).fetchone()
        return row[0] if row else None

    def _save(self, message: InboundMessage, customer: str, kind: str, blob: bytes,
              content_type: str) -> str:  # fmt: skip
        ref = f"m{opaque_id()}"
        key = data_key(message.tenant, customer)
        sealed = self.cipher.seal(base64.b64encode(blob).decode(), f"wecom.media.{kind}", key)
        with self.lock:
            self.db.execute(
                "INSERT OR IGNORE INTO wecom_media VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ref, message.channel, message.message_id, message.tenant, customer, kind,
                 content_type, len(blob), sealed, time.time()),
            )  # fmt: skip
        return self._known(message.channel, message.message_id) or ref

    async def keep(self, message: InboundMessage, media_id: str) -> InboundMessage:
        """The message with its media stored sealed and its text pointing at it; a pull or
        callback repeated for the same message finds the stored copy (no second download)."""
        kind = message.context.get("msgtype", "file")
        ref = await asyncio.to_thread(self._known, message.channel, message.message_id)
        if ref is None:
            customer = await asyncio.to_thread(
                self.identity.resolve, message.tenant, message.channel, message.sender_id,
                message.customer_id,
            )  # fmt: skip
            blob, content_type = await self.api.download(media_id)
            ref = await asyncio.to_thread(self._save, message, customer, kind, blob, content_type)
        context = {k: v for k, v in message.context.items() if k != "media_id"}
        text = f"[{LABELS.get(kind, kind)}] media:{ref}"
        return message.model_copy(update={"text": text, "context": {**context, "media": ref}})

    def read(self, ref: str) -> tuple[str, bytes] | None:
        """(content type, bytes) of a stored media file; None when unknown or erased."""
        with self.lock:
            row = self.db.execute(
                "SELECT tenant, customer_id, kind, content_type, body FROM wecom_media WHERE ref=?",
                (ref,),
            ).fetchone()
        if row is None:
            return None
        tenant, customer, kind, content_type, body = row
        plain = self.cipher.open_or_none(body, f"wecom.media.{kind}", data_key(tenant, customer))
        return None if plain is None else (content_type, base64.b64decode(plain))

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        where = "customer_id = ?" + (" AND tenant = ?" if tenant else "")
        params = (customer_id, tenant) if tenant else (customer_id,)
        with self.lock:
            return self.db.execute(f"DELETE FROM wecom_media WHERE {where}", params).rowcount

    def close(self) -> None:
        self.db.close()


def media_reply(handler: MessageHandler) -> MessageHandler:
    """The dialogue sees the media message (an agent who owns the chat reads it in the
    ticket); unless it handed off, the customer hears the acknowledgement instead of the
    bot's guess at `[图片] media:...`."""

    async def answer(message: InboundMessage) -> Reply:
        reply = await handler(message)
        if reply.handoff:
            return reply
        label = LABELS.get(message.context.get("msgtype", ""), "文件")
        return Reply(text=ACK.format(label=label), intent="media", data={"media": True})

    return answer
