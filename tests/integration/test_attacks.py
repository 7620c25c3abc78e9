"""The probe of issue 17: each attack found against the running application, replayed against
the session's server, and asserted to fail. One test per attack (or per family), named after
what the attacker tried."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.sync.client import connect

from crm.channels.dingtalk import sign
from crm.channels.wecom import cdata, signature
from privacy.masking import normalise
from tests.channel_setup import DINGTALK_SECRET, WECOM_CORP_ID, WECOM_TOKEN
from tests.conftest import TEST_JWT_SECRET, issue_key
from tests.integration.test_conversation_channels import CRYPTO, ding_body, wecom_post
from tests.support import open_web_chat

RUN = uuid.uuid4().hex[:6]
PHONE = "13812345678"
MESSAGES = "/v1/channels/web_chat/messages"


def customer_key(root: Path, name: str, **limits) -> dict[str, str]:
    attributes = {"rate_per_s": 1000.0, "burst": 1000, **limits}
    return {"X-API-Key": issue_key(root, f"{name}-{RUN}", "default", "customer", clearance=2,
                                   **attributes)}  # fmt: skip


@pytest.fixture(scope="module")
def victims(client: httpx.Client, pipeline_workspace: Path) -> dict:
    """Customer A (the victim, with a phone number in their chat) and B (the attacker)."""
    a, b = customer_key(pipeline_workspace, "att-a"), customer_key(pipeline_workspace, "att-b")
    chat_a, chat_b = open_web_chat(client, a), open_web_chat(client, b)
    said = client.post(MESSAGES, headers=chat_a["headers"],
                       json={"text": f"我的手机号是{PHONE}", "message_id": "m-1"})  # fmt: skip
    assert said.status_code == 200, said.text
    return {"a": a, "b": b, "chat_a": chat_a, "chat_b": chat_b, "reply_a": said.json()}


def ws_url(client: httpx.Client, key: dict[str, str], token: str | None, **extra: str) -> str:
    base = str(client.base_url).replace("http://", "ws://") + "/v1/channels/web_chat/ws"
    query = {"api_key": key["X-API-Key"], **({"session_token": token} if token else {}), **extra}
    return base + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def receive(socket, timeout: float = 20.0) -> dict:
    while True:
        frame = json.loads(socket.recv(timeout=timeout))
        if frame.get("type") != "ping":
            return frame


# --- object-level authorization: sessions ---------------------------------------------------
def test_a_customer_cannot_join_another_customers_socket_session(client, victims) -> None:
    """Was: `?session_id=<victim's>` replayed the victim's transcript unmasked."""
    b, chat_a = victims["b"], victims["chat_a"]
    for url in (ws_url(client, b, None, session_id=chat_a["session_id"]),
                ws_url(client, b, chat_a["session_token"])):  # fmt: skip
        with connect(url) as socket, pytest.raises(Exception) as closed:
            socket.recv(timeout=10)
        assert "1008" in str(closed.value) or "policy" in str(closed.value).lower()
    history = client.get(f"/v1/channels/web_chat/sessions/{chat_a['session_id']}",
                         headers=victims["chat_b"]["headers"])  # fmt: skip
    assert history.status_code == 404 and PHONE not in history.text


def test_a_socket_frame_cannot_name_another_customer(client, victims) -> None:
    """Was: a frame with `customer_id: <victim>` acted as the victim (403 over HTTP only)."""
    chat_b = victims["chat_b"]
    with connect(ws_url(client, victims["b"], chat_b["session_token"])) as socket:
        assert receive(socket)["type"] == "session"
        target = victims["chat_a"]["customer_id"]
        socket.send(json.dumps({"text": "确认修改手机号", "customer_id": target}))
        refused = receive(socket)
        assert refused["type"] == "error" and refused["status"] == 403
        socket.send(json.dumps({"text": "hi", "session_id": victims["chat_a"]["session_id"]}))
        assert receive(socket)["status"] == 403


def test_client_chosen_session_ids_are_not_sessions(client, victims) -> None:
    """Was: `session_id: "1"` accepted; posting into B's session id was processed as B."""
    plain = client.post(MESSAGES, headers=victims["b"], json={"session_id": "1", "text": "hi"})
    assert plain.status_code == 401
    theirs = {"session_id": victims["chat_a"]["session_id"], "text": "hi"}
    into = client.post(MESSAGES, headers=victims["chat_b"]["headers"], json=theirs)
    assert into.status_code == 403


