"""Property-based fuzzing of the whole HTTP API (issue 26, deliverable 1).

schemathesis reads the OpenAPI of the application exactly as a gateway replica builds it
(crm/parts.py + crm/api.py, embedded stores in a tmp dir, in-process fakes of the model and
Conversation deployments) and sends generated requests in-process over ASGI, no server, with the
credentials of every role of privacy/auth.py and with none. Every answer must be below 500 (a
503 with a reason aside), every 4xx must carry a readable `detail`, every answer must match the
schema the OpenAPI documents for it, and a request the schema forbids must be refused. Then:
the same on routes whose path names real objects (a ticket, a campaign...), hostile values
(lone surrogates, NUL, RTL marks, 1 MB of emoji, deep nesting, numbers as strings) in every
body text leaf, query and path parameter, hostile credentials on every route, and one
regression test per bug the fuzzing found.

Bounded: SCRM_FUZZ_EXAMPLES examples per route and role (default 2 positive + 1 negative, about
40 s; `make fuzz`: 10 + 5), no deadline; failures are collected over the whole run so one
report lists them all.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from schemathesis.python.asgi import ASGIClient

from crm.api import build_api
from crm.parts import build_parts
from privacy.auth import ROLES
from tests.api_fuzz import (
    CALLERS,
    DEEPER,
    EXAMPLES,
    detail_problem,
    first_case,
    fuzz_operation,
    hostile_requests,
    must_refuse,
    operations,
    record,
)
from tests.support import (
    FakeFeatures,
    LocalConversation,
    application_settings,
    issue_test_key,
    open_web_chat,
)
from tests.unit.test_application import CUSTOMER, models
from tests.unit.test_dialogue import intent, make_manager


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory):
    """The application over embedded stores, its schema, one API key per role."""
    root = tmp_path_factory.mktemp("fuzz")
    config = application_settings(root)
    manager = make_manager(root, {"查余额": intent("balance"), "转人工": intent("balance")})
    features = FakeFeatures({CUSTOMER: {"tenure": 12.0, "monetary_90d": 10.0}})
    parts = build_parts(
        config, models(), LocalConversation(manager), features, features, lambda _: features
    )
    keys = {
        role: {
            "X-API-Key": issue_test_key(
                config, f"fuzz-{role}", "default", role, clearance=3, rate_per_s=1e6, burst=10**6
            )
        }
        for role in ROLES
    }
    keys["anonymous"] = {}
    api = build_api(parts)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    client = ASGIClient(api)
    KNOWN.update(known_objects(client, keys))
    yield schema, client, keys
    parts.stop()


KNOWN: dict[str, str] = {}
CHAT: dict[str, str] = {}  # a supervisor's key + an open web chat session's token
SPEC = {
    "name": "fuzz",
    "purpose": "promotions",
    "audience": {"all": [{"kind": "segment", "name": "at_risk"}]},
    "channels": ["web_chat"],
    "templates": {"web_chat": {"text": "{surname}先生/女士，专享", "plain": "专享"}},
}


def known_objects(client: Any, keys: dict) -> dict[str, str]:
    """Ids of real objects (a customer, a web chat session with a ticket, a campaign), so the
    fuzzer reaches the routes' bodies and not only their 404s."""
    sup = keys["supervisor"]
    chat = open_web_chat(client, sup)
    said = client.post("/v1/channels/web_chat/messages", headers=chat["headers"],
                       json={"text": "转人工", "message_id": "m-1"})  # fmt: skip
    assert said.status_code == 200, said.text
    queue = client.get("/v1/agent/queue", headers=sup).json()
    made = client.post("/v1/marketing/campaigns", json=SPEC, headers=keys["marketer"])
    assert made.status_code == 201, made.text
    CHAT.update(chat["headers"])
    return {
        "customer_id": CUSTOMER,
        "session_id": chat["session_id"],
        "ticket_id": queue[0]["id"],
        "campaign_id": made.json()["id"],
        "agent_id": "fuzz-agent",
        "channel": "web_chat",
    }


def test_every_route_and_role_answers_below_500_with_a_readable_detail(fuzzed) -> None:
    schema, client, keys = fuzzed
    failures: dict[str, str] = {}
    started, sent = time.monotonic(), 0
    for operation in operations(schema):
        for caller in CALLERS:
            sent += fuzz_operation(operation, client, keys[caller], failures)
    elapsed = time.monotonic() - started
    print(f"fuzzed {sent} requests over {len(operations(schema))} routes in {elapsed:.0f} s")
    record("every_route_and_role", requests=sent, routes=len(operations(schema)),
           callers=list(CALLERS), seconds=round(elapsed, 1), failures=len(failures))  # fmt: skip
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


