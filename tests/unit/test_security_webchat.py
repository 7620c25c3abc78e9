"""Web chat object-level authorization (issue 17), on the real gateway app over fakes: server
sessions bound to their customer, over HTTP and the socket; idempotency per session; replays
audited; frame size and rate limits; webhooks bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from crm.api import build_api
from crm.parts import build_parts
from tests.support import (
    FakeFeatures,
    LocalConversation,
    application_settings,
    issue_test_key,
    open_web_chat,
)
from tests.unit.test_application import models
from tests.unit.test_dialogue import intent, make_manager

WS = "/v1/channels/web_chat/ws"
MESSAGES = "/v1/channels/web_chat/messages"


@pytest.fixture
def gateway(tmp_path: Path):
    settings = application_settings(tmp_path)
    web_chat = settings.channels.web_chat.model_copy(update={"max_frame_bytes": 2048})
    settings = settings.model_copy(
        update={"channels": settings.channels.model_copy(update={"web_chat": web_chat})}
    )
    manager = make_manager(tmp_path, {"查余额": intent("balance"), "转人工": intent("balance")})
    features = FakeFeatures({"C-A": {"tenure": 1.0}, "C-B": {"tenure": 2.0}})
    parts = build_parts(settings, models(), LocalConversation(manager), features, features,
                        lambda _: features)  # fmt: skip
    fast = {"rate_per_s": 1000.0, "burst": 1000}
    keys = {
        "a": issue_test_key(settings, "C-A", "default", "customer", clearance=2, **fast),
        "b": issue_test_key(settings, "C-B", "default", "customer", clearance=2, **fast),
        "slow": issue_test_key(
            settings, "C-S", "default", "customer", clearance=2, rate_per_s=0.001, burst=3
        ),  # fmt: skip
        "other": issue_test_key(settings, "sup-g", "globex", "supervisor", clearance=3),
    }
    with TestClient(build_api(parts)) as client:
        yield client, parts, {k: {"X-API-Key": v} for k, v in keys.items()}
    parts.stop()


def test_an_authenticated_customer_chats_as_themselves_never_anon(gateway) -> None:
    client, _, keys = gateway
    chat = open_web_chat(client, keys["a"])
    assert chat["customer_id"] == "C-A" and chat["session_id"].startswith("ws-")
    turn = client.post(MESSAGES, headers=chat["headers"], json={"text": "查余额"})
    assert turn.status_code == 200 and turn.json()["customer_id"] == "C-A"


def test_web_chat_needs_a_session_token_and_cannot_switch_customer_or_session(gateway) -> None:
    client, _, keys = gateway
    assert client.post(MESSAGES, headers=keys["a"], json={"text": "hi"}).status_code == 401
    a, b = open_web_chat(client, keys["a"]), open_web_chat(client, keys["b"])
    other = client.post(MESSAGES, headers=a["headers"], json={"text": "hi", "customer_id": "C-B"})
    assert other.status_code == 403
    into = client.post(MESSAGES, headers=a["headers"],
                       json={"text": "hi", "session_id": b["session_id"]})  # fmt: skip
    assert into.status_code == 403
    stolen = {**keys["a"], "X-Chat-Session": b["session_token"]}  # B's token, A's key
    assert client.post(MESSAGES, headers=stolen, json={"text": "hi"}).status_code == 401
    # B's transcript is not A's to read: the same 404 as an unknown session
    read = client.get(f"/v1/channels/web_chat/sessions/{b['session_id']}", headers=a["headers"])
    assert read.status_code == 404
    own = client.get(f"/v1/channels/web_chat/sessions/{b['session_id']}", headers=b["headers"])
    assert own.status_code == 200
    # a supervisor of another tenant cannot open or use this tenant's web chat
    assert client.post("/v1/channels/web_chat/sessions", headers=keys["other"],
                       json={}).status_code in (403, 404)  # fmt: skip


def test_reusing_another_customers_message_id_neither_leaks_nor_drops(gateway) -> None:
    client, _, keys = gateway
    a, b = open_web_chat(client, keys["a"]), open_web_chat(client, keys["b"])
    first = client.post(MESSAGES, headers=a["headers"], json={"text": "查余额", "message_id": "m1"})
    again = client.post(MESSAGES, headers=b["headers"], json={"text": "转人工", "message_id": "m1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["customer_id"] == "C-B" and again.json()["message_id"] == "m1"
    history = client.get(f"/v1/channels/web_chat/sessions/{b['session_id']}",
                         headers=b["headers"]).json()["history"]  # fmt: skip
    assert [h["text"] for h in history if h["role"] == "customer"] == ["转人工"]
    retry = client.post(MESSAGES, headers=a["headers"], json={"text": "查余额", "message_id": "m1"})
    assert retry.json()["reply"] == first.json()["reply"]  # a retry of A's own is deduplicated


def test_resume_renews_only_the_callers_own_session(gateway) -> None:
    client, _, keys = gateway
    a = open_web_chat(client, keys["a"])
    renewed = client.post("/v1/channels/web_chat/sessions", headers=keys["a"],
                          json={"resume": a["session_token"]})  # fmt: skip
    assert renewed.status_code == 200 and renewed.json()["session_id"] == a["session_id"]
    hijack = client.post("/v1/channels/web_chat/sessions", headers=keys["b"],
                         json={"resume": a["session_token"]})  # fmt: skip
    assert hijack.status_code == 401


def test_socket_is_bound_to_its_token_frames_cannot_leave_it(gateway) -> None:
    client, parts, keys = gateway
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"{WS}?api_key={keys['a']['X-API-Key']}") as socket,
    ):
        socket.receive_json()
    assert refused.value.code == 1008
    a, b = open_web_chat(client, keys["a"]), open_web_chat(client, keys["b"])
    client.post(MESSAGES, headers=b["headers"], json={"text": "查余额"})
    url = f"{WS}?api_key={keys['a']['X-API-Key']}&session_token={b['session_token']}"
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(url) as socket:
        socket.receive_json()  # A's key with B's token: closed, B's history never sent
    url = f"{WS}?api_key={keys['a']['X-API-Key']}&session_token={a['session_token']}"
    with client.websocket_connect(url) as socket:
        hello = socket.receive_json()
        assert hello["session_id"] == a["session_id"]
        socket.send_text(json.dumps({"text": "查余额", "customer_id": "C-B"}))
        assert socket.receive_json()["status"] == 403
        socket.send_text(json.dumps({"text": "查余额", "session_id": b["session_id"]}))
        assert socket.receive_json()["status"] == 403
        socket.send_text(json.dumps({"text": "查余额"}))
        assert socket.receive_json()["customer_id"] == "C-A"
        socket.send_text('{"text": "a\\ud800"}')
        assert socket.receive_json()["status"] == 422
    entries = parts.access.audit.query("default", actor="C-A")
    actions = {(e["action"], e["effect"]) for e in entries}
    assert ("conversation.read", "permit") in actions  # the replay is audited
    assert ("chat.send", "deny") in actions  # so are the frames that tried to leave


def test_socket_frames_share_the_http_bucket_and_have_a_size_limit(gateway) -> None:
    client, _, keys = gateway
    slow = open_web_chat(client, keys["slow"])  # burst 3: the session open took one
    url = f"{WS}?api_key={keys['slow']['X-API-Key']}&session_token={slow['session_token']}"
    with client.websocket_connect(url) as socket:  # the socket took another
        socket.receive_json()
        socket.send_text(json.dumps({"text": "查余额"}))
        assert socket.receive_json()["type"] == "reply"
        socket.send_text(json.dumps({"text": "查余额"}))
        assert socket.receive_json()["status"] == 429
    assert client.post(MESSAGES, headers=slow["headers"], json={"text": "x"}).status_code == 429
    a = open_web_chat(client, keys["a"])
    url = f"{WS}?api_key={keys['a']['X-API-Key']}&session_token={a['session_token']}"
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(url) as socket:
        socket.receive_json()
        socket.send_text(json.dumps({"text": "x" * 5000}))
        socket.receive_json()
    assert closed.value.code == 1009


def test_deeply_nested_json_and_lone_surrogates_are_4xx(gateway) -> None:
    client, _, keys = gateway
    a = open_web_chat(client, keys["a"])
    deep = client.post(MESSAGES, headers={**a["headers"], "content-type": "application/json"},
                       content=b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}")  # fmt: skip
    assert deep.status_code == 422 and "nested" in deep.json()["detail"]
    lone = client.post("/v1/intent", headers=keys["a"], content=b'{"text": "a\\ud800b"}')
    assert lone.status_code == 422