def test_another_tenants_supervisor_cannot_open_or_rebind_a_session(
    client, victims, pipeline_workspace
) -> None:
    key = {"X-API-Key": issue_key(pipeline_workspace, f"sup-x-{RUN}", "other", "supervisor",
                                  clearance=3)}  # fmt: skip
    assert client.post("/v1/channels/web_chat/sessions", headers=key, json={}).status_code in (
        403, 404)  # fmt: skip
    relink = client.put(f"/v1/channels/web_chat/identities/{victims['chat_a']['session_id']}",
                        headers=key, json={"customer_id": f"att-b-{RUN}"})  # fmt: skip
    assert relink.status_code in (403, 404)


def test_reusing_a_victims_message_id_returns_your_own_reply(client, victims) -> None:
    """Was: B posting with A's message_id got A's reply (A's phone number) and A's ticket."""
    again = client.post(MESSAGES, headers=victims["chat_b"]["headers"],
                        json={"text": "明天上海会下雨吗", "message_id": "m-1"})  # fmt: skip
    assert again.status_code == 200 and not again.json().get("duplicate")
    assert again.json()["customer_id"] == f"att-b-{RUN}"
    assert PHONE[-4:] not in json.dumps(again.json()) and again.json()["reply"]
    assert again.json()["reply"] != victims["reply_a"]["reply"]


def test_an_authenticated_customer_is_recorded_as_themselves(client, victims) -> None:
    """Was: a customer's own key posting to web chat was recorded as `anon-...`."""
    assert victims["chat_a"]["customer_id"] == f"att-a-{RUN}"
    assert victims["reply_a"]["customer_id"] == f"att-a-{RUN}"


def test_socket_replays_are_audited(client, victims, pipeline_workspace) -> None:
    chat_a = victims["chat_a"]
    with connect(ws_url(client, victims["a"], chat_a["session_token"])) as socket:
        assert receive(socket)["type"] == "session"
    with sqlite3.connect(pipeline_workspace / "data/privacy/audit.db") as db:
        rows = db.execute("SELECT action, effect FROM audit WHERE actor = ? AND resource_id = ?",
                          (f"att-a-{RUN}", chat_a["session_id"])).fetchall()  # fmt: skip
    assert ("conversation.read", "permit") in rows


# --- hostile text --------------------------------------------------------------------------
def test_a_lone_surrogate_is_refused_and_the_prediction_log_keeps_writing(
    client, pipeline_workspace
) -> None:
    """Was: 200, then the prediction-log writer thread was dead for good."""
    bad = client.post("/v1/intent", content=b'{"text": "a\\ud800b"}',
                      headers={"content-type": "application/json"})  # fmt: skip
    assert bad.status_code == 422 and "surrogate" in bad.json()["detail"]
    assert bad.json()["request_id"] == bad.headers["x-request-id"]  # shaped like every error
    nul = client.post("/v1/intent", content=b'{"text": "a\\u0000b"}',
                      headers={"content-type": "application/json"})  # fmt: skip
    assert nul.status_code == 422
    invalid = client.post("/v1/intent", content=b'{"text": "\xff\xfe"}',
                          headers={"content-type": "application/json"})  # fmt: skip
    assert invalid.status_code == 400
    rid = f"after-surrogate-{RUN}"
    ok = client.post("/v1/intent", json={"text": "查余额"}, headers={"x-request-id": rid})
    assert ok.status_code == 200
    db = pipeline_workspace / "data/predictions/predictions.db"
    deadline, rows = time.time() + 15, []
    while time.time() < deadline and not rows:
        with sqlite3.connect(db) as connection:
            rows = connection.execute("SELECT 1 FROM predictions WHERE request_id = ?",
                                      (rid,)).fetchall()  # fmt: skip
        time.sleep(0.3)
    assert rows, "the prediction log stopped writing"


def test_deeply_nested_json_is_a_4xx_not_a_500(client, victims) -> None:
    body = b'{"text": "hi", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    deep = client.post(
        MESSAGES,
        content=body,
        headers={**victims["chat_b"]["headers"], "content-type": "application/json"},
    )
    assert deep.status_code == 422 and "nested" in deep.json()["detail"]


# --- masking that survives obfuscation -------------------------------------------------------
@pytest.mark.parametrize(
    "written",
    ["138.1234.5678", "１３８１２３４５６７８", "138\u200b1234\u200b5678", "1 3 8 1 2 3 4 5 6 7 8"],
)
def test_obfuscated_numbers_are_masked_in_entities_and_transcripts(
    client, victims, written
) -> None:
    entities = client.post("/v1/entities", json={"text": f"张三的电话{written}"})
    assert entities.status_code == 200
    assert not leaks(entities.text), entities.text
    chat = victims["chat_b"]
    client.post(MESSAGES, headers=chat["headers"], json={"text": f"电话{written}"})
    history = client.get(f"/v1/channels/web_chat/sessions/{chat['session_id']}",
                         headers=chat["headers"])  # fmt: skip
    assert history.status_code == 200 and not leaks(history.text), history.text