def first_admitted(client: Any, case: Any, keys: dict) -> dict:
    """The credentials of the first role the route lets through (hostile input should reach
    the route, not stop at 403), supervisor's when none does."""
    if case.operation.path == "/v1/channels/{channel}/messages":
        return CHAT  # the web chat takes its session token (vendors sign; they answer 401)
    for role in (
        "admin",
        "supervisor",
        "marketer",
        "agent",
        "ops",
        "data_scientist",
        "teacher",
        "customer",
    ):
        answer = case.call(session=client, headers=keys[role])
        if answer.status_code not in (401, 403):
            return keys[role]
    return keys["supervisor"]


def test_hostile_values_in_every_field_get_a_4xx_with_a_detail_never_a_500(fuzzed) -> None:
    schema, client, keys = fuzzed
    failures: list[str] = []
    sent, started = 0, time.monotonic()
    for operation in operations(schema):
        names = [p.name for p in operation.path_parameters]
        case = first_case(operation, {n: KNOWN[n] for n in names if n in KNOWN} or None)
        headers = {**first_admitted(client, case, keys), "Content-Type": "application/json"}
        for what, url, body in hostile_requests(case):
            answer = client.request(operation.method.upper(), url, data=body, headers=headers)
            sent += 1
            status, problem = answer.status_code, None
            if status >= 500 and (status != 503 or detail_problem(status, answer.content)):
                problem = f"server error {status}: {answer.content[:200]!r}"
            elif 400 <= status < 500:
                problem = detail_problem(status, answer.content)
            if problem is None and status < 400 and must_refuse(operation.method, what):
                problem = f"accepted with {status}: {answer.content[:200]!r}"
            if problem:
                failures.append(f"{operation.label} [{what}] -> {problem}")
    elapsed = time.monotonic() - started
    print(f"sent {sent} hostile requests over {len(operations(schema))} routes in {elapsed:.0f} s")
    record("hostile_values", requests=sent, routes=len(operations(schema)),
           seconds=round(elapsed, 1), failures=len(failures))  # fmt: skip
    assert not failures, "\n".join(failures[:60])


def test_routes_on_real_objects_answer_below_500_with_a_readable_detail(fuzzed) -> None:
    """The same checks with the path naming objects that exist, for the first role admitted,
    so bodies and queries are fuzzed past the 404 of an unknown id."""
    schema, client, keys = fuzzed
    failures: dict[str, str] = {}
    sent, routes, started = 0, 0, time.monotonic()
    for operation in operations(schema):
        names = [p.name for p in operation.path_parameters]
        if not names or not all(name in KNOWN for name in names):
            continue
        path = {name: KNOWN[name] for name in names}
        headers = first_admitted(client, first_case(operation, path), keys)
        sent += fuzz_operation(operation, client, headers, failures, path, EXAMPLES * DEEPER)
        routes += 1
    record("real_objects", requests=sent, routes=routes,
           seconds=round(time.monotonic() - started, 1), failures=len(failures))  # fmt: skip
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


# Regressions of what the fuzzing found (issue 26), one request each.


@pytest.mark.parametrize(
    "agent_id", ["a%00b", "a%ED%A0%80b", quote("😀" * 2000), "a%E2%80%AEb", "a%20b"]
)
def test_hostile_agent_ids_from_the_path_are_not_registered(fuzzed, agent_id: str) -> None:
    _, client, keys = fuzzed
    answer = client.put(
        f"/v1/agent/agents/{agent_id}", json={"skills": ["general"]}, headers=keys["supervisor"]
    )
    assert answer.status_code == 422, answer.text
    assert "agent_id" in answer.json()["detail"]
    good = client.put("/v1/agent/agents/li.wang@desk-2", json={"skills": ["贷款", "cards"]},
                      headers=keys["supervisor"])  # fmt: skip
    assert good.status_code == 200, good.text


@pytest.mark.parametrize("skills", [[""], ["x" * 65], ["a b"], ["general"] * 33])
def test_blank_long_or_too_many_skills_are_refused(fuzzed, skills: list[str]) -> None:
    _, client, keys = fuzzed
    answer = client.put("/v1/agent/agents/li", json={"skills": skills}, headers=keys["supervisor"])
    assert answer.status_code == 422 and "skills" in answer.json()["detail"], answer.text


@pytest.mark.parametrize("sender_id", ["a%00b", "a%ED%A0%80b", "a%1Bb", "a%FFb"])
def test_hostile_sender_ids_from_the_path_are_not_linked(fuzzed, sender_id: str) -> None:
    _, client, keys = fuzzed
    url = f"/v1/channels/web_chat/identities/{sender_id}"
    body = {"customer_id": CUSTOMER}
    answer = client.put(url, json=body, headers=keys["supervisor"])
    assert answer.status_code == 422, answer.text
    assert "sender_id" in answer.json()["detail"]
    fine = client.put("/v1/channels/web_chat/identities/张三.wx-1", json=body,
                      headers=keys["supervisor"])  # fmt: skip
    assert fine.status_code == 200, fine.text


