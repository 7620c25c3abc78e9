"""Access control of the live gateway: every route x role x own/other tenant from one table.

The session gateway (`server` fixture) runs with the workspace's params: the data sets'
customers and the conversation layer belong to tenant `default`; the suite issues one API key
per role and tenant (`other` is a second tenant whose customer is created through the API).
Every cross-tenant read or write must be denied, object-level ones as 404 (exactly as an
unknown id), and no denied answer may carry the record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import pandas as pd
import pytest
import yaml

from tests.conftest import TEST_JWT_SECRET, issue_key
from tests.support import open_web_chat

ROLES = ("customer", "agent", "supervisor", "marketer", "data_scientist", "admin")
TENANTS = ("default", "other")
CLEARANCE = {
    "customer": 2,
    "agent": 2,
    "supervisor": 3,
    "marketer": 1,
    "data_scientist": 1,
    "admin": 3,
}
PUBLIC = {"/healthz", "/readyz", "/metrics"}
PHONE = "13812345678"
RUN = uuid.uuid4().hex[:8]
OTHER_CUSTOMER = f"other-{RUN}"
SESSION = f"acl-{RUN}"
MATRIX_AGENT = f"agent-default-{RUN}"


TICKET_HOLDER: dict[str, str | None] = {}  # who holds the world's ticket (set with the world)


def agent_sees_ticket() -> int:
    """An agent sees the queue and their own tickets: agents left on the desk by earlier tests
    of the session may have taken the world's ticket, and then it is a colleague's (404)."""
    return 200 if TICKET_HOLDER.get("agent") in (None, MATRIX_AGENT) else 404


def ticket_holder(client: httpx.Client, ticket: str) -> str | None:
    """Who holds the ticket now (the suite's key is a supervisor's): an agent who frees up
    takes the next ticket in line, so it may change between two tests."""
    held = client.get(f"/v1/agent/tickets/{ticket}")
    assert held.status_code == 200, held.text
    return held.json().get("agent_id")


def agents_on_duty() -> bool:
    """policies.yaml deny-agents-off-hours: agents read customer data 07:00-22:59 Beijing."""
    return 7 <= datetime.now(ZoneInfo("Asia/Shanghai")).hour < 23


@dataclass(frozen=True)
class World:
    """The objects the table refers to, made once per session."""

    customer: str  # a Telco customer of tenant default (also the customer role's own id)
    retail: str  # an Online Retail customer of tenant default
    theirs: str  # an Online Retail customer that tenant other holds (see give_to_other_tenant)
    ticket: str  # a handoff ticket on tenant default's desk
    keys: dict[tuple[str, str], str] = field(repr=False)
    other_keys: dict[str, str] = field(repr=False)  # key id (of tenant other) per role
    session: str = ""  # the customer's server-issued web chat session
    chats: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)  # tokens


@dataclass(frozen=True)
class Case:
    """One route; `own`/`other`: the status each role gets for the default tenant's object
    (own: a caller of tenant default; other: of tenant other)."""

    name: str
    method: str
    path: Callable[[World], str]
    body: Callable[[World], Any] | None
    own: dict[str, int | Callable[[], int]]
    other: dict[str, int]
    # what a denied answer must never contain (the record itself)
    secret: Callable[[World], str] | None = None

    def expected(self, role: str, tenant: str) -> int:
        status = (self.own if tenant == "default" else self.other)[role]
        return status() if callable(status) else status


def by_role(allowed: dict[str, Any], otherwise: int) -> dict[str, Any]:
    return {role: allowed.get(role, otherwise) for role in ROLES}


def on_duty(status: int = 200) -> Callable[[], int]:
    return lambda: status if agents_on_duty() else 403


TEXT = {"text": "明天北京天气怎么样"}
PREDICTORS = {"agent": 200, "supervisor": 200, "marketer": 200, "data_scientist": 200}
# Tenant-level routes: a caller of another tenant acts in their own tenant, with their rights.
TEXT_ROUTES = [
    ("intent", "/v1/intent", TEXT),
    ("intent batch", "/v1/intent/batch", {"texts": ["你好", "查余额"]}),
    ("intent_en", "/v1/intent_en", {"text": "I lost my card"}),
    ("sentiment", "/v1/sentiment", {"text": "服务太差了"}),
    ("sentiment batch", "/v1/sentiment/batch", {"texts": ["很好", "很差"]}),
    ("entities", "/v1/entities", {"text": "张三住在北京"}),
    ("faq_match", "/v1/faq_match", {"text_a": "花呗怎么还款", "text_b": "花呗如何还款"}),
    ("analyze", "/v1/analyze", TEXT),
]
SCORERS = {"agent": on_duty(), "supervisor": 200, "marketer": 200}
# a score by customer id needs predict, then customer.read on that customer (object-level)
SCORE_OTHER = by_role({"customer": 403, "admin": 403}, 404)
SCORE_OWN = by_role(SCORERS, 403)
CASES: list[Case] = [
    *(
        Case(
            name,
            "POST",
            lambda w, p=path: p,
            lambda w, b=body: b,
            by_role(PREDICTORS, 403),
            by_role(PREDICTORS, 403),
        )
        for name, path, body in TEXT_ROUTES
    ),
    Case(
        "churn by id",
        "POST",
        lambda w: "/v1/churn",
        lambda w: {"customer_id": w.customer},
        SCORE_OWN,
        SCORE_OTHER,
        lambda w: '"score"',
    ),
    Case(
        "churn explained",
        "POST",
        lambda w: "/v1/churn",
        lambda w: {"customer_id": w.customer, "explain": 2},
        SCORE_OWN,
        SCORE_OTHER,
        lambda w: '"reasons"',
    ),
    Case(
        "churn batch",
        "POST",
        lambda w: "/v1/churn/batch",
        lambda w: {"items": [{"customer_id": w.customer}]},
        SCORE_OWN,
        SCORE_OTHER,
        lambda w: '"score"',
    ),
    Case(
        "repurchase by id",
        "POST",
        lambda w: "/v1/repurchase",
        lambda w: {"customer_id": w.retail},
        SCORE_OWN,
        SCORE_OTHER,
        lambda w: '"score"',
    ),
    Case(
        "repurchase batch",
        "POST",
        lambda w: "/v1/repurchase/batch",
        lambda w: {"items": [{"customer_id": w.retail}]},
        SCORE_OWN,
        SCORE_OTHER,
        lambda w: '"score"',
    ),
    Case(
        "customer features",
        "GET",
        lambda w: f"/v1/customers/{w.customer}/features",
        None,
        by_role({"customer": 200, "agent": on_duty(), "supervisor": 200, "marketer": 200}, 403),
        by_role({}, 404),
        lambda w: '"features"',
    ),
    Case(
        "another customer's features (as a customer)",
        "GET",
        lambda w: f"/v1/customers/{w.retail}/features",
        None,
        by_role({"customer": 404, "agent": on_duty(), "supervisor": 200, "marketer": 200}, 403),
        by_role({}, 404),
        lambda w: '"features"',
    ),
    Case(
        "customer event",
        "POST",
        lambda w: f"/v1/customers/{w.customer}/events",
        lambda w: {"channel": "web_chat", "intent": "balance"},
        by_role({"customer": 202, "supervisor": 202}, 403),
        by_role({}, 404),
        lambda w: '"event_id"',
    ),
    Case(
        "web chat message",
        "POST",
        lambda w: "/v1/channels/web_chat/messages",
        lambda w: {"text": "你好"},  # the session is the caller's token's (X-Chat-Session)
        by_role({"customer": 200, "supervisor": 200}, 403),
        by_role({}, 404),
        lambda w: '"reply"',
    ),
    Case(
        "web chat history",
        "GET",
        lambda w: f"/v1/channels/web_chat/sessions/{w.session}",
        None,
        by_role({"customer": 200, "agent": on_duty(), "supervisor": 200}, 403),
        by_role({}, 404),
        lambda w: '"history"',
    ),
    Case(
        "identity link",
        "PUT",
        lambda w: f"/v1/channels/web_chat/identities/{SESSION}-link",
        lambda w: {"customer_id": w.customer},
        by_role({"supervisor": 200, "admin": 200}, 403),
        by_role({}, 404),
        lambda w: '"identities"',
    ),
    Case(
        "desk queue",
        "GET",
        lambda w: "/v1/agent/queue",
        None,
        by_role({"agent": 200, "supervisor": 200}, 403),
        by_role({}, 404),
    ),
    Case(
        "desk register",
        "PUT",
        lambda w: f"/v1/agent/agents/{MATRIX_AGENT}",
        lambda w: {"skills": ["matrix-only"], "capacity": 1},
        by_role({"agent": 200, "supervisor": 200}, 403),
        by_role({}, 404),
    ),
    Case(
        "desk ticket",
        "GET",
        lambda w: f"/v1/agent/tickets/{w.ticket}",
        None,
        # a customer asking for someone else's ticket must not learn it exists
        by_role({"agent": agent_sees_ticket, "supervisor": 200, "customer": 404}, 403),
        by_role({}, 404),
        lambda w: '"transcript"',
    ),
    Case(
        "audit trail",
        "GET",
        lambda w: "/v1/audit?limit=5",
        None,
        by_role({"supervisor": 200, "admin": 200}, 403),
        by_role({"supervisor": 200, "admin": 200}, 403),
    ),
    Case(
        "audit verify",
        "GET",
        lambda w: "/v1/audit/verify",
        None,
        by_role({"supervisor": 200, "admin": 200}, 403),
        by_role({"supervisor": 200, "admin": 200}, 403),
    ),
    Case(
        "admin keys",
        "GET",
        lambda w: "/v1/admin/keys",
        None,
        by_role({"admin": 200}, 403),
        by_role({"admin": 200}, 403),
    ),
    Case(
        "revoke another tenant's key",
        "DELETE",
        lambda w: f"/v1/admin/keys/{w.other_keys['marketer']}",
        None,
        by_role({"admin": 404}, 403),
        by_role({"admin": 200}, 403),
    ),
]


def headers(world: World, role: str, tenant: str) -> dict[str, str]:
    """The role's key, and its web chat session token where it has one (a customer's channel
    is its verified session's, never a client-set X-Channel header)."""
    chat = world.chats.get((role, tenant))
    extra = {"X-Chat-Session": chat} if chat else {}
    return {"X-API-Key": world.keys[(role, tenant)], **extra}


