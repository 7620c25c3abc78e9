"""WeCom depth (issue 28) without a server: kf message reading, the kf state rules and cursor
store, callback messages other than text, the media acknowledgement, tags the rules keep."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crm.channels.wecom import field, message_text, parse_xml
from crm.channels.wecom_kf import ALLOWED, BOT, ENDED, HUMAN, NEW, POOL, KfStore, text_of
from crm.channels.wecom_media import ACK, media_reply
from crm.insight.tags import Tag, TagStore
from crm.messages import InboundMessage, Reply
from privacy import atrest


def test_kf_messages_read_as_words_or_placeholders() -> None:
    assert text_of({"msgtype": "text", "text": {"content": " 查余额 "}}) == "查余额"
    place = {"msgtype": "location", "location": {"name": "人民广场", "address": "上海",
                                                 "latitude": 31.2, "longitude": 121.4}}  # fmt: skip
    assert text_of(place) == "[位置] 人民广场 上海 (31.2, 121.4)"
    link = {"msgtype": "link", "link": {"title": "账单", "url": "https://x/b"}}
    assert text_of(link) == "[链接] 账单 https://x/b"
    assert text_of({"msgtype": "image", "image": {"media_id": "m"}}) == "[image]"


def test_kf_state_rules_are_wecoms() -> None:
    assert ALLOWED[NEW] >= {BOT, POOL, HUMAN, ENDED} and ALLOWED[BOT] >= {POOL, HUMAN}
    assert BOT not in ALLOWED[POOL] and POOL not in ALLOWED[HUMAN]  # no way back to the bot
    assert ALLOWED[ENDED] == set()  # final until the customer writes again


def test_kf_cursor_and_state_survive_reopening(tmp_path: Path) -> None:
    store = KfStore(tmp_path / "c.db")
    assert store.cursor("wk1") == "" and store.state("wk1", "u") == NEW
    store.save_cursor("wk1", "c-17")
    store.set_state("wk1", "u", HUMAN, "zhangsan")
    store.close()
    again = KfStore(tmp_path / "c.db")
    assert again.cursor("wk1") == "c-17" and again.cursor("wk2") == ""
    assert again.state("wk1", "u") == HUMAN
    again.close()


def xml(kind: str, inner: str) -> object:
    return parse_xml(f"<xml><MsgType>{kind}</MsgType>{inner}</xml>")


def test_callback_messages_beyond_text() -> None:
    place = xml("location", "<Location_X>31.2</Location_X><Location_Y>121.4</Location_Y>"
                            "<Label>上海</Label>")  # fmt: skip
    assert message_text(place, "location") == "[位置] 上海 (31.2, 121.4)"
    assert message_text(xml("link", "<Title>T</Title><Url>u</Url>"), "link") == "[链接] T u"
    menu = xml("event", "<Event>click</Event><EventKey>查余额</EventKey>")
    assert message_text(menu, "event") == "查余额"
    spoken = xml("voice", "<Recognition>查余额</Recognition><MediaId>m</MediaId>")
    assert message_text(spoken, "voice") == "查余额"
    assert message_text(xml("image", "<MediaId>m</MediaId>"), "image") == "[image]"
    with pytest.raises(ValueError, match="miniprogram"):
        message_text(xml("miniprogram", ""), "miniprogram")
    assert field(menu, "Event") == "click"  # type: ignore[arg-type]


def test_media_acknowledged_unless_a_human_has_it() -> None:
    message = InboundMessage(channel="wecom_kf", sender_id="u", text="[图片] media:mX",
                             message_id="1", context={"msgtype": "image"})  # fmt: skip

    async def bot(_: InboundMessage) -> Reply:
        return Reply(text="没太明白", intent="fallback")

    async def queued(_: InboundMessage) -> Reply:
        return Reply(text="", handoff=True)

    acked = asyncio.run(media_reply(bot)(message))
    assert acked.text == ACK.format(label="图片") and acked.intent == "media"
    assert asyncio.run(media_reply(queued)(message)) == Reply(text="", handoff=True)


def test_rules_keep_tags_set_in_wecom_or_by_a_channel_code(tmp_path: Path) -> None:
    tags = TagStore(tmp_path / "tags.db")
    for name, by in (("VIP", "wecom:zhangsan"), ("门店客户", "channel_code:c1"),
                     ("old", "rule:old")):  # fmt: skip
        tags.set_manual("default", "c", Tag(name, by, "r"), True)
    diff = tags.apply("default", "c", [Tag("vip", "rule:vip", "r")])
    assert diff == {"added": ["vip"], "removed": ["old"]}
    assert {t["tag"] for t in tags.current("default", "c")} == {"VIP", "门店客户", "vip"}
    tags.close()


class FakeApi:
    """WeCom's API as KfService calls it: sync_msg pages of one message each, slowly."""

    corp_id = "wwcorp"

    def __init__(self, items: list[dict]):
        self.items, self.calls, self.active, self.overlap = items, [], 0, False

    async def call(self, path: str, body: dict) -> dict:
        self.calls.append((path, body))
        if path != "/cgi-bin/kf/sync_msg":
            return {"errcode": 0}
        self.active += 1
        self.overlap |= self.active > 1
        await asyncio.sleep(0.01)
        self.active -= 1
        start = int(body["cursor"] or 0)
        page = self.items[start : start + 1]
        more = start + 1 < len(self.items)
        return {"errcode": 0, "next_cursor": str(start + len(page)), "has_more": int(more),
                "msg_list": page}  # fmt: skip


