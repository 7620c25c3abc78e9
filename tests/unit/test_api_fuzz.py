"""Property-based fuzzing of the whole HTTP API (issue 26, deliverable 1).

schemathesis reads the OpenAPI of the application exactly as a gateway replica builds it
(crm/parts.py + crm/api.py, embedded stores in a tmp dir, in-process fakes of the model and
Conversation deployments) and sends generated requests in-process over ASGI, no server, with the
credentials of every role of privacy/auth.py and with none. Every answer must be below 500,
every 4xx must carry a readable `detail`, and every answer must match the schema the OpenAPI
documents for it. A second pass puts hostile values (lone surrogates, NUL, RTL marks, 1 MB of
emoji, deep nesting, numbers as strings) into every text field, query and path parameter.

Bounded: SCRM_FUZZ_EXAMPLES examples per route and role (default 2 positive + 1 negative), no
deadline; failures are collected over the whole run so one report lists them all.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import response_schema_conformance

from crm.api import build_api
from crm.parts import build_parts
from privacy.auth import ROLES
from tests.support import (
    FakeFeatures,
    LocalConversation,
    application_settings,
    issue_test_key,
    open_web_chat,
)
from tests.unit.test_application import CUSTOMER, models
from tests.unit.test_dialogue import intent, make_manager

EXAMPLES = int(os.environ.get("SCRM_FUZZ_EXAMPLES", "2"))
DEEPER = 5  # times more examples on routes whose path names a real object
CALLERS = (*ROLES, "anonymous")
EMOJI_MB = "😀" * (1 << 18)  # 4 bytes each: 1 MiB of UTF-8
DEEP = "[" * 5000 + "]" * 5000
HOSTILE_TEXT = {
    "lone surrogate": "a\ud800b",
    "NUL": "a\x00b",
    "RTL marks": "\u202eabc\u200f\u061c",
    "1 MB of emoji": EMOJI_MB,
    "number as string": "12345",
    "float overflow as string": "1e309",
}


def readable_detail(ctx: Any, response: Any, case: Any) -> bool | None:
    """No server error, and every 4xx answers JSON with a `detail` a person can read: a
    non-empty string, or a list of validation errors each with a `msg`. The one 5xx allowed is a
    503 with a reason (a part this deployment does not configure, e.g. WeCom without secrets)."""
    status = response.status_code
    if status >= 500 and not (status == 503 and not detail_problem(status, response.content)):
        raise AssertionError(f"server error {status}: {response.content[:300]!r}")
    if not 400 <= status < 500:
        return None
    problem = detail_problem(response.status_code, response.content)
    if problem:
        raise AssertionError(problem)
    return None


schemathesis.check(readable_detail)
CHECKS = [response_schema_conformance, readable_detail]


def detail_problem(status: int, content: bytes) -> str | None:
    """Why a 4xx body is not a readable error (None: it is)."""
    try:
        body = json.loads(content)
    except ValueError:
        return f"{status} without a JSON body: {content[:120]!r}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail.strip():
        return None
    if (
        isinstance(detail, list)
        and detail
        and all(isinstance(d, dict) and d.get("msg") for d in detail)
    ):
        return None
    return f"{status} without a readable detail: {str(body)[:200]}"


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


def operations(schema: Any) -> list[Any]:
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) > 40, "the whole application's OpenAPI, not a part of it"
    return found


def fuzz_operation(
    operation: Any,
    client: Any,
    headers: dict,
    failures: dict,
    path: dict | None = None,
    examples: int = EXAMPLES,
) -> int:
    """Positive and negative examples of one operation for one caller; returns how many ran."""
    ran = [0]

    def one(case: Any) -> None:
        ran[0] += 1
        try:
            case.call_and_validate(session=client, headers=headers, checks=CHECKS)
        except (Exception, FailureGroup) as error:  # keep going: report every failing route
            failures.setdefault(operation.label, str(error)[:1500])

    negative = max(1, examples // 2)
    for mode, count in ((GenerationMode.POSITIVE, examples), (GenerationMode.NEGATIVE, negative)):
        run = settings(
            max_examples=count,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=["explicit", "generate"],
        )(given(case=operation.as_strategy(mode, path_parameters=path))(one))
        try:
            run()
        except Unsatisfiable:  # nothing to get wrong (no parameters, no body): no negatives
            assert mode == GenerationMode.NEGATIVE, operation.label
    return ran[0]


def test_every_route_and_role_answers_below_500_with_a_readable_detail(fuzzed) -> None:
    schema, client, keys = fuzzed
    failures: dict[str, str] = {}
    started, sent = time.monotonic(), 0
    for operation in operations(schema):
        for caller in CALLERS:
            sent += fuzz_operation(operation, client, keys[caller], failures)
    elapsed = time.monotonic() - started
    print(f"fuzzed {sent} requests over {len(operations(schema))} routes in {elapsed:.0f} s")
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


def first_case(operation: Any, path: dict | None = None) -> Any:
    """One schema-valid request of `operation` (deterministic), to mutate field by field."""
    found: list[Any] = []

    @settings(max_examples=1, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=["explicit", "generate"])  # fmt: skip
    @given(case=operation.as_strategy(GenerationMode.POSITIVE, path_parameters=path))
    def take(case: Any) -> None:
        found.append(case)

    take()
    return found[0]


def leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, value) of every scalar in a JSON value, breadth first."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, (*path, i))]
    return [(path, value)]


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def body_mutations(body: Any) -> list[tuple[str, bytes]]:
    """Hostile bodies from a valid one: each text leaf gets each hostile string (lone surrogates
    both as a JSON escape and as raw bytes), each number a string, a leaf nested 5000 deep."""
    out = [("deeply nested body", DEEP.encode()), ("number as body", b"12")]
    for path, leaf in leaves(body)[:4]:
        where = "/".join(map(str, path)) or "body"
        if isinstance(leaf, str) or leaf is None:
            for name, text in HOSTILE_TEXT.items():
                out.append((f"{where}: {name}", json.dumps(replaced(body, path, text)).encode()))
            raw = json.dumps(replaced(body, path, "a\ud800b"), ensure_ascii=False)
            out.append((f"{where}: raw surrogate bytes", raw.encode("utf-8", "surrogatepass")))
            out.append((f"{where}: number", json.dumps(replaced(body, path, 12345)).encode()))
        elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
            for text in (str(leaf), "NaN", "1e309"):
                out.append((f"{where}: {text!r}", json.dumps(replaced(body, path, text)).encode()))
        marked = json.dumps(replaced(body, path, "__nested__"))
        nested = marked.replace('"__nested__"', "[" * 2000 + '"x"' + "]" * 2000)
        out.append((f"{where}: nested 2000 deep", nested.encode()))
    return out


def url_text(text: str) -> str:
    """Percent-encoded, lone surrogates as their (invalid) UTF-8 bytes, as a hostile client
    would send them; long values cut to 8 KB of URL."""
    return quote(text[:2000].encode("utf-8", "surrogatepass"), safe="")


def hostile_requests(case: Any) -> list[tuple[str, str, bytes | None]]:
    """(what, url, body) of every hostile variant of `case`: path, query and body fields."""
    path_params = {k: str(v) for k, v in (case.path_parameters or {}).items()}
    query = {k: str(v) for k, v in (case.query or {}).items()}

    def url(params: dict[str, str], query_params: dict[str, str]) -> str:
        path = case.operation.path
        for name, value in params.items():
            path = path.replace("{" + name + "}", value)
        pairs = "&".join(f"{quote(k)}={v}" for k, v in query_params.items())
        return path + (f"?{pairs}" if pairs else "")

    safe = {k: quote(v, safe="") for k, v in path_params.items()}
    safe_query = {k: quote(v, safe="") for k, v in query.items()}
    given_body = case.body if isinstance(case.body, dict | list | str | int | float) else None
    body = json.dumps(given_body).encode() if given_body is not None else None
    out: list[tuple[str, str, bytes | None]] = []
    for name, text in HOSTILE_TEXT.items():
        for param in path_params:
            out.append((f"path {param}: {name}", url({**safe, param: url_text(text)}, safe_query),
                        body))  # fmt: skip
        for param in query:
            out.append((f"query {param}: {name}", url(safe, {**safe_query, param: url_text(text)}),
                        body))  # fmt: skip
    if case.operation.body:
        for what, hostile in body_mutations(given_body if given_body is not None else {}):
            out.append((what, url(safe, safe_query), hostile))
    return out


def must_refuse(method: str, what: str) -> bool:
    """A write route never stores a NUL or a lone surrogate, nor an 8 KB id from its path."""
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return False
    return any(bad in what for bad in ("NUL", "surrogate")) or (
        what.startswith("path") and "emoji" in what
    )


def first_admitted(client: Any, case: Any, keys: dict) -> dict:
    """The credentials of the first role the route lets through (hostile input should reach
    the route, not stop at 403), supervisor's when none does."""
    if case.operation.path == "/v1/channels/{channel}/messages":
        return CHAT  # the web chat takes its session token (vendors sign; they answer 401)
    for role in ("admin", "supervisor", "marketer", "agent", "ops", "data_scientist", "customer"):
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
    assert not failures, "\n".join(failures[:60])


def test_routes_on_real_objects_answer_below_500_with_a_readable_detail(fuzzed) -> None:
    """The same checks with the path naming objects that exist, for the first role admitted,
    so bodies and queries are fuzzed past the 404 of an unknown id."""
    schema, client, keys = fuzzed
    failures: dict[str, str] = {}
    for operation in operations(schema):
        names = [p.name for p in operation.path_parameters]
        if not names or not all(name in KNOWN for name in names):
            continue
        path = {name: KNOWN[name] for name in names}
        headers = first_admitted(client, first_case(operation, path), keys)
        fuzz_operation(operation, client, headers, failures, path, EXAMPLES * DEEPER)
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