@pytest.fixture(scope="module")
def world(client: httpx.Client, pipeline_workspace: Path) -> World:
    accounts = pd.read_parquet(pipeline_workspace / "data/features/customer_accounts.parquet")
    rfm = pd.read_parquet(pipeline_workspace / "data/features/customer_rfm.parquet")
    customer = str(accounts["customer_id"].iloc[1])
    retail, theirs = (str(c) for c in sorted(rfm["customer_id"].astype(str).unique())[1:3])
    keys = {}
    for tenant in TENANTS:
        for role in ROLES:
            subject = customer if (role, tenant) == ("customer", "default") else f"{role}-{tenant}"
            if role == "agent":
                subject = MATRIX_AGENT if tenant == "default" else f"agent-other-{RUN}"
            keys[(role, tenant)] = issue_key(
                pipeline_workspace,
                subject,
                tenant,
                role,
                clearance=CLEARANCE[role],
                rate_per_s=1000.0,
                burst=1000,
            )
    # the customer's web chat session (history is theirs) and a ticket with a phone number in it
    chats = {}
    for role in ("customer", "supervisor"):
        opened = open_web_chat(client, {"X-API-Key": keys[(role, "default")]})
        chats[(role, "default")] = opened["session_token"]
        if role == "customer":
            session, say = opened["session_id"], opened["headers"]
            assert opened["customer_id"] == customer  # an authenticated customer, not anon
    linked = client.post("/v1/channels/web_chat/messages", json={"text": "你好"}, headers=say)
    assert linked.status_code == 200, linked.text
    ticket = open_ticket(client)
    TICKET_HOLDER["agent"] = ticket_holder(client, ticket)
    other = {role: keys[(role, "other")].split("_")[1] for role in ROLES}
    return World(customer, retail, theirs, ticket, keys, other, session, chats)


