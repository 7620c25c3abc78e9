"""A local HTTPS stand-in for WeCom's /cgi-bin API as issue 28 uses it, and a live gateway
(the real parts and routes, uvicorn in a thread, in-process dialogue fakes) configured for it.

The sink answers as WeCom documents: `gettoken` (errcode 40001 on a wrong secret), 40014 on a
wrong access_token, `kf/sync_msg` pages over `kf_messages` by cursor (next_cursor, has_more),
`media/get` bytes, `externalcontact/add_contact_way` a config id and QR code, `get` a contact
with its follow_user tags; every call is recorded for the tests to wait on.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

from tests.channel_setup import WECOM_CORP_ID, WECOM_SECRET, tls_files

ACCESS_TOKEN = "tok-issue-twenty-eight"
MEDIA = b"\x89PNG\r\n\x1a\n synthetic test image bytes"


class WeComSink:
    def __init__(self, folder: Path, page: int = 2):
        self.calls: list[dict[str, Any]] = []
        self.kf_messages: list[dict] = []  # what kf/sync_msg serves, in order
        self.contacts: dict[str, dict] = {}  # external_userid -> externalcontact/get answer
        self.mass_results: dict[str, list[dict]] = {}  # msgid -> get_groupmsg_send_result
        self.page, self.expire_next = page, False
        self.changed = threading.Condition()
        cert, key = tls_files(folder)
        self.cert = cert
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, body: dict | bytes, kind: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = dict(parse_qsl(url.query))
                sink.record(url.path, query, None)
                if url.path == "/cgi-bin/gettoken":
                    good = query == {"corpid": WECOM_CORP_ID, "corpsecret": WECOM_SECRET}
                    self.reply(
                        {"errcode": 0, "access_token": ACCESS_TOKEN, "expires_in": 7200}
                        if good
                        else {"errcode": 40001, "errmsg": "invalid credential"}
                    )
                elif query.get("access_token") != ACCESS_TOKEN:
                    self.reply({"errcode": 40014, "errmsg": "invalid access_token"})
                elif sink.take_expiry():
                    self.reply({"errcode": 42001, "errmsg": "access_token expired"})
                elif url.path == "/cgi-bin/media/get":
                    self.reply(MEDIA, "image/png")
                elif url.path == "/cgi-bin/externalcontact/get":
                    found = sink.contacts.get(query.get("external_userid", ""))
                    self.reply({"errcode": 0, **found} if found else
                               {"errcode": 84061, "errmsg": "not external contact"})  # fmt: skip
                else:
                    self.reply({"errcode": 404, "errmsg": "unknown path"})

            def do_POST(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                query = dict(parse_qsl(url.query))
                sink.record(url.path, query, body)
                if query.get("access_token") != ACCESS_TOKEN or sink.take_expiry():
                    self.reply({"errcode": 42001, "errmsg": "access_token expired"})
                else:
                    self.reply(sink.answer(url.path, body))

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def take_expiry(self) -> bool:
        with self.changed:
            expired, self.expire_next = self.expire_next, False
        return expired

    def answer(self, path: str, body: dict) -> dict:
        if path == "/cgi-bin/kf/sync_msg":
            start = int(body.get("cursor") or 0)
            with self.changed:
                items = self.kf_messages[start : start + self.page]
                more = start + self.page < len(self.kf_messages)
            return {"errcode": 0, "errmsg": "ok", "next_cursor": str(start + len(items)),
                    "has_more": int(more), "msg_list": items}  # fmt: skip
        if path == "/cgi-bin/externalcontact/add_contact_way":
            config = f"cfg{len(self.calls)}"
            return {"errcode": 0, "config_id": config,
                    "qr_code": f"https://wework.example/qr/{config}.png"}  # fmt: skip
        if path == "/cgi-bin/externalcontact/send_welcome_msg" and body["welcome_code"] == "USED":
            return {"errcode": 41051, "errmsg": "externaluser has started chatting"}
        if path == "/cgi-bin/externalcontact/add_msg_template":
            return {"errcode": 0, "fail_list": [], "msgid": f"msgGRP{len(self.calls)}"}
        if path == "/cgi-bin/externalcontact/get_groupmsg_send_result":
            sent = self.mass_results.get(body["msgid"], [])
            return {"errcode": 0, "next_cursor": "", "send_list": sent}
        if path == "/cgi-bin/externalcontact/add_corp_tag":
            tags = [{"id": f"et{abs(hash(t['name'])) % 10**6}", "name": t["name"]}
                    for t in body["tag"]]  # fmt: skip
            return {"errcode": 0, "tag_group": {"group_id": "grp1", "tag": tags}}
        return {"errcode": 0, "errmsg": "ok", "msgid": f"out{len(self.calls)}"}

    def record(self, path: str, query: dict, body: Any) -> None:
        with self.changed:
            self.calls.append({"path": path, "query": query, "body": body})
            self.changed.notify_all()

    def to(self, path: str) -> list[dict]:
        with self.changed:
            return [c for c in self.calls if c["path"] == path]

    def wait(self, matches: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [call for call in self.calls if matches(call)]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"WeCom never received it; calls: {self.calls[-8:]}")
                self.changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wecom_env(sink: WeComSink) -> dict[str, str]:
    """The gateway's WeCom secrets (tests/channel_setup.py's) and trust in the sink's cert."""
    from tests.channel_setup import WECOM_AES_KEY, WECOM_AGENT_ID, WECOM_TOKEN

    return {"SCRM_WECOM_TOKEN": WECOM_TOKEN, "SCRM_WECOM_AES_KEY": WECOM_AES_KEY,
            "SCRM_WECOM_CORP_ID": WECOM_CORP_ID, "SCRM_WECOM_SECRET": WECOM_SECRET,
            "SCRM_WECOM_AGENT_ID": WECOM_AGENT_ID, "SSL_CERT_FILE": str(sink.cert)}  # fmt: skip


def set_env(values: dict[str, str]) -> dict[str, str | None]:
    """Set environment variables; returns the previous values for `restore_env`."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    return before


def restore_env(before: dict[str, str | None]) -> None:
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
