"""HTTP plumbing every ingress of the platform shares: request ids, one-line errors, metrics.

A request carries `X-Request-Id` in (or gets one), every error answers `{"detail", "request_id"}`
with a `detail` a person can act on, and each request is counted in the ingress's `Metrics`.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the handlers.
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.metrics import Metrics
from serving.schemas import ErrorResponse

REQUEST_ID = re.compile(r"^[\w.:-]{1,64}$")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429, 503)
}


class ServingError(Exception):
    """A request answered with `status` and a message (plus the request id)."""

    def __init__(self, status: int, detail: str, retry_after_s: int | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s  # a 503 worth retrying says when (Retry-After)


def readable(errors: list[dict[str, Any]]) -> str:
    """Pydantic errors as one line: `field: problem; field: problem`."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":
            parts.append("body: not valid JSON")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where or 'body'}: {message}")
    return "; ".join(parts)


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or str(uuid.uuid4())


def plain_route(api: FastAPI, scope: dict) -> Any:
    """The Starlette route (docs, OpenAPI) a request matched: only FastAPI's own routes put
    themselves in the scope, and a label per path template keeps /metrics bounded."""
    from starlette.routing import Match

    for route in api.router.routes:
        if route.matches(scope)[0] == Match.FULL:
            return route
    return None


def install_http_basics(api: FastAPI, metrics: Metrics) -> None:
    """Request ids, the metrics of every request and the error handlers, on `api`."""
    document_errors(api)

    @api.middleware("http")
    async def observe(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        request.state.request_id = given if REQUEST_ID.match(given) else str(uuid.uuid4())
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route") or plain_route(api, request.scope)
        metrics.observe_request(
            getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - started
        )
        # No X-Request-Id header here: Serve's proxy adds it (the client's id, or its own).
        return response

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={"detail": readable(error.errors()), "request_id": request_id(request)},
        )

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """Every error carries the request id; 401s keep WWW-Authenticate, 429s Retry-After."""
        return JSONResponse(
            status_code=error.status_code,
            content={"detail": error.detail, "request_id": request_id(request)},
            headers=getattr(error, "headers", None),
        )

    @api.exception_handler(ServingError)
    async def serving_error(request: Request, error: ServingError) -> JSONResponse:
        retry = error.retry_after_s
        return JSONResponse(
            status_code=error.status,
            content={"detail": error.detail, "request_id": request_id(request)},
            headers={"Retry-After": str(retry)} if retry is not None else None,
        )


def document_errors(api: FastAPI) -> None:
    """The OpenAPI says what the handlers above answer: FastAPI documents every 422 as its own
    `HTTPValidationError` (a list of errors) while `validation_error` answers one readable line
    (`ErrorResponse`); a client generated from the schema, or schemathesis, would reject every
    real 422 (issue 26)."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = generate()
            components = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in components:
                components["HTTPValidationError"] = {
                    **ErrorResponse.model_json_schema(),
                    "title": "HTTPValidationError",
                }
        return api.openapi_schema  # type: ignore[return-value]

    api.openapi = openapi  # type: ignore[method-assign]
