"""WeCom (企业微信) callback: URL verification and encrypted XML messages, as WeCom documents them.

Protocol (WeCom "加解密方案说明", the same as Tencent's WXBizMsgCrypt samples):
- msg_signature = SHA1 of the sorted concatenation of token, timestamp, nonce and the
  encrypted payload (`echostr` on the GET verification, `<Encrypt>` on POSTs);
- AES-256-CBC, key = base64decode(EncodingAESKey + "="), IV = the key's first 16 bytes,
  PKCS#7 padding to a multiple of 32 bytes;
- plaintext = 16 random bytes + 4-byte network-order length + message + receive id (corp id).
A passive reply is encrypted the same way and wrapped in <xml><Encrypt/><MsgSignature/>
<TimeStamp/><Nonce/></xml>. A bad signature or a foreign receive id is a ChannelAuthError (401).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crm.channels.wecom_media import MEDIA_KINDS
from crm.messages import ChannelAuthError, ChannelResponse, InboundMessage, RawRequest
from crm.messages import Reply as ReplyModel
from privacy.replay import ReplayCache

BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


class WeComCrypto:
    """WXBizMsgCrypt, re-implemented on `cryptography` (no pycryptodome in the stack)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str):
        if len(encoding_aes_key) != 43:
            raise ValueError("WeCom EncodingAESKey must have 43 characters")
        try:
            self.key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            raise ValueError("WeCom EncodingAESKey is not base64") from None
        self.token = token
        self.receive_id = receive_id

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, plaintext: str, random16: bytes | None = None) -> str:
        message = plaintext.encode()
        body = (
            (random16 or secrets.token_bytes(16))
            + struct.pack(">I", len(message))
            + message
            + self.receive_id.encode()
        )
        pad = BLOCK - len(body) % BLOCK
        encryptor = self._cipher().encryptor()
        data = encryptor.update(body + bytes([pad]) * pad) + encryptor.finalize()
        return base64.b64encode(data).decode()

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
            decryptor = self._cipher().decryptor()
            body = decryptor.update(data) + decryptor.finalize()
        except (binascii.Error, ValueError):
            raise ChannelAuthError("WeCom payload does not decrypt") from None
        pad = body[-1] if body else 0
        if not 1 <= pad <= BLOCK or len(body) < 20 + pad:
            raise ChannelAuthError("WeCom payload has bad padding")
        body = body[:-pad]
        (length,) = struct.unpack(">I", body[16:20])
        message, receive_id = body[20 : 20 + length], body[20 + length :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise ChannelAuthError("WeCom payload is for another receive id (corp id)")
        return message.decode()

    def check(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, msg_signature or ""):
            raise ChannelAuthError("WeCom msg_signature does not match")

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The GET verification: check, then answer the decrypted echostr."""
        self.check(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(self, msg_signature: str, timestamp: str, nonce: str, xml: bytes) -> str:
        encrypted = field(parse_xml(xml), "Encrypt")
        if not encrypted:
            raise ValueError("WeCom body has no <Encrypt> element")
        self.check(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def encrypt_message(self, plaintext: str, nonce: str, timestamp: str | None = None) -> str:
        timestamp = timestamp or str(int(time.time()))
        encrypted = self.encrypt(plaintext)
        sig = signature(self.token, timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt>{cdata(encrypted)}</Encrypt><MsgSignature>{cdata(sig)}</MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>"
        )


def parse_xml(xml: bytes | str) -> ET.Element:
    raw = xml if isinstance(xml, bytes) else xml.encode()
    if b"<!DOCTYPE" in raw.upper():
        raise ValueError("WeCom body: DTDs are not accepted")  # no entity expansion attacks
    try:
        return ET.fromstring(xml)
    except ET.ParseError as error:
        raise ValueError(f"WeCom body: not valid XML ({error})") from None


def field(root: ET.Element, name: str) -> str | None:
    node = root.find(name)
    return node.text if node is not None and node.text is not None else None


def message_text(plain: ET.Element, kind: str) -> str:
    """The words of a callback message; media kinds get a placeholder until fetched."""
    if kind == "text":
        return (field(plain, "Content") or "").strip()
    if kind == "voice" and field(plain, "Recognition"):
        return (field(plain, "Recognition") or "").strip()
    if kind == "location":
        where = field(plain, "Label") or ""
        return f"[位置] {where} ({field(plain, 'Location_X')}, {field(plain, 'Location_Y')})"
    if kind == "link":
        return f"[链接] {field(plain, 'Title') or ''} {field(plain, 'Url') or ''}".strip()
    if kind in MEDIA_KINDS:
        return f"[{kind}]"
    if kind == "event" and (field(plain, "Event") or "").lower() == "click":
        return (field(plain, "EventKey") or "").strip()  # a menu item: its key as words
    raise ValueError(f"WeCom MsgType {kind or '?'} is not handled")


def text_reply_xml(to_user: str, from_corp: str, content: str, created: int) -> str:
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_corp)}"
        f"</FromUserName><CreateTime>{created}</CreateTime><MsgType>{cdata('text')}</MsgType>"
        f"<Content>{cdata(content)}</Content></xml>"
    )


class WeComAdapter:
    """The callback URL of a WeCom self-built app (or customer-contact callback)."""

    name = "wecom"

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str, max_skew_s: float = 300.0):
        self.crypto = WeComCrypto(token, encoding_aes_key, corp_id)
        self.corp_id = corp_id
        self.tenant = corp_id  # messages carry the corp id as their tenant
        self.max_skew_s = max_skew_s
        self.replays = ReplayCache(2 * max_skew_s)

    def check_time(self, timestamp: str) -> None:
        """Seconds, at most 10 digits, within `max_skew_s` of now (401 otherwise)."""
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 10:
            raise ChannelAuthError("WeCom timestamp is not seconds (at most 10 digits)")
        skew = abs(time.time() - int(timestamp))
        if skew > self.max_skew_s:
            raise ChannelAuthError(
                f"WeCom timestamp is {skew:.0f} s away from now (at most {self.max_skew_s:.0f})"
            )

    @staticmethod
    def _query(request: RawRequest, *names: str) -> list[str]:
        missing = [name for name in names if not request.query.get(name)]
        if missing:
            raise ChannelAuthError(f"WeCom query lacks {', '.join(missing)}")
        return [request.query[name] for name in names]

    def verify(self, request: RawRequest) -> str:
        sig, ts, nonce, echostr = self._query(
            request, "msg_signature", "timestamp", "nonce", "echostr"
        )
        self.check_time(ts)
        return self.crypto.verify_url(sig, ts, nonce, echostr.replace(" ", "+"))

    def open(self, request: RawRequest) -> tuple[ET.Element, str]:
        """Check time, signature, corp id and replay; the decrypted message and the nonce."""
        sig, ts, nonce = self._query(request, "msg_signature", "timestamp", "nonce")
        self.check_time(ts)
        outer = parse_xml(request.body)
        if field(outer, "ToUserName") not in (None, self.corp_id):
            raise ChannelAuthError("WeCom ToUserName is not this corp id")
        plain = parse_xml(self.crypto.decrypt_message(sig, ts, nonce, request.body))
        if field(plain, "ToUserName") not in (None, self.corp_id):
            raise ChannelAuthError("WeCom ToUserName is not this corp id")
        if not self.replays.admit(f"{sig}:{nonce}", request.body):
            raise ChannelAuthError("WeCom msg_signature already used with another body")
        return plain, nonce

    def accept(self, request: RawRequest) -> InboundMessage:
        return self.message_of(*self.open(request))

    def message_of(self, plain: ET.Element, nonce: str) -> InboundMessage:
        """A customer message (text, voice with recognition, location, link, or a media kind
        whose `media_id` is in the context for the route to fetch); ValueError (422) else."""
        kind = field(plain, "MsgType") or ""
        sender = field(plain, "FromUserName")
        if not sender:
            raise ValueError("WeCom message has no FromUserName")
        created = field(plain, "CreateTime") or "0"
        context = {"agent_id": field(plain, "AgentID") or "", "nonce": nonce, "msgtype": kind}
        text = message_text(plain, kind)
        if kind in MEDIA_KINDS and not (kind == "voice" and field(plain, "Recognition")):
            media_id = field(plain, "MediaId")
            if not media_id:
                raise ValueError(f"WeCom {kind} message has no MediaId")
            context["media_id"] = media_id
        elif not text:
            raise ValueError("WeCom message has empty Content")
        # Events carry no MsgId; WeCom's docs dedupe those on FromUserName + CreateTime.
        message_id = field(plain, "MsgId") or f"{sender}-{created}"
        return InboundMessage(
            tenant=self.corp_id,
            channel=self.name,
            sender_id=sender,
            text=text,
            message_id=message_id,
            context=context,
        )

    def respond(self, message: InboundMessage, reply: ReplyModel | None) -> ChannelResponse:
        """Passive encrypted reply; WeCom expects an empty 200 when there is nothing to say."""
        if reply is None or not reply.text:
            return ChannelResponse("", media_type="text/plain")
        plain = text_reply_xml(message.sender_id, self.corp_id, reply.text, int(time.time()))
        nonce = message.context.get("nonce") or secrets.token_hex(8)
        return ChannelResponse(
            self.crypto.encrypt_message(plain, nonce), media_type="application/xml"
        )

    @classmethod
    def from_env(
        cls, token_env: str, aes_key_env: str, corp_id_env: str, max_skew_s: float = 300.0
    ) -> WeComAdapter | None:
        values = [os.environ.get(name) for name in (token_env, aes_key_env, corp_id_env)]
        return cls(*values, max_skew_s) if all(values) else None  # type: ignore[arg-type]


def encrypted_request_xml(crypto: WeComCrypto, plain_xml: str, agent_id: str = "1") -> tuple:
    """What WeCom POSTs (body + query), for tests and local tools that play WeCom's part."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
    encrypted = crypto.encrypt(plain_xml)
    body = (
        f"<xml><ToUserName>{cdata(crypto.receive_id)}</ToUserName>"
        f"<Encrypt>{cdata(encrypted)}</Encrypt><AgentID>{cdata(escape(agent_id))}</AgentID></xml>"
    )
    query = {
        "msg_signature": signature(crypto.token, timestamp, nonce, encrypted),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return body.encode(), query
