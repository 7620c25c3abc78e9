"""Issue 17's mechanisms, one by one, without servers: session tokens, hostile input, the
replay cache, masking of obfuscated numbers, the prediction-log writer that survives a bad
row, the per-address limit, the gateway's own HTTP deadline, oversize chunked bodies."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from privacy.auth import AuthError
from privacy.hostile import HostileInput, HostileText, check_json_bytes, check_text, json_depth
from privacy.limits import AddressRateLimit, BodySizeLimit, RequestDeadline, TokenBucket
from privacy.masking import detect, mask_text
from privacy.redaction import PredictionRedaction
from privacy.replay import ReplayCache
from privacy.sessions import SessionTokens
from serving.prediction_log import PredictionLog

PHONE = "13812345678"


# --- session tokens ---------------------------------------------------------------------------
def test_session_token_binds_tenant_customer_principal_and_expires() -> None:
    now = [1000.0]
    tokens = SessionTokens({"k1": b"a" * 32}, "k1", ttl_s=60, clock=lambda: now[0])
    token, grant = tokens.issue("default", "C-1", "C-1")
    assert grant.session_id.startswith("ws-") and len(grant.session_id) == 35
    assert tokens.verify(token) == grant
    body = token.split(".")[2]
    forged = token.replace(body, body[:-2] + ("AA" if body[-2:] != "AA" else "BB"))
    with pytest.raises(AuthError, match="signature"):
        tokens.verify(forged)
    with pytest.raises(AuthError, match="unknown key"):
        SessionTokens({"k2": b"a" * 32}, "k2").verify(token)  # another key id
    other = SessionTokens({"k1": b"b" * 32}, "k1")  # same id, another secret
    with pytest.raises(AuthError, match="signature"):
        other.verify(token)
    now[0] += 61
    with pytest.raises(AuthError, match="expired"):
        tokens.verify(token)
    with pytest.raises(AuthError, match="required"):
        tokens.verify(None)


def test_session_tokens_from_the_keyring_verify_across_rotation() -> None:
    old = SessionTokens.from_masters({"k1": b"m" * 32}, "k1")
    token, _ = old.issue("default", "C-2", "C-2")
    rotated = SessionTokens.from_masters({"k1": b"m" * 32, "k2": b"n" * 32}, "k2")
    assert rotated.verify(token).customer_id == "C-2"
    assert rotated.issue("default", "C-2", "C-2")[0].split(".")[1] == "k2"


# --- hostile text -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"text": "a\\ud800b"}', 422, "lone surrogate"),
        (b'{"text": "a\\u0000b"}', 422, "control character"),
        (b'{"text": "\xff\xfe"}', 400, "UTF-8"),
        (b'{"a":' * 100 + b"1" + b"}" * 100, 422, "nested 100 deep"),
        (b'{"text": "ok", "\\udc00": 1}', 422, "key"),
    ],
)
def test_hostile_json_is_refused_with_a_reason(body: bytes, status: int, says: str) -> None:
    with pytest.raises(HostileText, match=says) as caught:
        check_json_bytes(body)
    assert caught.value.status == status


def test_ordinary_text_passes_and_depth_ignores_brackets_in_strings() -> None:
    assert check_json_bytes('{"text": "转账\\n[{[{" }'.encode()) == {"text": "转账\n[{[{"}
    assert json_depth('{"a": "]]]]"}') == 1 and json_depth("[[[]]]") == 3
    assert check_text("tab\tnewline\n") == "tab\tnewline\n"
    with pytest.raises(HostileText) as caught:
        check_text("x" * 11, max_chars=10)
    assert caught.value.status == 413


def hostile_app() -> TestClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"got": len(await request.body())}

    app.add_middleware(HostileInput, max_depth=8)
    app.add_middleware(BodySizeLimit, max_bytes=1000)
    return TestClient(app)


def test_hostile_input_middleware_answers_4xx_before_the_route() -> None:
    client = hostile_app()
    deep = client.post("/echo", content=b"[" * 50 + b"]" * 50,
                       headers={"content-type": "application/json"})  # fmt: skip
    assert deep.status_code == 422 and "nested 50 deep" in deep.json()["detail"]
    surrogate = client.post("/echo", content=b'{"t":"\\ud800"}')
    assert surrogate.status_code == 422
    assert client.post("/echo", json={"t": "fine"}).status_code == 200


def test_oversize_chunked_body_is_413_not_400() -> None:
    client = hostile_app()

    def chunks():
        for _ in range(20):
            yield b"x" * 100

    answer = client.post("/echo", content=chunks())
    assert answer.status_code == 413, answer.text


# --- replay cache -----------------------------------------------------------------------------
def test_replay_cache_admits_a_retry_never_another_body_and_forgets_after_the_window() -> None:
    now = [0.0]
    cache = ReplayCache(10, clock=lambda: now[0])
    assert cache.admit("sig", b"body")
    assert cache.admit("sig", b"body")  # the vendor's retry, answered from the intake log
    assert not cache.admit("sig", b"another body")
    now[0] = 11
    assert cache.admit("other", b"x") and cache.admit("sig", b"another body")


# --- masking of written variants -----------------------------------------------------------
@pytest.mark.parametrize(
    "written",
    [
        "138.1234.5678",
        "138 1234 5678",
        "138-1234-5678",
        "1 3 8 1 2 3 4 5 6 7 8",
        "１３８１２３４５６７８",
        "138\u200b1234\u200c5678",
        "1３8\u200d1２34 5６78",
        "138_1234_5678",
    ],
)
def test_obfuscated_mobile_numbers_are_masked(written: str) -> None:
    masked = mask_text(f"我的电话{written}谢谢", "standard")
    assert masked == "我的电话138****5678谢谢"
    assert mask_text(written, "strict") == "[PHONE]"


@pytest.mark.parametrize(
    ("written", "strict"),
    [
        ("110105.19491231.002X", "[ID]"),
        ("110105 1949 1231 002X", "[ID]"),
        ("１１０１０５１９４９１２３１００２Ｘ", "[ID]"),
        ("4111.1111.1111.1111", "[CARD]"),
        ("4111_1111_1111_1111", "[CARD]"),
        ("４１１１\u200b１１１１１１１１１１１１", "[CARD]"),
    ],
)
def test_obfuscated_id_and_card_numbers_are_masked(written: str, strict: str) -> None:
    assert mask_text(f"号码 {written} 完", "strict") == f"号码 {strict} 完"
    assert written[-2:] not in mask_text(written, "standard")[:3]


def test_decimals_versions_and_dates_are_not_personal_numbers() -> None:
    for text in ("0.9382716049382716", "ray 2.60.0", "2026.12.05", "9223372036854.78ms"):
        assert detect(text) == [], text


# --- the prediction-log writer ----------------------------------------------------------------
def test_prediction_log_writer_survives_a_lone_surrogate_and_a_dead_thread(tmp_path) -> None:
    path = tmp_path / "predictions.db"
    log = PredictionLog(path, PredictionRedaction())
    base = {"model": "intent", "registered_model": "intent", "variant": "champion",
            "model_version": "1", "output": {"label": "x"}, "latency_ms": 1.0}  # fmt: skip
    log.append([{**base, "request_id": "r1", "input": "a\ud800b\x00c"}])
    log.append([{**base, "request_id": "r2", "input": f"电话 {PHONE}"}])
    log.flush()
    assert log.writer.is_alive()
    # a writer that died anyway (a bug) is noticed and restarted by the next append
    log.pending.put(None)  # the stop signal ends the thread
    log.writer.join(5)
    assert not log.writer.is_alive()
    log.append([{**base, "request_id": "r3", "input": "hello"}])
    log.flush()
    assert log.writer_restarts == 1
    with sqlite3.connect(path) as db:
        rows = dict(db.execute("SELECT request_id, input FROM predictions").fetchall())
    assert set(rows) == {"r1", "r2", "r3"}
    assert "\\ud800" in rows["r1"] and PHONE not in rows["r2"]


# --- limits ---------------------------------------------------------------------------------
def test_public_routes_are_rate_limited_per_address() -> None:
    app = FastAPI()

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True}

    app.add_middleware(AddressRateLimit, limiter=TokenBucket(0.001, 3), paths={"/healthz"})
    client = TestClient(app)
    codes = [client.get("/healthz").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_the_gateway_cancels_a_slow_http_request_itself() -> None:
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict:
        await asyncio.sleep(5)
        return {}

    app.add_middleware(RequestDeadline, seconds=0.2)
    started = time.monotonic()
    answer = TestClient(app).get("/slow")
    assert answer.status_code == 504 and time.monotonic() - started < 3


# --- webhooks -------------------------------------------------------------------------------
def test_dingtalk_bounds_the_timestamp_and_refuses_a_reused_sign_with_a_new_body() -> None:
    from crm.channels.dingtalk import DingTalkAdapter, sign
    from crm.messages import ChannelAuthError, RawRequest

    adapter = DingTalkAdapter("s" * 16, tenant="bank")
    with pytest.raises(ChannelAuthError, match="13 digits"):
        adapter.check({"timestamp": "9" * 400, "sign": "x"})
    stamp = str(int(time.time() * 1000))
    headers = {"timestamp": stamp, "sign": sign(stamp, "s" * 16)}

    def body(msg_id: str, corp: str) -> bytes:
        return json.dumps({"msgtype": "text", "text": {"content": "hi"}, "msgId": msg_id,
                           "conversationId": "c", "senderStaffId": "u",
                           "chatbotCorpId": corp}).encode()  # fmt: skip

    first = adapter.accept(RawRequest({}, headers, body("m1", "evil-corp")))
    assert first.tenant == "bank"  # the configured robot's, not the unsigned body's
    assert adapter.accept(RawRequest({}, headers, body("m1", "evil-corp"))).message_id == "m1"
    with pytest.raises(ChannelAuthError, match="replay"):
        adapter.accept(RawRequest({}, headers, body("m2", "evil-corp")))


def test_wecom_refuses_an_old_signed_request_and_a_foreign_to_user() -> None:
    from crm.channels.wecom import WeComAdapter, cdata, signature
    from crm.messages import ChannelAuthError, RawRequest
    from tests.unit.conftest import AES_KEY, CORP, TOKEN

    adapter = WeComAdapter(TOKEN, AES_KEY, CORP, max_skew_s=300)
    with pytest.raises(ChannelAuthError, match="away from now"):
        adapter.check_time(str(int(time.time()) - 30 * 86400))
    with pytest.raises(ChannelAuthError, match="10 digits"):
        adapter.check_time("1" * 400)
    now = str(int(time.time()))
    encrypted = adapter.crypto.encrypt("<xml><MsgType>text</MsgType></xml>")
    body = f"<xml><ToUserName>{cdata('other-corp')}</ToUserName><Encrypt>{cdata(encrypted)}" \
           "</Encrypt></xml>"  # fmt: skip
    query = {"msg_signature": signature(TOKEN, now, "n", encrypted), "timestamp": now,
             "nonce": "n"}  # fmt: skip
    with pytest.raises(ChannelAuthError, match="ToUserName"):
        adapter.accept(RawRequest(query, {}, body.encode()))
