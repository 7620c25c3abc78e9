"""The web console (crm/console/) inside the real gateway app over in-process fakes: sign-in
and its cookie, CSRF on writes, navigation from the policies, masking, tenant scoping, and
the overview's numbers equal to the analytics API's."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from crm.api import build_api
from crm.console.kpis import Record, overview
from crm.parts import build_parts
from events.embedded import EmbeddedBus
from events.schemas import FeedbackGiven, Handoff, MessageReceived, TurnRecorded
from tests.support import (
    FakeFeatures,
    LocalConversation,
    application_settings,
    issue_test_key,
    open_web_chat,
)
from tests.unit.test_application import CUSTOMER, models
from tests.unit.test_dialogue import intent, make_manager

ROLES = {  # role -> (subject, clearance)
    "supervisor": ("sup", 3), "agent": ("li", 2), "marketer": ("mk", 1),
    "data_scientist": ("ds", 1), "admin": ("adm", 3),
}  # fmt: skip
NAV = {
    "supervisor": {"overview", "desk", "customers", "alerts"},
    "agent": {"overview", "desk", "customers"},
    "marketer": {"customers", "marketing"},
    "data_scientist": {"models"},
    "admin": {"models", "alerts"},
}
PHONE = "13812345678"


@pytest.fixture
def console(tmp_path: Path):
    settings = application_settings(tmp_path)
    manager = make_manager(tmp_path, {"查余额": intent("balance"), "转人工": intent("balance")})
    features = FakeFeatures({CUSTOMER: {"tenure": 12.0, "monetary_90d": 10.0}})
    parts = build_parts(settings, models(), LocalConversation(manager), features, features,
                        lambda _: features)  # fmt: skip
    # Service hours in the policy's zone: agents may read customer data (deny-agents-off-hours).
    parts.access.guard.clock = lambda: datetime(2026, 12, 7, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    keys = {role: issue_test_key(settings, sub, "default", role, clearance=level,
                                 rate_per_s=1000.0, burst=1000)
            for role, (sub, level) in ROLES.items()}  # fmt: skip
    keys["other"] = issue_test_key(settings, "x", "globex", "supervisor", clearance=3,
                                   rate_per_s=1000.0, burst=1000)  # fmt: skip
    with TestClient(build_api(parts)) as client:
        yield client, parts, keys
    parts.stop()


def sign_in(client: TestClient, key: str, lang: str = "en") -> str:
    """Signs in through the form; returns the CSRF token the pages carry."""
    client.get("/console/login")
    token = client.cookies.get("scrm_console_login")
    answer = client.post("/console/login", data={"api_key": key, "login_token": token,
                                                 "lang": lang}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    page = client.get("/console/login")  # signed in: the shell with nav and CSRF token
    return re.search(r'data-csrf="([^"]+)"', page.text).group(1)


def publish_traffic(parts, now: datetime) -> None:
    bus = EmbeddedBus(parts.settings.path(parts.settings.events.log), partitions=8)
    bus.publish_now(traffic(now))


def traffic(now: datetime) -> list:
    """Two channels: web chat 3 turns (one handed off, answered, resolved, rated 4), WeCom 1."""
    at = lambda s: now - timedelta(seconds=s)  # noqa: E731
    return [
        MessageReceived(customer_id="C-1", channel="web_chat", session="s1",
                        text=f"call me at {PHONE}", at=at(600)),
        TurnRecorded(customer_id="C-1", channel="web_chat", session="s1", intent="balance",
                     reply_kind="answer", at=at(600)),
        TurnRecorded(customer_id="C-1", channel="web_chat", session="s1", intent="balance",
                     reply_kind="handoff", handoff=True, at=at(500)),
        Handoff(customer_id="C-1", type="handoff.requested", at=at(500)),
        Handoff(customer_id="C-1", type="handoff.assigned", agent="li", at=at(440)),
        Handoff(customer_id="C-1", type="handoff.resolved", agent="li", at=at(200)),
        FeedbackGiven(customer_id="C-1", kind="csat", csat=4, at=at(100)),
        TurnRecorded(customer_id="C-2", channel="web_chat", session="s2", intent="card",
                     reply_kind="clarify", at=at(300)),
        TurnRecorded(customer_id="C-3", channel="wecom", intent="balance", reply_kind="task",
                     at=at(50)),
        TurnRecorded(customer_id="C-9", tenant="globex", channel="wecom", intent="x",
                     reply_kind="answer", at=at(50)),
    ]  # fmt: skip


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(console) -> None:
    client, _, keys = console
    client.get("/console/login")
    token = client.cookies.get("scrm_console_login")
    answer = client.post("/console/login", data={"api_key": keys["agent"], "login_token": token},
                         follow_redirects=False)  # fmt: skip
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie"
                  and v.startswith("scrm_console="))  # fmt: skip
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert answer.headers["location"] == "/console/"  # agents read conversations: overview
    csrf = re.search(r'data-csrf="([^"]+)"', client.get("/console/login").text).group(1)
    assert client.post("/console/logout").status_code == 403  # no CSRF header
    assert client.post("/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/console/desk", follow_redirects=False).status_code == 303


def test_sign_in_refuses_a_bad_key_a_customer_key_and_a_forged_form(console) -> None:
    client, parts, keys = console
    client.get("/console/login")
    token = client.cookies.get("scrm_console_login")
    bad = client.post("/console/login", data={"api_key": "scrm_x_y", "login_token": token})
    assert bad.status_code == 401 and "scrm_console=" not in bad.headers.get("set-cookie", "")
    customer = issue_test_key(parts.settings, "C-1", "default", "customer")
    token = client.cookies.get("scrm_console_login")  # each form carries a fresh token
    refused = client.post("/console/login", data={"api_key": customer, "login_token": token})
    assert refused.status_code == 401 and "no console" in refused.text
    forged = client.post("/console/login", data={"api_key": keys["admin"], "login_token": "x"})
    assert forged.status_code == 403
    odd = client.post("/console/login", data={"api_key": keys["admin"], "lang": "fr",
                                              "login_token": client.cookies.get(
                                                  "scrm_console_login")})  # fmt: skip
    assert odd.status_code == 422 and "lang" in odd.text


def test_a_page_without_a_session_goes_to_sign_in_and_json_gets_401(console) -> None:
    client, _, _ = console
    page = client.get("/console/desk", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/console/login")
    assert client.get("/console/api/overview", follow_redirects=False).status_code == 303
    assert client.get("/v1/agent/queue").status_code == 401


def test_a_write_with_the_cookie_but_without_the_csrf_token_is_refused(console) -> None:
    client, _, keys = console
    csrf = sign_in(client, keys["agent"])
    body = {"skills": ["general"]}
    refused = client.put("/v1/agent/agents/li", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = client.put("/v1/agent/agents/li", json=body, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    done = client.put("/v1/agent/agents/li", json=body, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200, done.text
    # the desk API's own rule still holds for a console user: an agent acts as themselves
    other = client.put("/v1/agent/agents/wang", json=body, headers={"X-CSRF-Token": csrf})
    assert other.status_code == 403


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_sees_only_the_pages_its_policies_allow(console, role: str) -> None:
    client, _, keys = console
    sign_in(client, keys[role])
    page = client.get("/console/login")  # every page has the nav; take one all roles open
    shown = set(re.findall(r'data-nav="(\w+)"', page.text))
    assert shown == NAV[role]
    for name, path in (("desk", "/console/desk"), ("marketing", "/console/marketing"),
                       ("models", "/console/models"), ("alerts", "/console/alerts")):  # fmt: skip
        status = client.get(path, follow_redirects=False).status_code
        assert (status == 200) == (name in NAV[role]), (role, name, status)


def test_overview_numbers_equal_the_analytics_api_and_follow_the_definitions(console) -> None:
    client, parts, keys = console
    publish_traffic(parts, datetime.now(UTC))
    sign_in(client, keys["supervisor"])
    page = client.get("/console/?hours=24").text
    shown = dict(re.findall(r'data-value="(\w+)">([^<]*)<', page))
    api = client.get("/v1/analytics/overview?hours=24",
                     headers={"X-API-Key": keys["supervisor"]}).json()  # fmt: skip
    total = api["total"]
    assert (total["messages"], total["sessions"], total["handoffs"]) == (4, 3, 1)
    assert total["auto_answered_share"] == 0.5 and total["handoff_rate"] == 0.25
    assert total["auto_resolved"] == 1  # C-3's task; s1 was handed off, s2 left on a question
    assert total["auto_resolved_share"] == 0.3333
    assert (total["queue_wait_s"], total["resolution_s"], total["csat"]) == (60.0, 300.0, 4.0)
    assert shown["messages"] == "4" and shown["sessions"] == "3"
    assert shown["auto_answered_share"] == "50.0%" and shown["handoff_rate"] == "25.0%"
    assert shown["auto_resolved_share"] == "33.3%"
    assert shown["queue_wait_s"] == "60.0" and shown["csat"] == "4.0"
    assert client.get("/console/api/overview?hours=24").json()["total"] == total
    by = {row["channel"]: row["messages"] for row in api["by_channel"]}
    assert by == {"web_chat": 3, "wecom": 1}
    other = client.get("/v1/analytics/overview", headers={"X-API-Key": keys["other"]}).json()
    assert other["total"]["messages"] == 1  # globex sees its own turn only


def test_drill_down_reaches_a_masked_transcript_and_the_360(console) -> None:
    client, parts, keys = console
    chat = open_web_chat(client, {"X-API-Key": keys["supervisor"]})
    sent = client.post("/v1/channels/web_chat/messages", headers=chat["headers"],
                       json={"text": f"我的手机 {PHONE}", "message_id": "m-1"})  # fmt: skip
    assert sent.status_code == 200, sent.text
    customer, session = chat["customer_id"], chat["session_id"]
    bus = EmbeddedBus(parts.settings.path(parts.settings.events.log), partitions=8)
    bus.publish_now([TurnRecorded(customer_id=customer, channel="web_chat", session=session,
                                  intent="balance", reply_kind="answer")])  # fmt: skip
    client.cookies.clear()
    sign_in(client, keys["agent"])
    intents = client.get("/console/drill/web_chat").text
    assert 'data-intent="balance"' in intents
    listed = client.get("/console/drill/web_chat/conversations?intent=balance").text
    link = re.search(r'href="(/console/conversations/[^"]+)" data-conversation', listed).group(1)
    transcript = client.get(link)
    assert transcript.status_code == 200
    assert PHONE not in transcript.text and "138****5678" in transcript.text
    assert f'href="/console/customers/{customer}"' in transcript.text
    profile = client.get(f"/console/customers/{CUSTOMER}")
    assert profile.status_code == 200 and "tenure" in profile.text


def test_another_tenants_customer_is_not_found_in_the_console(console) -> None:
    client, _, keys = console
    sign_in(client, keys["other"])
    assert client.get(f"/console/customers/{CUSTOMER}").status_code == 404


def test_the_language_toggle_switches_the_words(console) -> None:
    client, _, keys = console
    csrf = sign_in(client, keys["supervisor"], lang="zh")
    assert "坐席工作台" in client.get("/console/desk").text
    assert client.post("/console/lang/en", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert "Agent desk" in client.get("/console/desk").text


def test_echarts_is_vendored_with_its_licence_and_served_locally(console) -> None:
    client, _, _ = console
    script = client.get("/console/static/vendor/echarts.min.js")
    assert script.status_code == 200 and len(script.content) > 500_000
    assert client.get("/console/static/..%2F__init__.py").status_code == 404  # no way out
    here = Path(__file__).resolve().parents[2] / "crm/console/static/vendor"
    assert "Apache License" in (here / "ECHARTS-LICENSE").read_text()


def test_kpis_pair_each_handoff_with_its_assignment_reply_and_resolution() -> None:
    def rec(at: float, type_: str, customer: str, **kw) -> Record:
        return Record(at=at, type=type_, tenant="t", customer=customer, **kw)

    records = [
        rec(0, "turn.recorded", "a", channel="wecom", handoff=True, kind="handoff"),
        rec(0, "handoff.requested", "a"),
        rec(30, "handoff.assigned", "a"), rec(50, "agent.replied", "a"),
        rec(70, "agent.replied", "a"), rec(100, "handoff.resolved", "a"),
        rec(10, "turn.recorded", "b", channel="wecom", handoff=True, kind="handoff"),
        rec(10, "handoff.requested", "b"), rec(20, "handoff.assigned", "b"),
        rec(200, "turn.recorded", "b", channel="wecom", kind="answer"),
        rec(210, "feedback.given", "b", csat=2),
    ]  # fmt: skip
    queue = [{"state": "pending"}, {"state": "open"}]
    out = overview(records, 0, 1000, queue=queue)
    total = out["total"]
    assert total["queue_wait_s"] == 20.0  # median of 30 and 10
    assert total["first_response_s"] == 50.0 and total["resolution_s"] == 100.0
    assert total["csat"] == 2.0 and total["sessions"] == 2 and out["queue"]["length"] == 1
    assert overview(records, 500, 1000)["total"]["messages"] == 0


def test_queue_length_on_the_page_is_the_desks_pending_tickets(console) -> None:
    client, _, keys = console
    chat = open_web_chat(client, {"X-API-Key": keys["supervisor"]})
    handed = client.post("/v1/channels/web_chat/messages", headers=chat["headers"],
                         json={"text": "转人工", "message_id": "m-q"})  # fmt: skip
    assert handed.status_code == 200, handed.text
    queue = client.get("/v1/agent/queue", headers={"X-API-Key": keys["supervisor"]}).json()
    pending = sum(t["state"] == "pending" for t in queue)
    assert pending == 1
    sign_in(client, keys["supervisor"])
    shown = dict(re.findall(r'data-value="(\w+)">([^<]*)<', client.get("/console/").text))
    assert shown["queue_length"] == str(pending)


def test_models_page_shows_served_versions_and_agent_judged_accuracy(console) -> None:
    client, parts, keys = console
    bus = EmbeddedBus(parts.settings.path(parts.settings.events.log), partitions=8)
    judged = [(True, "champion"), (True, "champion"), (False, "champion"), (False, "challenger")]
    bus.publish_now([FeedbackGiven(customer_id="C-1", kind="intent_confirmed", model="intent",
                                   model_version="3", variant=arm, correct=right)
                     for right, arm in judged])  # fmt: skip
    sign_in(client, keys["data_scientist"])
    page = client.get("/console/models").text
    assert '<th scope="row">intent</th><td>intent</td>' in page  # served: registered model
    rows = re.findall(r'<tr><th scope="row">intent</th><td>3</td><td>(\w+)</td><td>(\d+)</td>'
                      r"<td>([^<]+)</td>", page)  # fmt: skip
    assert rows == [("challenger", "1", "0.0%"), ("champion", "3", "66.7%")]


def test_desk_suggests_knowledge_base_answers_for_the_customers_last_message(console) -> None:
    client, _, keys = console
    chat = open_web_chat(client, {"X-API-Key": keys["supervisor"]})
    for mid, text in (("m-1", "转人工"), ("m-2", "补办银行卡需要多久")):
        said = client.post("/v1/channels/web_chat/messages", headers=chat["headers"],
                           json={"text": text, "message_id": mid})  # fmt: skip
        assert said.status_code == 200, said.text
    agent = {"X-API-Key": keys["agent"]}
    client.put("/v1/agent/agents/li", json={"skills": ["general"]}, headers=agent)
    ticket = client.get("/v1/agent/queue", headers=agent).json()[0]["id"]
    path = f"/console/api/desk/tickets/{ticket}/suggestions"
    csrf = sign_in(client, keys["agent"])
    accepted = client.post(f"/v1/agent/tickets/{ticket}/accept", json={"agent_id": "li"},
                           headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert accepted.status_code == 200, accepted.text
    found = client.get(path).json()["suggestions"]
    assert found and found[0]["intent"] == "zh_card_replacement_fee"
    assert client.get("/console/api/desk/tickets/T-none/suggestions").status_code == 404
    client.cookies.clear()
    sign_in(client, keys["marketer"])  # no desk.work
    assert client.get(path).status_code == 403


def test_sign_in_and_sign_out_are_audited_with_key_id_and_role_never_the_key(console) -> None:
    client, parts, keys = console
    audit = parts.access.audit
    csrf = sign_in(client, keys["agent"])
    client.post("/console/logout", headers={"X-CSRF-Token": csrf})
    entries = {e["action"]: e for e in audit.query("default", actor="li", limit=50)
               if e["action"].startswith("console.")}  # fmt: skip
    assert set(entries) == {"console.sign_in", "console.sign_out"}
    key_id = parts.access.guard.authenticator.authenticate(None, keys["agent"]).key_id
    for entry in entries.values():
        assert entry["actor_role"] == "agent" and entry["effect"] == "permit"
        assert entry["resource_id"] == key_id and key_id in entry["detail"]
        assert '"role": "agent"' in entry["detail"]
        assert keys["agent"] not in str(entry) and keys["agent"][-12:] not in str(entry)
    assert audit.verify().ok
    # A refused key opens no session and writes no sign-in.
    client.get("/console/login")
    client.post("/console/login", data={"api_key": "nope", "login_token":
                                        client.cookies.get("scrm_console_login")})  # fmt: skip
    assert len([e for e in audit.query("default", action="console.sign_in")]) == 1


def test_models_page_says_no_runs_yet_when_the_loop_has_not_run(console) -> None:
    client, parts, keys = console
    loop_dir = parts.settings.path(parts.settings.loop.state_dir)
    loop_dir.mkdir(parents=True, exist_ok=True)
    (loop_dir / "monitor_intent.json").write_text("{not json")  # damaged: also "no runs"
    sign_in(client, keys["data_scientist"])
    answer = client.get("/console/models")
    assert answer.status_code == 200
    section = answer.text.split('id="loop-intent"')[1].split("</section>")[0]
    assert section.count("no runs yet") == 3  # drift, experiments, runs
    assert 'id="snapshot">Last feedback snapshot:\nno runs yet' in answer.text


def test_models_page_shows_drift_experiments_and_audited_loop_runs(console) -> None:
    client, parts, keys = console
    settings = parts.settings
    loop_dir = settings.path(settings.loop.state_dir)
    loop_dir.mkdir(parents=True, exist_ok=True)
    (loop_dir / "monitor_intent.json").write_text(json.dumps({
        "model": "intent", "champion": "3", "drift_share": 0.625,
        "versions": {"3": {"drift_share": 0.625, "mean_confidence": 0.81, "abstain_rate": 0.05,
                           "online_accuracy": 0.9, "alerts": ["drift"]},
                     "4": {"drift_share": 0.125, "mean_confidence": 0.85, "abstain_rate": 0.02,
                           "online_accuracy": None, "alerts": []}}}))  # fmt: skip
    (loop_dir / "intent.json").write_text(
        json.dumps(
            {
                "experiment": {
                    "started_at": "2026-12-06T01:00:00+00:00",
                    "champion": "4",
                    "challenger": "5",
                    "p_value": 0.2,
                },
                "history": [
                    {
                        "started_at": "2026-12-01T00:00:00+00:00",
                        "champion": "3",
                        "challenger": "4",
                        "action": "promote",
                        "reason": "p < alpha",
                        "lift": 0.07,
                        "interval": [0.02, 0.12],
                        "p_value": 0.01,
                        "srm_p": 0.6,
                    }
                ],
            }
        )
    )
    feedback = settings.path(settings.loop.feedback_dir)
    feedback.mkdir(parents=True, exist_ok=True)
    (feedback / "snapshot.json").write_text(json.dumps({"feedback_rows": 42, "served_turns": 99}))
    parts.access.audit.record(
        actor="scrm-loop",
        actor_tenant="platform",
        actor_role="system",
        action="loop.trigger",
        resource_type="model",
        resource_id="intent",
        resource_tenant=None,
        effect="allow",
        rule="learning-loop",
        detail={"reasons": ["drift: 0.62 of columns drifted > 0.5"]},
    )
    sign_in(client, keys["data_scientist"])
    page = client.get("/console/models").text
    section = page.split('id="loop-intent"')[1].split("</section>")[0]
    assert (
        '<th scope="row">3 (champion)</th><td>0.625</td><td>0.810</td><td>5.0%</td>'
        "<td>90.0%</td><td>drift</td>" in section
    )
    assert '<th scope="row">running</th><td>4</td><td>5</td>' in section
    assert (
        '<th scope="row">promote</th><td>3</td><td>4</td><td>0.070</td>'
        "<td>[0.020, 0.120]</td><td>0.010</td><td>0.600</td><td>p &lt; alpha</td>"
    ) in section
    assert "<td>trigger</td><td>drift: 0.62 of columns drifted &gt; 0.5</td>" in section
    assert 'href="http://127.0.0.1:5000/#/models/intent"' in section
    assert "42 feedback rows, 99 served turns" in page
    other = page.split('id="loop-intent_en"')[1].split("</section>")[0]
    assert other.count("no runs yet") == 3  # the other task has not run: no error either
    sign_in(client, keys["agent"])
    assert client.get("/console/models", follow_redirects=False).status_code == 403


def test_the_event_log_forgets_an_erased_customer_it_already_read(tmp_path: Path) -> None:
    from crm.console.kpis import EventLog
    from events.schemas import ErasureRequested

    bus = EmbeddedBus(tmp_path / "bus.db", partitions=4)
    bus.publish_now(traffic(datetime.now(UTC)))
    log = EventLog(tmp_path / "bus.db")
    assert {r.customer for r in log.records("default")} == {"C-1", "C-2", "C-3"}
    bus.publish_now([ErasureRequested(customer_id="C-1")])
    assert {r.customer for r in log.records("default")} == {"C-2", "C-3"}
