"""Token bucket arithmetic, the per-address dependency and the streamed-body limit."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from privacy.limits import BodySizeLimit, TokenBucket, rate_limited


def test_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] += 0.5
    assert bucket.take("a") == 0.0
    assert bucket.take("b") == 0.0  # its own bucket


def test_unauthenticated_route_limited_per_address_and_streamed_body_refused() -> None:
    now = [0.0]
    app = FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=100)
    limited = rate_limited(TokenBucket(1.0, 2, clock=lambda: now[0]))

    @app.post("/webhook", dependencies=[Depends(limited)])
    async def webhook(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    with TestClient(app) as client:
        codes = [client.post("/webhook", content=b"x").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        now[0] += 10

        def chunks():  # no Content-Length: the middleware counts what arrives
            yield b"a" * 60
            yield b"b" * 60

        streamed = client.post("/webhook", content=chunks())
        assert streamed.status_code == 413 and "100 bytes" in streamed.json()["detail"]
        assert client.post("/webhook", content=b"y" * 100).json() == {"bytes": 100}
        declared = client.post("/webhook", content=b"z" * 101)
        assert declared.status_code == 413
