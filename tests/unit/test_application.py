"""The whole application's HTTP API, built as a gateway replica builds it, over in-process
fakes of the deployments: model routes made from settings, the access check on every route,
channels, the agent desk across the Conversation handle, customers, the intake worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crm.access import flat_routes, unguarded_routes
from crm.api import PUBLIC, build_api
from crm.channels.webchat import scoped_message_id
from crm.parts import build_parts
from events.embedded import EmbeddedBus
from tests.support import (
    FakeFeatures,
    FakeModel,
    LocalConversation,
    application_settings,
    issue_test_key,
    open_web_chat,
)
from tests.unit.test_dialogue import intent, make_manager

CUSTOMER = "C-100"


def sentiment(item: dict) -> dict:
    negative = "差" in item["text"]
    return {
        "label": "negative" if negative else "positive",
        "confidence": 0.9,
        "top_label": "negative" if negative else "positive",
        "in_scope": True,
    }


def models() -> dict[str, FakeModel]:
    label = {"label": "balance", "confidence": 0.93, "top_label": "balance", "in_scope": True}
    return {
        "intent": FakeModel("intent", lambda item: dict(label)),
        "intent_en": FakeModel("intent_en", lambda item: {**label, "label": "card_arrival"}),
        "sentiment": FakeModel("sentiment", sentiment),
        "ner": FakeModel("ner", lambda item: {"entities": []}),
        "faq_match": FakeModel("faq_match", lambda item: {"score": 0.8, "label": 1}),
        "churn": FakeModel("churn", lambda item: {"score": 0.25, "label": 0}),
        "repurchase": FakeModel("repurchase", lambda item: {"score": 0.6, "label": 1}),
    }


@pytest.fixture
def app(tmp_path: Path):
    settings = application_settings(tmp_path)
    known = {"查余额": intent("balance"), "转人工": intent("balance")}
    manager = make_manager(tmp_path, known)
    features = FakeFeatures({CUSTOMER: {"tenure": 12.0, "monetary_90d": 10.0}})
    handles = models()
    parts = build_parts(
        settings, handles, LocalConversation(manager), features, features, lambda _: features
    )
    keys = {
        "supervisor": issue_test_key(
            settings, "sup", "default", "supervisor", clearance=3, rate_per_s=1000.0, burst=1000
        ),
        "agent": issue_test_key(
            settings, "li", "default", "agent", clearance=2, rate_per_s=1000.0, burst=1000
        ),
        "other": issue_test_key(settings, "x", "globex", "supervisor", clearance=3),
    }
    with TestClient(build_api(parts)) as client:
        yield client, parts, handles, keys
    parts.stop()


def test_every_route_but_the_public_ones_is_guarded(app) -> None:
    client, _, _, _ = app
    assert unguarded_routes(client.app, PUBLIC) == []
    exposed = set(unguarded_routes(client.app, set()))
    assert {"GET /healthz", "GET /readyz", "GET /metrics"} <= exposed
    assert all(route.split()[1] in PUBLIC for route in exposed)


def test_model_routes_are_made_from_settings(app) -> None:
    client, parts, handles, keys = app
    paths = {path for path, _, _ in flat_routes(client.app.routes)}
    for name, spec in parts.settings.serving.models.items():
        assert f"/v1/{spec.route or name}" in paths, name
    assert "/v1/entities" in paths and "/v1/ner" not in paths  # the route setting wins
    headers = {"X-API-Key": keys["supervisor"]}
    answer = client.post("/v1/sentiment", json={"text": "服务太差了"}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["label"] == "negative" and answer.json()["model_name"] == "sentiment"
    batch = client.post("/v1/intent/batch", json={"texts": ["a", "b"]}, headers=headers)
    assert len(batch.json()["predictions"]) == 2 and len(handles["intent"].items) == 2
    english = client.post("/v1/intent", json={"text": "hi", "model": "intent_en"}, headers=headers)
    assert english.json()["label"] == "card_arrival"
    wrong = client.post("/v1/intent", json={"text": "hi", "model": "sentiment"}, headers=headers)
    assert wrong.status_code == 422 and "use one of intent, intent_en" in wrong.json()["detail"]
    assert client.post("/v1/sentiment", json={"text": "x"}).status_code == 401


def test_a_new_model_is_a_settings_entry_not_a_route(tmp_path: Path) -> None:
    from settings.serving import ModelSpec

    settings = application_settings(tmp_path)
    served = {
        **settings.serving.models,
        "emotion": ModelSpec(kind="text", registered_model="emotion"),
    }
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"models": served})}
    )
    handles = {**models(), "emotion": FakeModel("emotion", sentiment)}
    features = FakeFeatures({})
    parts = build_parts(
        settings, handles, LocalConversation(make_manager(tmp_path)), features, features
    )
    key = issue_test_key(settings, "sup", "default", "supervisor", clearance=3)
    with TestClient(build_api(parts)) as client:
        answer = client.post("/v1/emotion", json={"text": "开心"}, headers={"X-API-Key": key})
    parts.stop()
    assert answer.status_code == 200 and answer.json()["model_name"] == "emotion"


def test_tabular_scores_by_id_and_hides_other_tenants_customers(app) -> None:
    client, parts, handles, keys = app
    mine = client.post(
        "/v1/churn", json={"customer_id": CUSTOMER}, headers={"X-API-Key": keys["supervisor"]}
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["features_from"] == "feast" and handles["churn"].items[0]["features"]
    theirs = client.post(
        "/v1/churn", json={"customer_id": CUSTOMER}, headers={"X-API-Key": keys["other"]}
    )
    assert theirs.status_code == 404 and "Unknown customer" in theirs.json()["detail"]


def test_web_chat_turn_goes_through_the_conversation_and_the_desk_answers_back(app) -> None:
    client, parts, _, keys = app
    chat = open_web_chat(client, {"X-API-Key": keys["supervisor"]})
    headers = chat["headers"]
    turn = client.post(
        "/v1/channels/web_chat/messages",
        headers=headers,
        json={"text": "转人工", "message_id": "m-1"},
    )
    assert turn.status_code == 200, turn.text
    agent = {"X-API-Key": keys["agent"]}
    assert (
        client.put("/v1/agent/agents/li", json={"skills": ["general"]}, headers=agent).status_code
        == 200
    )
    queue = client.get("/v1/agent/queue", headers=agent).json()
    ticket = next(t for t in queue if t["agent_id"] in (None, "li"))["id"]
    accepted = client.post(
        f"/v1/agent/tickets/{ticket}/accept", json={"agent_id": "li"}, headers=agent
    )
    assert accepted.status_code == 200 and accepted.json()["state"] == "open"
    replied = client.post(
        f"/v1/agent/tickets/{ticket}/reply",
        json={"agent_id": "li", "text": "您好，我是小李"},
        headers=agent,
    )
    assert replied.status_code == 200
    session = chat["session_id"]
    history = client.get(f"/v1/channels/web_chat/sessions/{session}", headers=headers).json()[
        "history"
    ]
    assert [h["text"] for h in history if h["role"] == "agent"] == ["您好，我是小李"]
    missing = client.post("/v1/agent/tickets/T-none/accept", json={"agent_id": "li"}, headers=agent)
    assert missing.status_code == 404


def test_customer_features_and_events(app) -> None:
    client, parts, _, keys = app
    headers = {"X-API-Key": keys["supervisor"]}
    assert client.get(f"/v1/customers/{CUSTOMER}/features", headers=headers).status_code == 200
    event = client.post(
        f"/v1/customers/{CUSTOMER}/events",
        headers=headers,
        json={"channel": "wecom", "intent": "balance"},
    )
    assert event.status_code == 202 and event.json()["bus"] == "embedded"
    # stored on the bus (a fresh reader sees it) with the caller's tenant, before the answer
    bus = EmbeddedBus(parts.settings.path(parts.settings.events.log), partitions=8)
    consumer = asyncio.run(bus.consumer("check", range(8), {}))
    (stored,) = asyncio.run(consumer.fetch(10))
    assert stored.event.event_id == event.json()["event_id"]
    assert (stored.event.customer_id, stored.event.tenant, stored.event.intent) == (
        CUSTOMER, "default", "balance")  # fmt: skip
    metrics = client.get("/metrics").text  # nothing applied it yet: a lag of one event
    lag = 'scrm_bus_consumer_lag_events{consumer="turn_history",engine="embedded"} 1.0'
    assert lag in metrics
    other = client.get(f"/v1/customers/{CUSTOMER}/features", headers={"X-API-Key": keys["other"]})
    assert other.status_code == 404


def test_a_message_accepted_but_not_answered_is_answered_and_delivered_later(tmp_path) -> None:
    """The retry path: the inline answer fails (the Conversation replica is restarting), the
    message stays in the intake log, and the replica's worker answers it with the dialogue and
    delivers the reply on the customer's channel (web chat: the transcript and open sockets)."""
    settings = application_settings(tmp_path)
    intake = settings.channels.intake.model_copy(update={"backoff_s": 0.0})
    settings = settings.model_copy(
        update={"channels": settings.channels.model_copy(update={"intake": intake})}
    )
    conversation = LocalConversation(make_manager(tmp_path, {"查余额": intent("balance")}))
    answer_turn, failures = conversation.turn.remote, []

    class Flaky:
        @staticmethod
        def remote(message):
            if not failures:
                failures.append(message.message_id)
                raise RuntimeError("conversation replica restarting")
            return answer_turn(message)

    conversation.turn = Flaky()
    features = FakeFeatures({})
    parts = build_parts(settings, models(), conversation, features, features)
    key = issue_test_key(settings, "sup", "default", "supervisor", clearance=3)
    with TestClient(build_api(parts)) as client:
        chat = open_web_chat(client, {"X-API-Key": key})
        answer = client.post(
            "/v1/channels/web_chat/messages",
            headers=chat["headers"],
            json={"text": "查余额", "message_id": "m-9"},
        )
    assert answer.status_code == 202 and answer.json()["reply"] is None, answer.text
    logged = scoped_message_id(chat["session_id"], "m-9")  # idempotency is per session
    assert parts.channels.intake.status("web_chat", logged)["state"] == "pending"
    asyncio.run(parts.worker.run(until_idle=True))
    history = parts.channels.history(chat["session_id"])
    assert [h["role"] for h in history] == ["customer", "bot"]
    assert parts.channels.intake.status("web_chat", logged)["state"] == "done"
    parts.stop()