def open_ticket(client: httpx.Client) -> str:
    chat = open_web_chat(client, dict(client.headers))
    for text in (f"我的手机号是{PHONE}", "转人工"):
        answer = client.post(
            "/v1/channels/web_chat/messages", json={"text": text}, headers=chat["headers"]
        )
        assert answer.status_code == 200, answer.text
    ticket = answer.json()["dialogue"].get("ticket_id")
    assert ticket, answer.text
    return ticket


def test_every_route_role_and_tenant(client: httpx.Client, world: World) -> None:
    """The whole table in one test (one pass over the live gateway, about 300 requests)."""
    failures = []
    for case in CASES:
        TICKET_HOLDER["agent"] = ticket_holder(client, world.ticket)
        for tenant in TENANTS:
            for role in ROLES:
                want = case.expected(role, tenant)
                body = case.body(world) if case.body else None
                answer = client.request(
                    case.method, case.path(world), json=body, headers=headers(world, role, tenant)
                )
                where = f"{case.name} as {role} of {tenant}"
                if answer.status_code != want:
                    failures.append(f"{where}: {answer.status_code} != {want}: {answer.text[:160]}")
                elif want >= 400:
                    if case.secret and case.secret(world) in answer.text:
                        failures.append(f"{where}: a denied answer carries the record")
                    if not answer.json().get("detail"):
                        failures.append(f"{where}: {want} without a readable detail")
    assert not failures, "\n".join(failures)


