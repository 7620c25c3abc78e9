"""Schemathesis and hostile-input machinery for fuzzing the whole HTTP API (issue 26).

tests/unit/test_api_fuzz.py builds the application and drives these: `fuzz_operation` sends
generated requests (positive and negative) with `CHECKS`, `hostile_requests` derives hostile
variants of one valid request (every text leaf of the body, every query and path parameter),
`detail_problem` says why an error answer is not one a person can read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)

from privacy.auth import ROLES

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
# negative_data_rejection: a request the schema forbids is refused (4xx), never accepted.
CHECKS = [response_schema_conformance, negative_data_rejection, readable_detail]


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


def record(test: str, **figures: Any) -> None:
    """Figures of one run into $SCRM_FUZZ_RESULTS (`make fuzz`: bench/results/api_fuzz.json)."""
    target = os.environ.get("SCRM_FUZZ_RESULTS")
    if not target:
        return
    path = Path(target)
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[test] = {"examples_per_route_and_role": EXAMPLES, **figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