HOSTILE_HEADERS = {
    "NUL in the key": {"X-API-Key": b"scrm_ab\x00cd_ef"},
    "surrogate bytes in the key": {"X-API-Key": b"scrm_\xed\xa0\x80_x"},
    "16 KB bearer token": {"Authorization": "Bearer " + "a" * 16384},
    "RTL in the scheme": {"Authorization": "\u202eBearer x".encode()},
    "garbage chat token": {"X-Chat-Session": b"\xff\xfe" * 40, "X-Request-Id": b"\x00" * 80},
}


def test_hostile_credentials_on_every_route_get_a_4xx_with_a_detail(fuzzed) -> None:
    """Credentials and ids in headers are text too: refused with a reason, never a 500."""
    schema, client, _ = fuzzed
    failures = []
    for operation in operations(schema):
        case = first_case(operation)
        for what, headers in HOSTILE_HEADERS.items():
            raw = {k: v.decode("latin-1") if isinstance(v, bytes) else v  # bytes on the wire
                   for k, v in headers.items()}  # fmt: skip
            body = case.body if isinstance(case.body, dict | list) else None
            answer = client.request(case.method, case.formatted_path, params=case.query,
                                    json=body, headers=raw)  # fmt: skip
            status = answer.status_code
            problem = detail_problem(status, answer.content) if status >= 400 else None
            if status >= 500 and status != 503:
                problem = f"server error {status}: {answer.content[:200]!r}"
            if problem:
                failures.append(f"{operation.label} [{what}] -> {problem}")
    assert not failures, "\n".join(failures[:60])


def test_a_422_is_documented_as_it_is_sent(fuzzed) -> None:
    """FastAPI documented every 422 as a list of errors; the API sends one readable line."""
    _, client, keys = fuzzed
    documented = client.get("/openapi.json").json()["components"]["schemas"]
    assert documented["HTTPValidationError"]["properties"]["detail"]["type"] == "string"
    answer = client.put("/v1/agent/agents/li", json={"skills": []}, headers=keys["supervisor"])
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)
    assert set(answer.json()) == {"detail", "request_id"}


@pytest.mark.parametrize("customer_id", ["%C3%AF", "%D0%A1-100", "%E5%BC%A0%E4%B8%89"])
def test_customer_ids_are_ascii_as_documented(fuzzed, customer_id: str) -> None:
    """ï, a Cyrillic С-100 (looks like C-100), 张三: refused as the OpenAPI pattern says."""
    _, client, keys = fuzzed
    for method, tail in (("PUT", "registration"), ("GET", "profile"), ("GET", "tags")):
        url = f"/v1/customers/{customer_id}/{tail}"
        answers = [client.request(method, url, headers=keys[role]) for role in ROLES]
        answer = next(a for a in answers if a.status_code != 403)  # a role the route admits
        assert answer.status_code == 422, (tail, answer.text)
        assert "customer_id" in answer.json()["detail"]


@pytest.mark.parametrize("at", [-48207, 1733454000, True, 1.5, "1733454000"])
def test_an_event_time_is_an_iso_string_not_a_number(fuzzed, at: Any) -> None:
    _, client, keys = fuzzed
    body = {"channel": "web_chat", "at": at}
    url = f"/v1/customers/{CUSTOMER}/events"
    answer = client.post(url, json=body, headers=keys["supervisor"])
    assert answer.status_code == 422 and "ISO 8601" in answer.json()["detail"], answer.text
    body["at"] = "2026-12-06T03:00:00Z"
    assert client.post(url, json=body, headers=keys["supervisor"]).status_code == 202


@pytest.mark.parametrize("clearance", [False, True, "3", 1.0])
def test_a_key_clearance_is_an_integer_not_a_boolean_or_text(fuzzed, clearance: Any) -> None:
    _, client, keys = fuzzed
    body = {"subject": "li", "role": "agent", "clearance": clearance}
    answer = client.post("/v1/admin/keys", json=body, headers=keys["admin"])
    assert answer.status_code == 422 and "clearance" in answer.json()["detail"], answer.text
    body["clearance"] = 2
    assert client.post("/v1/admin/keys", json=body, headers=keys["admin"]).status_code == 201


@pytest.mark.parametrize("since", ["0.2", "1733454000", "-5", "1e3"])
def test_an_audit_window_is_an_iso_time_not_unix_seconds(fuzzed, since: str) -> None:
    _, client, keys = fuzzed
    answer = client.get("/v1/audit", params={"since": since}, headers=keys["admin"])
    assert answer.status_code == 422 and "ISO 8601" in answer.json()["detail"], answer.text
    fine = client.get("/v1/audit", params={"since": "2026-12-06T03:00:00Z"}, headers=keys["admin"])
    assert fine.status_code == 200, fine.text