def give_to_other_tenant(root: Path, customer_id: str) -> None:
    """Record a data-set customer as tenant other's (what the directory holds for customers
    another tenant brought), straight in the workspace's directory (params tenancy)."""
    import sqlite3

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    with sqlite3.connect(root / params["privacy"]["tenancy"]["directory_db"]) as db:
        db.execute(
            "INSERT OR REPLACE INTO customer_tenants (customer_id, tenant) VALUES (?, 'other')",
            (customer_id,),
        )


def test_cross_tenant_object_404_is_identical_to_an_unknown_id(
    client, world, pipeline_workspace
) -> None:
    """Another tenant's customer looks exactly like one that does not exist, to reads and
    writes alike; and a customer created through the API belongs to its writer's tenant."""
    give_to_other_tenant(pipeline_workspace, world.theirs)
    own = {"X-API-Key": world.keys[("supervisor", "default")]}
    other = {"X-API-Key": world.keys[("supervisor", "other")]}
    theirs = client.get(f"/v1/customers/{world.theirs}/features", headers=other)
    assert theirs.status_code == 200, theirs.text
    record = theirs.json()["features"]
    unknown_id = f"nobody-{RUN}"
    for path, body in [
        (f"/v1/customers/{world.theirs}/features", None),
        ("/v1/churn", {"customer_id": world.theirs}),
        ("/v1/repurchase", {"customer_id": world.theirs, "explain": 2}),
        (
            "/v1/churn/batch",
            {"items": [{"customer_id": world.customer}, {"customer_id": world.theirs}]},
        ),
    ]:
        method = "GET" if body is None else "POST"
        hidden = client.request(method, path, json=body, headers=own)
        unknown = client.request(
            method,
            path.replace(world.theirs, unknown_id),
            json=body and eval_replace(body, world.theirs, unknown_id),
            headers=own,
        )
        assert hidden.status_code == unknown.status_code == 404, (path, hidden.text)
        assert hidden.json()["detail"] == unknown.json()["detail"].replace(unknown_id, world.theirs)
        assert set(hidden.json()) == {"detail", "request_id"}  # nothing of the record
    write = client.post(
        f"/v1/customers/{world.theirs}/events", json={"channel": "wecom"}, headers=own
    )
    assert write.status_code == 404  # a write across tenants: denied as not found
    after = client.get(f"/v1/customers/{world.theirs}/features", headers=other).json()
    assert after["features"]["messages_30d"] == record["messages_30d"]  # nothing was written

    claimed = client.post(
        f"/v1/customers/{OTHER_CUSTOMER}/events", json={"channel": "wecom"}, headers=other
    )
    assert claimed.status_code == 404  # an unknown id is not claimed by its first writer
    admin = {"X-API-Key": world.keys[("admin", "other")]}
    registered = client.put(f"/v1/customers/{OTHER_CUSTOMER}/registration", headers=admin)
    assert registered.status_code == 200 and registered.json()["tenant"] == "other"
    created = client.post(
        f"/v1/customers/{OTHER_CUSTOMER}/events",
        json={"channel": "wecom", "intent": "loan"},
        headers=other,
    )
    assert created.status_code == 202, created.text  # registered: tenant other's customer
    for method, path, body in [
        ("POST", f"/v1/customers/{OTHER_CUSTOMER}/events", {"channel": "wecom"}),
        ("POST", "/v1/churn", {"customer_id": OTHER_CUSTOMER}),
    ]:
        denied = client.request(method, path, json=body, headers=own)
        assert denied.status_code == 404, (path, denied.text)
    again = client.post(
        f"/v1/customers/{OTHER_CUSTOMER}/events", json={"channel": "wecom"}, headers=other
    )
    assert again.status_code == 202
    deadline, seen = time.monotonic() + 20, None  # applied by the keyed stream consumer
    while time.monotonic() < deadline:
        answer = client.get(f"/v1/customers/{OTHER_CUSTOMER}/features", headers=other)
        seen = answer.json().get("features", {}).get("messages_1d")
        if seen == 2:
            break
        time.sleep(0.1)
    assert seen == 2