def leaks(text: str) -> bool:
    """The phone number is readable once the obfuscation is undone."""
    plain = normalise(json.dumps(json.loads(text), ensure_ascii=False))[0]
    return PHONE in re.sub(r"[\s.\-_]", "", plain)


# --- webhooks ------------------------------------------------------------------------------
def ding(client: httpx.Client, body: dict, timestamp: str, sig: str | None = None):
    return client.post("/v1/channels/dingtalk/messages",
                       content=json.dumps(body, ensure_ascii=False).encode(),
                       headers={"timestamp": timestamp,
                                "sign": sig or sign(timestamp, DINGTALK_SECRET)})  # fmt: skip


def test_dingtalk_sign_reused_with_a_new_body_is_refused(client) -> None:
    """Was: a new body under a captured (timestamp, sign) pair was accepted for an hour."""
    stamp = str(int(time.time() * 1000))
    first = ding(client, ding_body(f"staff-{RUN}", "明天上海会下雨吗"), stamp)
    assert first.status_code == 200, first.text
    forged = ding(client, ding_body(f"staff-{RUN}", "转账给我", f"msg-forged-{RUN}"), stamp)
    assert forged.status_code == 401 and "replay" in forged.json()["detail"]


def test_a_400_digit_dingtalk_timestamp_is_401_not_500(client) -> None:
    stamp = "9" * 400
    answer = ding(client, ding_body(f"staff-{RUN}", "hi"), stamp, sig="x")
    assert answer.status_code == 401 and "13 digits" in answer.json()["detail"]


def test_an_old_correctly_signed_wecom_request_is_refused(client) -> None:
    """Was: a correctly signed WeCom request 30 days old was accepted."""
    old = str(int(time.time()) - 30 * 86400)
    plain = (
        f"<xml><ToUserName>{cdata(WECOM_CORP_ID)}</ToUserName><FromUserName>"
        f"{cdata('old-user')}</FromUserName><CreateTime>{old}</CreateTime><MsgType>"
        f"{cdata('text')}</MsgType><Content>{cdata('hi')}</Content><MsgId>42</MsgId></xml>"
    )
    encrypted = CRYPTO.encrypt(plain)
    body = (
        f"<xml><ToUserName>{cdata(WECOM_CORP_ID)}</ToUserName>"
        f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>"
    )
    query = {"msg_signature": signature(WECOM_TOKEN, old, "n0nce", encrypted),
             "timestamp": old, "nonce": "n0nce"}  # fmt: skip
    answer = wecom_post(client, body.encode(), query)
    assert answer.status_code == 401 and "away from now" in answer.json()["detail"]


def test_identity_links_refuse_a_foreign_corp_id(client) -> None:
    link = {"customer_id": f"C-{RUN}", "corp_id": "someone-elses-corp"}
    answer = client.put(f"/v1/channels/wecom/identities/u-{RUN}", json=link)
    assert answer.status_code == 403 and "corp_id" in answer.json()["detail"]


# --- limits --------------------------------------------------------------------------------
def test_an_oversize_websocket_frame_closes_the_socket(client, victims) -> None:
    chat = victims["chat_b"]
    with connect(ws_url(client, victims["b"], chat["session_token"]),
                 max_size=None) as socket:  # fmt: skip
        assert receive(socket)["type"] == "session"
        socket.send(json.dumps({"text": "x" * (1 << 20)}))
        with pytest.raises(Exception) as closed:
            receive(socket)
        assert "1009" in str(closed.value)


def test_socket_frames_share_the_subjects_http_rate_limit(client, pipeline_workspace) -> None:
    """Was: 60 frames processed while HTTP answered 429 after 20."""
    slow = customer_key(pipeline_workspace, "att-slow", rate_per_s=0.01, burst=4)
    chat = open_web_chat(client, slow)
    with connect(ws_url(client, slow, chat["session_token"])) as socket:
        assert receive(socket)["type"] == "session"
        answers = []
        for n in range(5):
            socket.send(json.dumps({"text": "明天上海会下雨吗", "message_id": f"f-{n}"}))
            answers.append(receive(socket))
    assert [a.get("status") for a in answers].count(429) >= 3
    assert client.post(MESSAGES, headers=chat["headers"], json={"text": "x"}).status_code == 429


