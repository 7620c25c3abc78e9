"""The guard on a small FastAPI app: route x role x own/other tenant, object-level 404,
masking by caller, audited unmasking, 401/429/413 on the wire."""

# No `from __future__ import annotations`: FastAPI must see the real Annotated types of routes
# defined inside a function.

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import jwt
import pytest
from fastapi import Body, Depends, FastAPI, Request
from fastapi.testclient import TestClient

from privacy.abac import Resource, load_policy
from privacy.audit import AuditLog
from privacy.auth import ROLES, Authenticator, JwtVerifier
from privacy.crypto import Keyring, Vault
from privacy.guard import Access, Guard
from privacy.limits import BodySizeLimit, TokenBucket, check_batch
from privacy.profiles import ProfileStore
from privacy.responses import MaskJsonResponses
from privacy.routes import audit_router
from privacy.sessions import SessionTokens

SECRET = "k" * 48
POLICY = Path(__file__).resolve().parents[2] / "privacy" / "policies.yaml"
ZONE = ZoneInfo("Asia/Shanghai")
PHONE, ID_NUMBER, CARD = "13812345678", "11010519491231002X", "6222020200000000006"
CUSTOMERS = {  # customer id -> (tenant, owning login)
    "c-a1": ("acme", "u-a1"),
    "c-a2": ("acme", "u-a2"),
    "c-g1": ("globex", "u-g1"),
}
SESSIONS = SessionTokens({"t1": b"s" * 32}, "t1")
CONVERSATIONS = {"conv-a1": "c-a1", "conv-g1": "c-g1"}
CLEARANCE = {"customer": 2, "agent": 2, "supervisor": 3, "marketer": 1, "data_scientist": 1,
             "admin": 3, "ops": 0, "teacher": 3}  # fmt: skip


def token(role: str, tenant: str = "acme", sub: str | None = None, **claims) -> dict:
    payload = {
        "sub": sub or ("u-a1" if role == "customer" else f"{role}-1"),
        "tenant": tenant,
        "role": role,
        "clearance": CLEARANCE[role],
        "exp": int(time.time()) + 600,
        **claims,
    }
    headers = {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}
    if role != "customer":
        return headers
    # The channel is a verified chat session's (server-issued token), never a client header.
    chat, _ = SESSIONS.issue(tenant, payload["sub"], payload["sub"], channel="wecom")
    return headers | {"X-Chat-Session": chat}


def customer(request: Request) -> Resource | None:
    found = CUSTOMERS.get(request.path_params["customer_id"])
    if found is None:
        return None
    cid = request.path_params["customer_id"]
    return Resource("customer", cid, found[0], owner=found[1], sensitivity=2)


def conversation(request: Request) -> Resource | None:
    cid = CONVERSATIONS.get(request.path_params["conversation_id"])
    if cid is None:
        return None
    tenant, owner = CUSTOMERS[cid]
    return Resource("conversation", request.path_params["conversation_id"], tenant, owner, 2)


def model(request: Request) -> Resource:
    p = request.path_params
    return Resource("model", p["name"], p["tenant"], sensitivity=0)


def tenant_scope(request: Request) -> Resource:
    return Resource("tenant", None, request.path_params["tenant"])


def add_customer_routes(app: FastAPI, guard: Guard, profiles: ProfileStore) -> None:
    @app.get("/v1/customers/{customer_id}/forgot-to-mask")
    def forgot(access: Annotated[Access, Depends(guard.require("customer.read", customer))]):
        return profiles.get(access.resource.tenant, access.resource.id)

    @app.get("/public/echo")
    def echo(text: str) -> dict:
        return {"text": text}

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True}

    @app.get("/v1/customers/{customer_id}/profile")
    def read_profile(access: Annotated[Access, Depends(guard.require("customer.read", customer))]):
        r = access.resource
        return access.mask({"customer_id": r.id, **profiles.get(r.tenant, r.id)})

    @app.get("/v1/customers/{customer_id}/profile/unmasked")
    def unmasked(access: Annotated[Access, Depends(guard.require("customer.read", customer))]):
        r = access.resource
        return guard.reveal(access, profiles.get(r.tenant, r.id), ["phone"])

    @app.put("/v1/customers/{customer_id}/profile")
    def write_profile(
        fields: Annotated[dict[str, str], Body()],
        access: Annotated[Access, Depends(guard.require("customer.write", customer))],
    ):
        check_batch(fields, 10, "fields")
        profiles.put(access.resource.tenant, access.resource.id, fields)
        return {"updated": sorted(fields)}