def eval_replace(body: Any, old: str, new: str) -> Any:
    if isinstance(body, dict):
        return {k: eval_replace(v, old, new) for k, v in body.items()}
    if isinstance(body, list):
        return [eval_replace(v, old, new) for v in body]
    return new if body == old else body


def test_every_non_public_route_needs_credentials(client: httpx.Client) -> None:
    """Deny by default, from the served OpenAPI: no credential -> 401 on every route."""
    anonymous = httpx.Client(base_url=str(client.base_url), timeout=30)
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    with anonymous:
        for path, methods in paths.items():
            if path in PUBLIC:
                continue
            concrete = path.replace("{channel}", "web_chat")
            for name in (
                "customer_id",
                "ticket_id",
                "agent_id",
                "session_id",
                "key_id",
                "sender_id",
            ):
                concrete = concrete.replace(f"{{{name}}}", "x1")
            for method in methods:
                if path == "/v1/channels/wecom/messages" and method == "get":
                    continue  # the vendor's URL check: its signature is the credential
                if path == "/v1/marketing/receipts/{channel}":
                    continue  # vendor receipts: signed as their webhooks (test_marketing_work)
                answer = anonymous.request(method.upper(), concrete, json={})
                assert answer.status_code == 401, (method, path, answer.text)
                assert "missing credentials" in answer.json()["detail"]
                assert answer.headers["www-authenticate"].startswith("Bearer")
                checked += 1
        assert anonymous.get("/healthz").status_code == 200
    assert checked >= 28  # every model, customer, channel, desk, audit and admin route


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        ({"X-API-Key": "scrm_nope_nope"}, 401, "unknown API key"),
        ({"X-API-Key": "not-a-key"}, 401, "malformed API key"),
        ({"Authorization": "Bearer abc.def"}, 401, "malformed token"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401, "unsupported Authorization scheme"),
        ({"Authorization": "Bearer"}, 401, "malformed Authorization header"),
        ({"X-API-Key": "scrm_" + "x" * 9000}, 431, "X-API-Key header is 9005 bytes"),
        ({"Authorization": "Bearer " + "x" * 9000}, 431, "Authorization header is 9007 bytes"),
    ],
)
def test_bad_credentials_get_a_readable_error(client, header, status, message) -> None:
    answer = httpx.post(f"{client.base_url}/v1/intent", json=TEXT, headers=header, timeout=30)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]