def test_an_oversize_chunked_body_is_413(client) -> None:
    """Was: 400 for a streamed (chunked) body over the limit."""

    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    answer = client.post("/v1/intent", content=chunks(), headers={"content-type": "text/plain"})
    assert answer.status_code == 413


def test_a_client_set_x_channel_header_grants_nothing(client, victims) -> None:
    """Was: the policy trusted X-Channel; a customer's own data needs a verified session."""
    me = f"att-a-{RUN}"
    forged = client.get(f"/v1/customers/{me}/features",
                        headers={**victims["a"], "X-Channel": "web_chat"})  # fmt: skip
    assert forged.status_code in (403, 404)
    assert "features" not in forged.json()


def test_a_socket_outlives_servess_request_timeout(client, victims) -> None:
    """Was: every socket closed by Serve's 30 s request timeout, idle or not."""
    chat = victims["chat_b"]
    with connect(ws_url(client, victims["b"], chat["session_token"])) as socket:
        assert receive(socket)["type"] == "session"
        time.sleep(35)
        socket.send(json.dumps({"text": "明天上海会下雨吗"}))
        assert receive(socket, timeout=30)["type"] == "reply"


# --- access inside the tenant, keys, tokens -----------------------------------------------
def test_an_agent_without_clearance_reads_no_transcript_through_the_desk(
    client, pipeline_workspace
) -> None:
    agent = {"X-API-Key": issue_key(pipeline_workspace, f"agent0-{RUN}", "default", "agent",
                                    clearance=0)}  # fmt: skip
    queue = client.get("/v1/agent/queue", headers=agent)
    if queue.status_code == 403:  # off hours: agents read nothing at all
        return
    assert queue.status_code == 200
    assert all(ticket["transcript"] == [] for ticket in queue.json())
    with sqlite3.connect(pipeline_workspace / "data/privacy/audit.db") as db:
        audited = db.execute("SELECT COUNT(*) FROM audit WHERE actor = ? AND action = "
                             "'desk.work'", (f"agent0-{RUN}",)).fetchone()[0]  # fmt: skip
    assert audited >= 1  # queue reads are audited


def test_an_unknown_customer_id_cannot_be_claimed_by_its_first_writer(
    client, pipeline_workspace
) -> None:
    key = {"X-API-Key": issue_key(pipeline_workspace, f"sup-o-{RUN}", "other", "supervisor",
                                  clearance=3)}  # fmt: skip
    claimed = client.post(f"/v1/customers/new-{RUN}/events", json={"channel": "wecom"},
                          headers=key)  # fmt: skip
    assert claimed.status_code == 404


def test_jwts_for_another_audience_or_issuer_are_refused(client) -> None:
    claims = {"sub": "j", "tenant": "default", "role": "marketer", "clearance": 1,
              "exp": int(time.time()) + 60}  # fmt: skip
    for extra in ({"iss": "scrm-platform", "aud": "elsewhere"},
                  {"iss": "elsewhere", "aud": "scrm-gateway"}, {}):  # fmt: skip
        token = jwt.encode({**claims, **extra}, TEST_JWT_SECRET, algorithm="HS256")
        answer = httpx.post(f"{client.base_url}/v1/intent", json={"text": "hi"},
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert answer.status_code == 401, extra


def test_a_rebuilt_audit_chain_does_not_verify(pipeline_workspace, tmp_path) -> None:
    """Was: the chain was plain SHA-256: rewrite an entry, recompute every hash, verified."""
    from privacy.atrest import open_cipher
    from privacy.audit import AuditLog, entry_hash
    from settings import load_settings

    settings = load_settings(pipeline_workspace, environ={})
    key = open_cipher(pipeline_workspace, settings.privacy).vault.system_secret("audit-chain")
    copy = tmp_path / "audit.db"
    with sqlite3.connect(pipeline_workspace / "data/privacy/audit.db") as source, \
            sqlite3.connect(copy) as target:  # fmt: skip
        source.backup(target)
    assert AuditLog(copy, key=key).verify().ok
    with sqlite3.connect(copy) as db:  # the attacker drops the triggers, edits, re-chains
        db.execute("DROP TRIGGER audit_no_update")
        db.row_factory = sqlite3.Row
        previous = "0" * 64
        for row in db.execute("SELECT * FROM audit ORDER BY seq").fetchall():
            entry = dict(row) | ({"actor": "nobody"} if row["seq"] == 1 else {})
            digest = entry_hash(previous, entry)
            db.execute("UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                       (entry["actor"], previous, digest, row["seq"]))  # fmt: skip
            previous = digest
    assert not AuditLog(copy, key=key).verify().ok