def add_other_routes(app: FastAPI, guard: Guard, audit: AuditLog) -> None:
    reads_conversation = guard.require("conversation.read", conversation)

    @app.get("/v1/conversations/{conversation_id}")
    def read_conversation(access: Annotated[Access, Depends(reads_conversation)]):
        return access.mask({"id": access.resource.id, "text": f"我的电话是{PHONE}"})

    scores = guard.require("predict", customer, audit=False)

    @app.post("/v1/customers/{customer_id}/predict")
    def predict(access: Annotated[Access, Depends(scores)]):
        return {"customer_id": access.resource.id, "churn": 0.1}

    @app.post("/admin/tenants/{tenant}/models/{name}/promote")
    def promote(access: Annotated[Access, Depends(guard.require("model.promote", model))]):
        return {"promoted": access.resource.id}

    @app.post("/admin/tenants/{tenant}/keys")
    def issue_key(access: Annotated[Access, Depends(guard.require("keys.admin", tenant_scope))]):
        return {"issued": True}

    app.include_router(audit_router(guard, audit))

    @app.get("/v1/tenants/{tenant}/audit")
    def read_audit(access: Annotated[Access, Depends(guard.require("audit.read", tenant_scope))]):
        return audit.query(access.resource.tenant, limit=50)


def build_app(
    tmp: Path, hour: int = 10, limiter: TokenBucket | None = None, mask_all: bool = False
):
    vault = Vault(Keyring.generate(), tmp / "data_keys.db")
    profiles = ProfileStore(vault, tmp / "personal.db")
    for customer, (tenant, _) in CUSTOMERS.items():
        profiles.put(tenant, customer, {"name": "张三", "phone": PHONE, "id_number": ID_NUMBER,
                                        "note": f"卡号 {CARD}"})  # fmt: skip
    audit = AuditLog(tmp / "audit.db")
    guard = Guard(
        load_policy(POLICY),
        Authenticator(JwtVerifier(hs256_secret=SECRET)),
        audit=audit,
        limiter=limiter,
        clock=lambda: datetime(2026, 11, 27, hour, 0, tzinfo=ZONE),
    )
    guard.sessions = SESSIONS

    app = FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=2048)
    if mask_all:
        app.add_middleware(MaskJsonResponses, default_level="strict")

    add_customer_routes(app, guard, profiles)
    add_other_routes(app, guard, audit)
    return app, profiles, audit


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    app, profiles, audit = build_app(tmp_path_factory.mktemp("privacy"))
    with TestClient(app) as client:
        yield client, profiles, audit


# route name -> (method, path for own tenant, path for the other tenant, json body)
ROUTES = {
    "read profile": ("GET", "/v1/customers/c-a1/profile", "/v1/customers/c-g1/profile", None),
    "write profile": ("PUT", "/v1/customers/c-a1/profile", "/v1/customers/c-g1/profile",
                      {"email": "new@example.com"}),
    "read conversation": ("GET", "/v1/conversations/conv-a1", "/v1/conversations/conv-g1", None),
    "predict": ("POST", "/v1/customers/c-a1/predict", "/v1/customers/c-g1/predict", None),
    "promote model": ("POST", "/admin/tenants/acme/models/churn/promote",
                      "/admin/tenants/globex/models/churn/promote", None),
    "admin keys": ("POST", "/admin/tenants/acme/keys", "/admin/tenants/globex/keys", None),
    "read audit": ("GET", "/v1/tenants/acme/audit", "/v1/tenants/globex/audit", None),
}  # fmt: skip
ALLOWED_OWN = {
    "customer": {"read profile", "write profile", "read conversation"},
    "agent": {"read profile", "read conversation", "predict"},
    "supervisor": {"read profile", "write profile", "read conversation", "predict", "read audit"},
    "marketer": {"predict"},
    "data_scientist": {"predict", "promote model"},
    "admin": {"promote model", "admin keys", "read audit"},
    "ops": set(),  # alerts only (issue 20): none of these routes
    "teacher": set(),  # students' mastery only (issue 27): none of these routes
}
OBJECT_ROUTES = {"read profile", "write profile", "read conversation", "predict", "promote model"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(ROUTES))
def test_route_role_tenant_matrix(world, role, route) -> None:
    client, profiles, _ = world
    method, own, other, body = ROUTES[route]
    before = profiles.get("globex", "c-g1")
    mine = client.request(method, own, json=body, headers=token(role))
    expected = 200 if route in ALLOWED_OWN[role] else 403
    assert mine.status_code == expected, mine.text
    theirs = client.request(method, other, json=body, headers=token(role))
    # another tenant's object is indistinguishable from a missing one; a tenant scope is 403
    assert theirs.status_code == (404 if route in OBJECT_ROUTES else 403), theirs.text
    assert "c-g1" not in theirs.text and PHONE[-4:] not in theirs.text
    assert profiles.get("globex", "c-g1") == before  # no cross-tenant write took effect