def test_kf_pulls_one_at_a_time_and_follows_servicer_state(tmp_path: Path) -> None:
    from crm.channels.wecom_kf import KfService

    change = {"event_type": "session_status_change", "open_kfid": "wk1",
              "external_userid": "u", "change_type": 1, "new_servicer_userid": "li"}  # fmt: skip
    items = [{"msgid": f"e{i}", "origin": 4, "msgtype": "event", "event": change}
             for i in range(3)]  # fmt: skip
    api, store = FakeApi(items), KfStore(tmp_path / "kf.db")
    kf = KfService(api, None, store, None, "")  # type: ignore[arg-type]

    async def handler(_: InboundMessage) -> Reply:
        return Reply()

    async def both() -> list[int]:
        return list(await asyncio.gather(kf.pull("wk1", "T", handler),
                                         kf.pull("wk1", "T", handler)))  # fmt: skip

    seen = asyncio.run(both())
    assert not api.overlap and sorted(seen) == [0, 3]  # the second found the cursor moved
    assert store.cursor("wk1") == "3" and store.state("wk1", "u") == HUMAN
    assert asyncio.run(kf.transfer("wk1", "u", BOT)) is False  # 3 -> 1: WeCom refuses it
    store.close()


def test_wecom_errors_name_their_errcode_and_expired_tokens_are_fetched_again() -> None:
    import httpx

    from crm.channels.senders import DeliveryFailed, WeComAppSender

    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/cgi-bin/gettoken":
            return httpx.Response(200, json={"errcode": 0, "access_token": "t", "expires_in": 7200})
        if seen.count("/cgi-bin/kf/send_msg") == 1:
            return httpx.Response(200, json={"errcode": 42001, "errmsg": "expired"})
        return httpx.Response(200, json={"errcode": 95018, "errmsg": "send msg not allowed"})

    sender = WeComAppSender("wwcorp", "s", transport=httpx.MockTransport(answer))
    with pytest.raises(DeliveryFailed, match="95018") as failed:
        asyncio.run(sender.call("/cgi-bin/kf/send_msg", {}))
    assert failed.value.errcode == 95018  # type: ignore[attr-defined]
    assert seen == ["/cgi-bin/gettoken", "/cgi-bin/kf/send_msg", "/cgi-bin/gettoken",
                    "/cgi-bin/kf/send_msg"]  # fmt: skip


def test_erasure_removes_wecom_media_kf_state_and_code_attribution(tmp_path: Path) -> None:
    import base64 as b64

    from crm.channels.identity import IdentityMap
    from crm.channels.wecom_contacts import ContactWayStore
    from crm.channels.wecom_media import MediaStore
    from crm.stores import channel_stores
    from tests.support import application_settings

    settings = application_settings(tmp_path)
    cipher = atrest.open_cipher(tmp_path, settings.privacy)
    db = settings.path(settings.channels.store)
    identity = IdentityMap(db)
    identity.link("wwcorp", "wecom_kf", "wmU", "C-9")
    kf, codes = KfStore(db), ContactWayStore(db)
    kf.set_state("wk1", "wmU", HUMAN, "li")
    codes.record_add("st1", "wmE", "li", "C-9")
    media = MediaStore(db, cipher, None, identity)
    message = InboundMessage(tenant="wwcorp", channel="wecom_kf", sender_id="wmU", text="",
                             message_id="m1", context={"msgtype": "image"})  # fmt: skip
    ref = media._save(message, "C-9", "image", b"PNGBYTES", "image/png")
    assert media.read(ref) == ("image/png", b"PNGBYTES")
    assert b64.b64encode(b"PNGBYTES").decode() not in str(media.db.execute(
        "SELECT body FROM wecom_media").fetchall())  # fmt: skip
    stores = {s.name: s for s in channel_stores(settings, cipher)}
    names = list(stores)
    assert names.index("wecom_kf_sessions") < names.index("identities")
    erased = {n: stores[n].erase("C-9", None) for n in names}
    assert erased["wecom_media"] == erased["wecom_kf_sessions"] == 1
    assert erased["wecom_contact_adds"] == 1
    assert media.read(ref) is None and kf.state("wk1", "wmU") == NEW
    for store in (kf, codes, media, identity):
        store.close()


def test_sop_mass_messages_stop_at_the_months_days(tmp_path: Path) -> None:
    from datetime import datetime

    from crm.marketing.sop import CHINA, SopService, SopStore, month_limit

    feb = datetime(2027, 2, 10, 12, tzinfo=CHINA).timestamp()
    start, days = month_limit(feb)
    assert days == 28 and datetime.fromtimestamp(start, CHINA).day == 1
    store, api = SopStore(tmp_path / "sop.db"), FakeApi([])
    sop = SopService(api, store, None, None, None)
    for n in range(29):
        store.add_task({"plan_id": "p", "customer_id": "c", "step": f"s{n}", "kind": "mass",
                        "staff": "li", "text": "t", "status": "pending"})  # fmt: skip
    tasks = store.tasks()
    for task in tasks[:28]:
        store.update(task["id"], status="sent", created_at=feb)
    asyncio.run(sop.mass(tasks[28]["id"], "c", ("wmX", "li"), "t", feb))
    assert store.tasks("id = ?", (tasks[28]["id"],))[0]["status"] == "limit"
    assert api.calls == []  # nothing asked of WeCom beyond the limit
    store.update(tasks[0]["id"], created_at=start - 1)  # one of them was last month
    asyncio.run(sop.mass(tasks[28]["id"], "c", ("wmX", "li"), "t", feb))
    assert store.tasks("id = ?", (tasks[28]["id"],))[0]["status"] == "sent"
    assert api.calls[0][1]["external_userid"] == ["wmX"] and store.erase("c") == 29
    store.close()