def token(role: str, secret: str = TEST_JWT_SECRET, **claims: Any) -> str:
    payload = {
        "sub": f"jwt-{role}",
        "tenant": "default",
        "role": role,
        "clearance": 3,
        "exp": int(time.time()) + 300,
        "iss": "scrm-platform",
        "aud": "scrm-gateway",
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def test_jwt_hs256_is_accepted_and_checked(client: httpx.Client, world: World) -> None:
    url = f"{client.base_url}/v1/intent"
    ok = httpx.post(url, json=TEXT, headers={"Authorization": f"Bearer {token('marketer')}"})
    assert ok.status_code == 200 and ok.json()["model_name"] == "intent"
    forged = token("marketer", secret="another-secret-of-at-least-32-bytes!!")
    for bad, message in [
        (forged, "token signature does not verify"),
        (token("marketer", exp=int(time.time()) - 120), "token expired"),
        (token("customer"), "predict denied"),
        (
            jwt.encode({"sub": "x", "role": "admin"}, TEST_JWT_SECRET, algorithm="HS256"),
            "token lacks the 'exp' claim",
        ),
        (token("boss"), "credential attributes invalid: role"),
        (token("marketer", aud="another-service"), "token audience not accepted"),
        (token("marketer", iss="someone-else"), "token issuer not accepted"),
    ]:
        answer = httpx.post(url, json=TEXT, headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code in (401, 403) and message in answer.json()["detail"], (
            message,
            answer.text,
        )


def test_rate_limit_and_size_limits(client: httpx.Client, pipeline_workspace: Path) -> None:
    limited = issue_key(pipeline_workspace, f"slow-{RUN}", "default", "admin", clearance=3)
    from concurrent.futures import ThreadPoolExecutor

    with (
        httpx.Client(base_url=str(client.base_url), headers={"X-API-Key": limited}) as http,
        ThreadPoolExecutor(16) as pool,
    ):  # 60 at once against the default limit (5/s, burst 20): a slow machine cannot refill
        answers = list(pool.map(lambda _: http.get("/v1/admin/keys"), range(60)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {200, 429} and 20 <= statuses.count(200) < 40, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert "rate limit: 5 requests/s (burst 20)" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    big = client.post(
        "/v1/intent",
        content=b'{"text": "' + b"x" * 70_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413 and "over the limit of 65536 bytes" in big.json()["detail"]
    long_text = client.post("/v1/intent", json={"text": "长" * 600})
    assert long_text.status_code == 413 and "at most 512" in long_text.json()["detail"]
    batch = client.post("/v1/intent/batch", json={"texts": ["好"] * 65})
    assert batch.status_code == 422 and "at most 64" in batch.json()["detail"]


def test_masking_follows_the_callers_attributes(client, world, pipeline_workspace) -> None:
    """An agent sees 138****5678; a supervisor on fraud review sees more; unmasking is
    allowed only on fraud review and is audited; a marketer-level caller sees nothing."""
    path = f"/v1/agent/tickets/{world.ticket}"
    holder = ticket_holder(client, world.ticket)
    own = world.keys[("agent", "default")]
    if holder not in (None, MATRIX_AGENT):  # a colleague took it: read it as them
        clearance = CLEARANCE["agent"]
        own = issue_key(pipeline_workspace, holder, "default", "agent", clearance=clearance)
    agent = client.get(path, headers={"X-API-Key": own})
    assert agent.status_code == 200, agent.text
    transcript = str(agent.json()["transcript"])
    if agents_on_duty():
        assert PHONE not in transcript and "138****5678" in transcript
    else:  # deny-agents-off-hours: the ticket, not the conversation
        assert agent.json()["transcript"] == []
    reviewer = issue_key(
        pipeline_workspace,
        f"fraud-{RUN}",
        "default",
        "supervisor",
        clearance=3,
        purpose="fraud_review",
    )
    review = client.get(path, headers={"X-API-Key": reviewer})
    assert review.status_code == 200 and PHONE in str(review.json()["transcript"])
    refused = client.get(
        f"{path}?unmask=true", headers={"X-API-Key": world.keys[("supervisor", "default")]}
    )
    assert refused.status_code == 403 and "pii.unmask denied" in refused.json()["detail"]
    raw = client.get(f"{path}?unmask=true", headers={"X-API-Key": reviewer})
    assert raw.status_code == 200 and PHONE in str(raw.json()["transcript"])
    audit = client.get(
        "/v1/audit",
        params={"action": "pii.unmask", "resource_id": world.ticket},
        headers={"X-API-Key": reviewer},
    ).json()
    assert {(e["actor"], e["effect"]) for e in audit} >= {
        (f"fraud-{RUN}", "permit"),
        ("supervisor-default", "deny"),
    }
    assert all(e["fields"] == ["transcript"] for e in audit)


def test_audit_trail_is_per_tenant(client: httpx.Client, world: World) -> None:
    """Supervisors of tenant other see their tenant's entries only, including the denied
    attempts of tenant default's callers on their customer."""
    theirs = client.get(
        "/v1/audit",
        params={"limit": 1000},
        headers={"X-API-Key": world.keys[("supervisor", "other")]},
    ).json()
    assert theirs and all(
        e["resource_tenant"] == "other"
        or (e["resource_tenant"] is None and e["actor_tenant"] == "other")
        for e in theirs
    )
    ours = client.get(
        "/v1/audit",
        params={"limit": 1000, "effect": "deny"},
        headers={"X-API-Key": world.keys[("admin", "default")]},
    ).json()
    assert any(e["actor_tenant"] == "other" and e["rule"] == "tenant-isolation" for e in ours)


def test_agents_act_only_as_themselves(client: httpx.Client, world: World) -> None:
    agent = {"X-API-Key": world.keys[("agent", "default")]}
    someone = client.post(
        f"/v1/agent/tickets/{world.ticket}/accept", json={"agent_id": "someone-else"}, headers=agent
    )
    assert someone.status_code == 403 and "agents act as themselves" in someone.json()["detail"]


def test_web_chat_customers_write_as_themselves(client: httpx.Client, world: World) -> None:
    customer = headers(world, "customer", "default")
    posing = client.post(
        "/v1/channels/web_chat/messages",
        json={"customer_id": world.retail, "text": "余额"},
        headers=customer,
    )
    assert posing.status_code == 403 and "its own customer only" in posing.json()["detail"]


def test_web_chat_socket_needs_a_credential(client: httpx.Client, world: World) -> None:
    from websockets.sync.client import connect

    base = str(client.base_url).replace("http://", "ws://") + "/v1/channels/web_chat/ws"
    chat = world.chats[("customer", "default")]
    with connect(f"{base}?session_token={chat}") as socket:
        with pytest.raises(Exception) as closed:
            socket.recv(timeout=10)
        assert "missing credentials" in str(closed.value)
    key = world.keys[("customer", "default")]
    with connect(f"{base}?session_token={chat}&api_key={key}") as socket:
        first = socket.recv(timeout=10)
        assert '"type":"session"' in first.replace(" ", "")
    with connect(
        f"{base}?session_token={chat}",
        additional_headers={"X-API-Key": world.keys[("marketer", "default")]},
    ) as socket:
        with pytest.raises(Exception) as refused:
            socket.recv(timeout=10)
        assert "chat.send denied" in str(refused.value)


def test_prediction_log_carries_the_callers_tenant(client, world, pipeline_workspace) -> None:
    import sqlite3

    rid = f"tenant-{RUN}"
    text = f"我的手机号是{PHONE}，邮箱 zhang.san@example.com"
    answer = client.post(
        "/v1/intent",
        json={"text": text},
        headers={"X-API-Key": world.keys[("data_scientist", "other")], "x-request-id": rid},
    )
    assert answer.status_code == 200
    db = pipeline_workspace / "data/predictions/predictions.db"
    deadline = time.monotonic() + 15
    rows: list = []
    while time.monotonic() < deadline and not rows:
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT tenant, input FROM predictions WHERE request_id = ?", (rid,)
            ).fetchall()
        time.sleep(0.3)
    assert rows and rows[0][0] == "other"
    assert (
        PHONE not in rows[0][1]
        and "zhang.san@" not in rows[0][1]
        and "z***@example.com" in rows[0][1]
    )


def test_gateway_behind_the_tls_front_speaks_tls13_only(client, service_key, tmp_path) -> None:
    """`scrm serve --tls-cert/--tls-key` = Serve on loopback + this front (the session's
    gateway stands in for the loopback Serve: same front, no second Ray)."""
    import ssl

    from privacy.tls import TlsFront
    from tests.channel_setup import free_port, tls_files
    from tests.integration.test_privacy_tls import client_context

    cert_file, key_file = tls_files(tmp_path)
    upstream = ("127.0.0.1", int(str(client.base_url).rsplit(":", 1)[1]))
    front = TlsFront(cert_file, key_file, "127.0.0.1", free_port(), upstream)
    front.start()
    try:
        tls13 = client_context(cert_file, ssl.TLSVersion.TLSv1_3)
        url = f"https://localhost:{front.port}"
        with httpx.Client(verify=tls13, timeout=30) as https:
            assert https.get(f"{url}/healthz").json() == {"status": "ok"}
            refused = https.post(f"{url}/v1/intent", json=TEXT)
            assert refused.status_code == 401
            answer = https.post(f"{url}/v1/intent", json=TEXT, headers={"X-API-Key": service_key})
            assert answer.status_code == 200 and answer.json()["model_name"] == "intent"
        tls12 = client_context(cert_file, ssl.TLSVersion.TLSv1_2)
        with httpx.Client(verify=tls12, timeout=10) as old, pytest.raises(httpx.ConnectError):
            old.get(f"{url}/healthz")
    finally:
        front.stop()