def test_the_matrix_covers_every_role_with_an_allowed_route() -> None:
    assert set(ALLOWED_OWN) == set(ROLES)
    assert set().union(*ALLOWED_OWN.values()) == set(ROUTES)


def test_unknown_and_foreign_customers_answer_the_same(world) -> None:
    client, _, _ = world
    foreign = client.get("/v1/customers/c-g1/profile", headers=token("supervisor"))
    unknown = client.get("/v1/customers/c-zz/profile", headers=token("supervisor"))
    assert (foreign.status_code, foreign.json()) == (unknown.status_code, unknown.json())
    # a customer asking for another customer of the same tenant gets 404 too
    other = client.get("/v1/customers/c-a2/profile", headers=token("customer"))
    assert other.status_code == 404


def test_every_cross_tenant_attempt_is_audited_as_a_deny(world) -> None:
    client, _, audit = world
    client.get("/v1/customers/c-g1/profile", headers=token("agent"))
    denied = audit.query("globex", action="customer.read", effect="deny")
    assert denied and denied[0]["actor_tenant"] == "acme"
    assert denied[0]["rule"] == "tenant-isolation"
    assert audit.verify().ok


def test_masking_follows_the_caller(world) -> None:
    client, _, _ = world
    agent = client.get("/v1/customers/c-a1/profile", headers=token("agent")).json()
    assert agent["phone"] == "138****5678"
    assert agent["name"] == "张*"
    assert agent["id_number"] == "110105********002X"
    assert CARD not in agent["note"] and agent["note"].endswith("0006")
    review = client.get(
        "/v1/customers/c-a1/profile", headers=token("supervisor", purpose="fraud_review")
    ).json()
    assert review["phone"] == PHONE  # fraud review sees the number
    assert review["id_number"] == "11010519491231****"  # but never the whole ID
    plain_supervisor = client.get("/v1/customers/c-a1/profile", headers=token("supervisor"))
    assert plain_supervisor.json()["phone"] == "138****5678"
    conversation = client.get("/v1/conversations/conv-a1", headers=token("agent")).json()
    assert conversation["text"] == "我的电话是138****5678"


def test_unmasking_needs_fraud_review_and_is_audited(world) -> None:
    client, _, audit = world
    refused = client.get("/v1/customers/c-a1/profile/unmasked", headers=token("supervisor"))
    assert refused.status_code == 403
    reviewer = token("supervisor", sub="sup-9", purpose="fraud_review")
    revealed = client.get("/v1/customers/c-a1/profile/unmasked", headers=reviewer)
    assert revealed.status_code == 200
    assert revealed.json()["phone"] == PHONE and revealed.json()["id_number"] != ID_NUMBER
    entries = audit.query("acme", actor="sup-9", action="pii.unmask")
    assert [(e["effect"], e["fields"], e["purpose"]) for e in entries] == [
        ("permit", ["phone"], "fraud_review")
    ]


def test_credentials_on_the_wire(world) -> None:
    client, _, _ = world
    assert client.get("/healthz").status_code == 200
    missing = client.get("/v1/customers/c-a1/profile")
    assert missing.status_code == 401 and "missing credentials" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    expired = jwt.encode(
        {"sub": "a", "tenant": "acme", "role": "agent", "exp": int(time.time()) - 999},
        SECRET,
        algorithm="HS256",
    )
    answer = client.get(
        "/v1/customers/c-a1/profile", headers={"Authorization": f"Bearer {expired}"}
    )
    assert (answer.status_code, answer.json()["detail"]) == (401, "token expired")
    huge = client.get(
        "/v1/customers/c-a1/profile", headers={"Authorization": "Bearer " + "x" * 9000}
    )
    assert huge.status_code == 431


