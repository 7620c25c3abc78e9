"""WeCom depth (issue 28) through the running gateway against a local HTTPS WeCom sink.

The gateway is the real one (crm.parts.build_parts + crm.api.build_api under uvicorn, on a free
loopback port) over in-process dialogue fakes, so it starts in about a second and can be
restarted over the same stores; WeCom is played twice: as the caller (encrypted, signed
callbacks made with the adapter's crypto) and as the API (tests/wecom_sink.py).
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn

from crm.api import build_api
from crm.channels.wecom import WeComCrypto, cdata, encrypted_request_xml, field, parse_xml
from crm.channels.wecom_kf import KfStore
from crm.channels.wecom_media import ACK
from crm.conversation.understanding import Analysis
from crm.parts import build_parts
from tests.channel_setup import WECOM_AES_KEY, WECOM_CORP_ID, WECOM_TOKEN, free_port
from tests.support import FakeFeatures, LocalConversation, application_settings, issue_test_key
from tests.unit.test_application import models
from tests.unit.test_dialogue import intent, make_manager
from tests.wecom_sink import ACCESS_TOKEN, MEDIA, WeComSink, restore_env, set_env, wecom_env

CRYPTO = WeComCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID)
KF = "wkAAAAtestkf"


@dataclass
class Gateway:
    url: str
    parts: Any
    key: str
    keys: dict[str, str]
    features: FakeFeatures
    server: uvicorn.Server
    thread: threading.Thread
    stopped: bool = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.parts.stop()


def start_gateway(root: Path, sink: WeComSink) -> Gateway:
    settings = application_settings(root)
    wecom = settings.channels.wecom.model_copy(update={"api_base": sink.base})
    channels = settings.channels.model_copy(update={"wecom": wecom})
    settings = settings.model_copy(update={"channels": channels})
    upset = Analysis("unknown", 0.3, False, "negative", 0.99, ())  # not understood, upset
    known = {"查余额": intent("balance"), "转人工": intent("balance"), "太差劲了": upset}
    manager = make_manager(root, known)
    features = FakeFeatures({"C-100": {"tenure": 12.0}})
    parts = build_parts(settings, models(), LocalConversation(manager), features, features,
                        lambda _: features)  # fmt: skip
    parts.access.guard.clock = lambda: datetime(2026, 12, 7, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    keys = {name: issue_test_key(settings, f"{name}-key", tenant, role, clearance=3,
                                 rate_per_s=1000.0, burst=1000)
            for name, role, tenant in (("supervisor", "supervisor", "default"),
                                       ("marketer", "marketer", "default"),
                                       ("other", "marketer", "globex"))}  # fmt: skip
    config = uvicorn.Config(build_api(parts), host="127.0.0.1", port=free_port(),
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start in 20 s"
        time.sleep(0.05)
    return Gateway(f"http://127.0.0.1:{config.port}", parts, keys["supervisor"], keys, features,
                   server, thread)  # fmt: skip


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeComSink]:
    vendor = WeComSink(tmp_path_factory.mktemp("wecom-sink"))
    before = set_env(wecom_env(vendor))
    try:
        yield vendor
    finally:
        restore_env(before)
        vendor.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wecom-gateway")


@pytest.fixture(scope="module")
def gateway(root: Path, sink: WeComSink) -> Iterator[Gateway]:
    running = start_gateway(root, sink)
    try:
        yield running
    finally:
        running.stop()


def client_of(gateway: Gateway, role: str = "supervisor") -> httpx.Client:
    key = gateway.keys[role]
    return httpx.Client(base_url=gateway.url, headers={"X-API-Key": key}, timeout=30)


def callback(http: httpx.Client, plain: str) -> httpx.Response:
    body, query = encrypted_request_xml(CRYPTO, plain)
    return http.post("/v1/channels/wecom/messages", params=query, content=body,
                     headers={"Content-Type": "text/xml"})  # fmt: skip


def kf_event(token: str) -> str:
    return (
        f"<xml><ToUserName>{cdata(WECOM_CORP_ID)}</ToUserName><CreateTime>{int(time.time())}"
        f"</CreateTime><MsgType>{cdata('event')}</MsgType><Event>{cdata('kf_msg_or_event')}"
        f"</Event><Token>{cdata(token)}</Token><OpenKfId>{cdata(KF)}</OpenKfId></xml>"
    )


def kf_text(user: str, text: str) -> dict:
    return {"msgid": f"k{uuid.uuid4().hex[:12]}", "open_kfid": KF, "external_userid": user,
            "send_time": int(time.time()), "origin": 3, "msgtype": "text",
            "text": {"content": text}}  # fmt: skip


def sent_to(sink: WeComSink, user: str) -> list[str]:
    return [c["body"]["text"]["content"] for c in sink.to("/cgi-bin/kf/send_msg")
            if c["body"]["touser"] == user]  # fmt: skip


def wait_sent(sink: WeComSink, user: str, count: int, timeout: float = 10.0) -> list[str]:
    sink.wait(lambda c: len(sent_to(sink, user)) >= count, timeout)
    return sent_to(sink, user)


def states(sink: WeComSink, user: str) -> list[tuple[int, str]]:
    return [(c["body"]["service_state"], c["body"].get("servicer_userid", ""))
            for c in sink.to("/cgi-bin/kf/service_state/trans")
            if c["body"]["external_userid"] == user]  # fmt: skip


def app_message(member: str, kind: str, fields: str, msg_id: str | None = None) -> str:
    msg_id = msg_id or str(int(time.time() * 1000) % 10**9)  # short: no card-like numbers
    return (f"<xml><ToUserName>{cdata(WECOM_CORP_ID)}</ToUserName><FromUserName>"
            f"{cdata(member)}</FromUserName><CreateTime>{int(time.time())}</CreateTime>"
            f"<MsgType>{cdata(kind)}</MsgType>{fields}<MsgId>{msg_id}</MsgId>"
            f"<AgentID>1000002</AgentID></xml>")  # fmt: skip


def passive_text(response: httpx.Response) -> str:
    """The encrypted passive reply, its signature checked, as the member reads it."""
    assert response.status_code == 200, response.text
    if not response.content:
        return ""
    envelope = parse_xml(response.content)
    plain = CRYPTO.decrypt_message(field(envelope, "MsgSignature") or "",
                                   field(envelope, "TimeStamp") or "",
                                   field(envelope, "Nonce") or "", response.content)  # fmt: skip
    return field(parse_xml(plain), "Content") or ""


def test_app_media_location_link_menu_and_subscribe_are_answered(
    root: Path, sink: WeComSink, gateway: Gateway
) -> None:
    member = f"li{uuid.uuid4().hex[:6]}"
    with client_of(gateway) as http:
        typed = passive_text(
            callback(http, app_message(member, "text", f"<Content>{cdata('查余额')}</Content>"))
        )
        image = app_message(
            member,
            "image",
            f"<PicUrl>{cdata('https://x/p')}</PicUrl><MediaId>{cdata('MID-1')}</MediaId>",
            msg_id="770001",
        )
        answer = passive_text(callback(http, image))
        assert answer == ACK.format(label="图片")
        fetched = sink.to("/cgi-bin/media/get")
        assert [c["query"]["media_id"] for c in fetched] == ["MID-1"]
        assert fetched[0]["query"]["access_token"] == ACCESS_TOKEN
        assert passive_text(callback(http, image)) == answer  # WeCom's retry: no second fetch
        assert len(sink.to("/cgi-bin/media/get")) == 1
        db = sqlite3.connect(root / "data/events/channels.db")
        ref, body = db.execute(
            "SELECT ref, body FROM wecom_media WHERE message_id='770001'"
        ).fetchone()
        db.close()
        assert b"PNG" not in body.encode() and base64.b64encode(MEDIA).decode() not in body
        assert gateway.parts.channels.media.read(ref) == ("image/png", MEDIA)
        voice = app_message(member, "voice", f"<MediaId>{cdata('MID-2')}</MediaId>"
                            f"<Format>{cdata('amr')}</Format>")  # fmt: skip
        sink.expire_next = True  # WeCom says the cached token expired: fetched again, once
        tokens = len(sink.to("/cgi-bin/gettoken"))
        assert passive_text(callback(http, voice)) == ACK.format(label="语音")
        assert len(sink.to("/cgi-bin/gettoken")) == tokens + 1
        assert [c["query"]["media_id"] for c in sink.to("/cgi-bin/media/get")][1:] == ["MID-2"] * 2
        place = app_message(
            member,
            "location",
            "<Location_X>31.23</Location_X><Location_Y>"
            f"121.47</Location_Y><Scale>15</Scale><Label>{cdata('上海')}</Label>",
        )
        assert passive_text(callback(http, place))  # an answer, not a 422
        link = app_message(
            member,
            "link",
            f"<Title>{cdata('账单')}</Title><Description>"
            f"{cdata('d')}</Description><Url>{cdata('https://x/b')}</Url>",
        )
        assert passive_text(callback(http, link))
        menu = app_message(f"{member}b", "event", f"<Event>{cdata('click')}</Event>"
                           f"<EventKey>{cdata('查余额')}</EventKey>")  # fmt: skip
        menu_answer = passive_text(callback(http, menu))
        assert menu_answer == typed  # a menu key reads as typed words (both new members)
        hello = app_message(member, "event", f"<Event>{cdata('subscribe')}</Event>")
        assert passive_text(callback(http, hello)) == gateway.parts.settings.channels.wecom.welcome
        unknown = app_message(member, "miniprogram", "")
        assert callback(http, unknown).status_code == 422


def contact_event(change: str, external: str, extra: str = "") -> str:
    return (
        f"<xml><ToUserName>{cdata(WECOM_CORP_ID)}</ToUserName><FromUserName>"
        f"{cdata('sys')}</FromUserName><CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType>{cdata('event')}</MsgType><Event>{cdata('change_external_contact')}"
        f"</Event><ChangeType>{cdata(change)}</ChangeType><UserID>{cdata('zhangsan')}"
        f"</UserID><ExternalUserID>{cdata(external)}</ExternalUserID>{extra}</xml>"
    )


def follow(*tags: tuple[str, str, str]) -> dict:
    return {
        "external_contact": {"external_userid": "x", "name": "李雷", "type": 1},
        "follow_user": [
            {
                "userid": "zhangsan",
                "tags": [
                    {"group_name": g, "tag_name": n, "tag_id": i, "type": 1} for g, n, i in tags
                ],
            }
        ],
    }


def test_channel_code_attributes_welcomes_tags_and_reports(
    sink: WeComSink, gateway: Gateway
) -> None:
    spec = {"name": "南京路店", "scope": "store:sh-01", "users": ["zhangsan"],
            "tags": ["门店客户"], "welcome": "欢迎光临南京路店！"}  # fmt: skip
    with client_of(gateway, "marketer") as http, client_of(gateway, "other") as other:
        made = http.post("/v1/wecom/contact-ways", json=spec)
        assert made.status_code == 201, made.text
        way = made.json()
        asked = sink.to("/cgi-bin/externalcontact/add_contact_way")[-1]["body"]
        assert asked["scene"] == 2 and asked["type"] == 1 and asked["user"] == ["zhangsan"]
        assert asked["state"] == way["state"] and len(way["state"]) <= 30
        assert way["qr_code"].startswith("https://")
        assert other.get(f"/v1/wecom/contact-ways/{way['config_id']}").status_code in (403, 404)
        assert other.get("/v1/wecom/contact-ways").json() == []  # another tenant's: none
        assert http.post("/v1/wecom/contact-ways", json={**spec, "state": way["state"]}
                         ).status_code == 409  # fmt: skip

        external = f"wm{uuid.uuid4().hex[:10]}"
        sink.contacts[external] = follow(("客户等级", "VIP", "etVIP"))
        added = contact_event("add_external_contact", external,
                              f"<State>{cdata(way['state'])}</State>"
                              f"<WelcomeCode>{cdata('WC-9')}</WelcomeCode>")  # fmt: skip
        assert callback(http, added).status_code == 200
        welcome = sink.to("/cgi-bin/externalcontact/send_welcome_msg")
        assert [w["body"] for w in welcome] == [
            {"welcome_code": "WC-9", "text": {"content": "欢迎光临南京路店！"}}
        ]
        marked = sink.to("/cgi-bin/externalcontact/mark_tag")[-1]["body"]
        assert marked["userid"] == "zhangsan" and marked["external_userid"] == external
        assert len(marked["add_tag"]) == 1
        callback(http, added)  # WeCom retries the event: no second welcome, no second count
        assert len(sink.to("/cgi-bin/externalcontact/send_welcome_msg")) == 1

        parts = gateway.parts
        customer = parts.channels.identity.lookup(WECOM_CORP_ID, "wecom_external", external)
        tags = {t["tag"]: t["set_by"] for t in parts.insight.tags.current("default", customer)}
        assert tags == {"门店客户": f"channel_code:{way['config_id']}", "VIP": "wecom:zhangsan"}
        contact = parts.insight.contacts.get("default", customer)
        assert contact["wecom_name"] == "李雷" and contact["channel_code"] == "南京路店"
        late = f"wm{uuid.uuid4().hex[:10]}"  # a welcome WeCom refuses: the rest still happens
        sink.contacts[late] = follow()
        state_xml = f"<State>{cdata(way['state'])}</State>"
        refused = contact_event(
            "add_external_contact", late, state_xml + "<WelcomeCode>USED</WelcomeCode>"
        )
        assert callback(http, refused).status_code == 200
        assert sink.to("/cgi-bin/externalcontact/mark_tag")[-1]["body"]["external_userid"] == late
        report = http.get("/v1/wecom/contact-ways/report").json()
        assert [(r["config_id"], r["new_customers"]) for r in report] == [(way["config_id"], 2)]

        # Tags edited in WeCom come back; a corp tag deleted in WeCom leaves the profile.
        sink.contacts[external] = follow(("客户等级", "高净值", "etHNW"))
        callback(http, contact_event("edit_external_contact", external))
        tags = {t["tag"] for t in parts.insight.tags.current("default", customer)}
        assert tags == {"门店客户", "高净值"}
        deleted = (f"<xml><ToUserName>{cdata(WECOM_CORP_ID)}</ToUserName><MsgType>"
                   f"{cdata('event')}</MsgType><Event>{cdata('change_external_tag')}</Event>"
                   f"<Id>{cdata('etHNW')}</Id><TagType>{cdata('tag')}</TagType><ChangeType>"
                   f"{cdata('delete')}</ChangeType></xml>")  # fmt: skip
        callback(http, deleted)
        assert {t["tag"] for t in parts.insight.tags.current("default", customer)} == {"门店客户"}

        # Our automatic tags go out with mark_tag (and keep the code's and WeCom's tags).
        gateway.features.customers[customer] = {"high_value": 1}
        with client_of(gateway) as staff:
            pushed = staff.post(f"/v1/customers/{customer}/tags/recompute")
        assert pushed.status_code == 200 and pushed.json()["added"] == ["value:high", "vip"], (
            pushed.text
        )
        out = sink.to("/cgi-bin/externalcontact/mark_tag")[-1]["body"]
        assert out["external_userid"] == external and len(out["add_tag"]) == 2
        assert {t["tag"] for t in parts.insight.tags.current("default", customer)} == {
            "门店客户",
            "vip",
            "value:high",
        }

        changed = http.patch(f"/v1/wecom/contact-ways/{way['config_id']}",
                             json={"users": ["lisi"], "welcome": "新欢迎语"})  # fmt: skip
        assert changed.status_code == 200 and changed.json()["welcome"] == "新欢迎语"
        assert sink.to("/cgi-bin/externalcontact/update_contact_way")[-1]["body"] == {
            "config_id": way["config_id"],
            "user": ["lisi"],
        }
        assert other.delete(f"/v1/wecom/contact-ways/{way['config_id']}").status_code in (403, 404)
        removed = http.delete(f"/v1/wecom/contact-ways/{way['config_id']}")
        assert removed.status_code == 200 and removed.json()["removed"] is True
        assert sink.to("/cgi-bin/externalcontact/del_contact_way")[-1]["body"] == {
            "config_id": way["config_id"]
        }
        report = http.get("/v1/wecom/contact-ways/report").json()
        assert report[0]["new_customers"] == 2 and report[0]["removed"] is True


def test_sop_plan_steps_completion_and_negative_follow_up(
    root: Path, sink: WeComSink, gateway: Gateway
) -> None:
    code = {"name": "SOP 新客", "users": ["zhangsan"], "tags": ["新客SOP"], "welcome": ""}
    plan = {"name": "新客7天", "segment_tag": "新客SOP", "on_negative": "请致电安抚",
            "steps": [{"day": 0, "kind": "mass", "text": "欢迎礼包"},
                      {"day": 3, "kind": "reminder", "text": "介绍理财产品"}]}  # fmt: skip
    with client_of(gateway, "marketer") as http, client_of(gateway, "other") as other:
        way = http.post("/v1/wecom/contact-ways", json=code).json()
        external = f"wm{uuid.uuid4().hex[:10]}"
        sink.contacts[external] = follow()
        state = f"<State>{cdata(way['state'])}</State>"
        assert callback(http, contact_event("add_external_contact", external, state)).is_success
        made = http.post("/v1/wecom/sop/plans", json=plan)
        assert made.status_code == 201, made.text
        plan_id = made.json()["id"]
        assert other.get(f"/v1/wecom/sop/plans/{plan_id}/tasks").status_code in (403, 404)

        assert http.post("/v1/wecom/sop/run").status_code == 200
        mass = sink.to("/cgi-bin/externalcontact/add_msg_template")[-1]["body"]
        assert mass == {"chat_type": "single", "external_userid": [external],
                        "sender": "zhangsan", "text": {"content": "欢迎礼包"}}  # fmt: skip
        tasks = http.get(f"/v1/wecom/sop/plans/{plan_id}/tasks").json()
        assert tasks["counts"] == {"sent": 1}  # day 3 is not due yet
        msgid = tasks["tasks"][0]["msgid"]
        sink.mass_results[msgid] = [{"external_userid": external, "userid": "zhangsan",
                                     "status": 1, "send_time": int(time.time())}]  # fmt: skip
        http.post("/v1/wecom/sop/run")
        assert http.get(f"/v1/wecom/sop/plans/{plan_id}/tasks").json()["counts"] == {"done": 1}
        asked = sink.to("/cgi-bin/externalcontact/get_groupmsg_send_result")[-1]["body"]
        assert asked["msgid"] == msgid and asked["userid"] == "zhangsan"

        db = sqlite3.connect(root / "data/events/channels.db")  # three days later
        db.execute("UPDATE sop_enrolments SET enrolled_at = enrolled_at - 3 * 86400")
        db.commit()
        db.close()
        http.post("/v1/wecom/sop/run")
        reminder = sink.to("/cgi-bin/message/send")[-1]["body"]
        assert reminder["touser"] == "zhangsan" and "介绍理财产品" in reminder["text"]["content"]
        tasks = http.get(f"/v1/wecom/sop/plans/{plan_id}/tasks").json()
        assert tasks["counts"] == {"done": 1, "open": 1}
        task_id = next(t["id"] for t in tasks["tasks"] if t["status"] == "open")
        assert other.post(f"/v1/wecom/sop/tasks/{task_id}/done").status_code in (403, 404)
        done = http.post(f"/v1/wecom/sop/tasks/{task_id}/done")
        assert done.status_code == 200 and done.json()["status"] == "done", done.text
        assert http.post(f"/v1/wecom/sop/tasks/{task_id}/done").status_code == 409
        http.post("/v1/wecom/sop/run")  # a run repeated creates nothing twice
        assert len(http.get(f"/v1/wecom/sop/plans/{plan_id}/tasks").json()["tasks"]) == 2

        # The same customer on WeChat Customer Service, upset: a follow-up for zhangsan.
        customer = gateway.parts.channels.identity.lookup(WECOM_CORP_ID, "wecom_external", external)
        kf_user = f"wm{uuid.uuid4().hex[:10]}"
        with client_of(gateway) as staff:
            linked = staff.put(f"/v1/channels/wecom_kf/identities/{kf_user}",
                               json={"customer_id": customer})  # fmt: skip
            assert linked.status_code == 200, linked.text
        sink.kf_messages.append(kf_text(kf_user, "太差劲了"))
        callback(http, kf_event("T-SOP"))
        follow_up = sink.wait(lambda c: c["path"] == "/cgi-bin/message/send"
                              and "请致电安抚" in c["body"]["text"]["content"])  # fmt: skip
        assert follow_up["body"]["touser"] == "zhangsan"
        sink.wait(lambda c: (2, "") in states(sink, kf_user))  # and the kf session queued


def test_kf_pull_reply_welcome_handoff_state_and_restart(
    root: Path, sink: WeComSink, gateway: Gateway
) -> None:
    user = f"wm{uuid.uuid4().hex[:10]}"
    welcome = {
        "msgid": "kevt1",
        "open_kfid": KF,
        "origin": 4,
        "msgtype": "event",
        "event": {
            "event_type": "enter_session",
            "open_kfid": KF,
            "external_userid": user,
            "scene": "qr",
            "welcome_code": "WC-1",
        },
    }
    first = [kf_text(user, "查余额"), kf_text(user, "查余额")]
    base, pulled = len(sink.kf_messages), len(sink.to("/cgi-bin/kf/sync_msg"))  # earlier tests'
    sink.kf_messages += [welcome, *first]
    with client_of(gateway) as http:
        linked = http.put(
            f"/v1/channels/wecom_kf/identities/{user}", json={"customer_id": "C-kf-1"}
        )  # a known customer (the CRM binds)
        assert linked.status_code == 200, linked.text
        acked = callback(http, kf_event("T1"))
        assert acked.status_code == 200 and acked.content == b""
        on_event = sink.wait(lambda c: c["path"] == "/cgi-bin/kf/send_msg_on_event")
        assert on_event["body"]["code"] == "WC-1" and on_event["body"]["msgtype"] == "text"
        answers = wait_sent(sink, user, 2)
        assert len(answers) == 2 and all(answers), answers
        pulls = [c["body"] for c in sink.to("/cgi-bin/kf/sync_msg")][pulled:]
        assert [(p["cursor"], p["token"], p["open_kfid"]) for p in pulls] == [
            (str(base or ""), "T1", KF),
            (str(base + 2), "T1", KF),
        ]  # page of 2, has_more, then the rest
        assert states(sink, user) == [(1, "")]  # new session -> answered by the bot

        # A handoff: the queue notice goes out while WeCom allows it, then the pool (2).
        sink.kf_messages.append(kf_text(user, "转人工"))
        callback(http, kf_event("T2"))
        notice = wait_sent(sink, user, 3)[-1]
        assert "第" in notice, notice
        sink.wait(lambda c: (2, "") in states(sink, user))
        queue = http.get("/v1/agent/queue").json()
        ticket = next(t for t in queue if t["session_key"] == "customer:C-kf-1")
        agent = "zhangsan"
        assert http.put(f"/v1/agent/agents/{agent}", json={"skills": ["general"]}).is_success
        accepted = http.post(f"/v1/agent/tickets/{ticket['id']}/accept",
                             json={"agent_id": agent})  # fmt: skip
        assert accepted.status_code == 200, accepted.text
        assert states(sink, user)[-1] == (3, agent)  # human, served by that WeCom userid
        said = http.post(f"/v1/agent/tickets/{ticket['id']}/reply",
                         json={"agent_id": agent, "text": "desk text"})  # fmt: skip
        assert said.status_code == 200
        closed = http.post(f"/v1/agent/tickets/{ticket['id']}/close", json={"agent_id": agent})
        assert closed.status_code == 200, closed.text
        assert states(sink, user)[-1] == (4, "")
        assert "desk text" not in sent_to(sink, user)  # state 3: only the servicer may write

    gateway.stop()  # a restart: the cursor is in the channels store, nothing in memory
    store = KfStore(root / "data/events/channels.db")
    assert store.cursor(KF) == str(base + 4)
    store.save_cursor(KF, str(base))  # and a crash after handling, before the cursor moved
    store.close()
    image = {**kf_text(user, ""), "msgtype": "image", "image": {"media_id": "KF-MEDIA-1"}}
    del image["text"]
    sink.kf_messages += [kf_text(user, "查余额"), image]
    before = len(sent_to(sink, user))
    restarted = start_gateway(root, sink)
    try:
        with client_of(restarted) as http:
            callback(http, kf_event("T3"))
            after = wait_sent(sink, user, before + 2)
            sink.wait(lambda c: c["body"] and c["body"].get("cursor") == str(base + 4)
                      and c["body"].get("token") == "T3")  # fmt: skip
            time.sleep(0.5)  # a duplicate send would land now
            assert len(sent_to(sink, user)) == before + 2, after  # only the new messages
            assert after[-1] == ACK.format(label="图片")  # the image: stored, acknowledged
            fetched = [c["query"]["media_id"] for c in sink.to("/cgi-bin/media/get")]
            assert fetched.count("KF-MEDIA-1") == 1
            assert states(sink, user)[-1] == (1, "")  # 4 -> new session -> bot
    finally:
        restarted.stop()