def test_body_and_batch_limits(world) -> None:
    client, _, _ = world
    big = client.put(
        "/v1/customers/c-a1/profile", json={"note": "x" * 5000}, headers=token("supervisor")
    )
    assert big.status_code == 413 and "2048 bytes" in big.json()["detail"]
    many = client.put(
        "/v1/customers/c-a1/profile",
        json={f"f{i}": "v" for i in range(11)},
        headers=token("supervisor"),
    )
    assert many.status_code == 413 and "limit is 10" in many.json()["detail"]


def test_off_hours_agent_is_denied(tmp_path) -> None:
    app, _, _ = build_app(tmp_path, hour=3)
    with TestClient(app) as client:
        night = client.get("/v1/customers/c-a1/profile", headers=token("agent"))
        assert night.status_code == 403 and "service hours" in night.json()["detail"]
        assert client.get("/v1/customers/c-a1/profile", headers=token("supervisor")).is_success


def test_rate_limit_answers_429_per_subject(tmp_path) -> None:
    now = [0.0]
    app, _, _ = build_app(tmp_path, limiter=TokenBucket(1.0, 3, clock=lambda: now[0]))
    with TestClient(app) as client:
        codes = [client.post("/v1/customers/c-a1/predict", headers=token("agent")).status_code
                 for _ in range(4)]  # fmt: skip
        assert codes == [200, 200, 200, 429]
        limited = client.post("/v1/customers/c-a1/predict", headers=token("agent"))
        assert limited.headers["Retry-After"] == "1"
        # another subject has its own bucket
        other = token("agent", sub="agent-2")
        assert client.post("/v1/customers/c-a1/predict", headers=other).status_code == 200
        now[0] += 1.0
        assert client.post("/v1/customers/c-a1/predict", headers=token("agent")).is_success


def test_response_middleware_masks_what_a_route_forgot(tmp_path) -> None:
    app, _, _ = build_app(tmp_path, mask_all=True)
    with TestClient(app) as client:
        agent = client.get("/v1/customers/c-a1/forgot-to-mask", headers=token("agent"))
        assert agent.json()["phone"] == "138****5678" and PHONE not in agent.text
        assert int(agent.headers["content-length"]) == len(agent.content)
        masked = client.get("/v1/customers/c-a1/profile", headers=token("agent")).json()
        assert masked["phone"] == "138****5678"  # masking twice changes nothing
        reviewer = token("supervisor", purpose="fraud_review")
        revealed = client.get("/v1/customers/c-a1/profile/unmasked", headers=reviewer).json()
        assert revealed["phone"] == PHONE  # the audited reveal gets through
        public = client.get("/public/echo", params={"text": f"call {PHONE}"}).json()
        assert public == {"text": "call [PHONE]"}  # unguarded: default level
        assert client.get("/healthz").json() == {"ok": True}
    app, _, _ = build_app(tmp_path / "unmasked")
    with TestClient(app) as client:  # without the middleware the route's omission shows
        raw = client.get("/v1/customers/c-a1/forgot-to-mask", headers=token("agent"))
        assert raw.json()["phone"] == PHONE


def test_audit_routes_show_only_the_callers_tenant(world) -> None:
    client, _, _ = world
    client.get("/v1/customers/c-a1/profile", headers=token("agent", sub="agent-audit"))
    client.get("/v1/customers/c-g1/profile", headers=token("agent", sub="agent-audit"))
    acme = client.get("/v1/audit", params={"actor": "agent-audit"}, headers=token("supervisor"))
    assert acme.status_code == 200
    assert [(e["resource_id"], e["effect"]) for e in acme.json()] == [("c-a1", "permit")]
    globex = client.get(
        "/v1/audit", params={"actor": "agent-audit"}, headers=token("supervisor", "globex")
    )
    assert [(e["resource_id"], e["rule"]) for e in globex.json()] == [("c-g1", "tenant-isolation")]
    assert client.get("/v1/audit", headers=token("agent")).status_code == 403
    assert client.get("/v1/audit", params={"effect": "maybe"},
                      headers=token("supervisor")).status_code == 422  # fmt: skip
    assert client.get("/v1/audit/verify", headers=token("admin")).json()["ok"] is True


def test_guard_from_params_and_a_bad_policy_stops_start_up(tmp_path, monkeypatch) -> None:
    from privacy.abac import PolicyError
    from settings.privacy import PrivacyConfig

    monkeypatch.setenv("TEST_SCRM_JWT", SECRET)
    config = PrivacyConfig(
        policy_file=str(POLICY),
        api_keys_file="keys.json",
        audit_db="audit.db",
        jwt={"hs256_secret_env": "TEST_SCRM_JWT"},
        rate_limit={"rate_per_s": 1.0, "burst": 1},
    )
    guard = Guard.from_config(config, tmp_path)
    app = FastAPI()

    @app.get("/v1/tenants/{tenant}/ping")
    def ping(access: Annotated[Access, Depends(guard.require("predict"))]) -> dict:
        return {"tenant": access.subject.tenant}

    ours = {"iss": "scrm-platform", "aud": "scrm-gateway"}  # the configured issuer/audience
    with TestClient(app) as client:
        for claims, refused in [({"iss": "elsewhere", "aud": "scrm-gateway"}, "issuer"),
                                ({"iss": "scrm-platform", "aud": "elsewhere"}, "audience"),
                                ({"aud": "scrm-gateway"}, "'iss' claim")]:  # fmt: skip
            answer = client.get("/v1/tenants/x/ping", headers=token("agent", **claims))
            assert answer.status_code == 401 and refused in answer.json()["detail"]
        answer = client.get("/v1/tenants/x/ping", headers=token("agent", **ours))
        assert answer.json() == {"tenant": "acme"}
        assert client.get("/v1/tenants/x/ping", headers=token("agent", **ours)).status_code == 429
    assert guard.audit.query("acme")[0]["action"] == "predict"
    broken = tmp_path / "policies.yaml"
    broken.write_text(POLICY.read_text().replace("effect: deny", "effect: refuse", 1))
    line = POLICY.read_text().splitlines().index("    effect: deny") + 1
    with pytest.raises(
        PolicyError, match=rf"policies.yaml line {line}: rules\[0\].effect 'refuse'"
    ):
        Guard.from_config(config.model_copy(update={"policy_file": str(broken)}), tmp_path)


def test_a_route_without_a_guard_is_refused_at_import() -> None:
    """crm/api.py calls assert_guarded when it builds the app: a forgotten guard stops the
    replica before it serves."""
    from fastapi import APIRouter

    from crm.access import AccessControl, assert_guarded, unguarded_routes

    GUARD = AccessControl(None, None, "default", "default", 65536)  # type: ignore[arg-type]
    app = FastAPI()
    guarded = APIRouter(prefix="/v1/x", dependencies=[Depends(GUARD.require("predict"))])

    @guarded.get("/a")
    def a() -> dict:
        return {}

    @app.get("/v1/b", dependencies=[Depends(GUARD.require("customer.read"))])
    def b() -> dict:
        return {}

    @app.get("/healthz")
    def health() -> dict:
        return {}

    app.include_router(guarded)
    assert_guarded(app, {"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

    @app.post("/v1/forgot")
    def forgot() -> dict:
        return {}

    assert unguarded_routes(app, {"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc",
                                  "/openapi.json"}) == ["POST /v1/forgot"]  # fmt: skip
    with pytest.raises(RuntimeError, match="routes without an access check.*POST /v1/forgot"):
        assert_guarded(app, {"/healthz"})


def test_a_client_set_channel_header_grants_nothing(world) -> None:
    """`context.channel` comes from a verified session token only (issue 17): a customer
    sending `X-Channel: wecom` without one is refused their own profile."""
    client, _, _ = world
    headers = {k: v for k, v in token("customer").items() if k != "X-Chat-Session"}
    forged = client.get("/v1/customers/c-a1/profile", headers={**headers, "X-Channel": "wecom"})
    assert forged.status_code == 403, forged.text
    bad = client.get("/v1/customers/c-a1/profile", headers={**headers, "X-Chat-Session": "v1.x"})
    assert bad.status_code == 401
    other, _ = SESSIONS.issue("acme", "u-a2", "u-a2", channel="wecom")  # another's token
    stolen = client.get("/v1/customers/c-a1/profile", headers={**headers, "X-Chat-Session": other})
    assert stolen.status_code == 401
