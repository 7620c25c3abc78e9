"""The console in a real browser: Playwright for Python driving Debian's Chromium
(`make console-deps`) against the gateway app on a loopback port. Each role signs in and sees
only its pages; a customer's web chat is handed off, an agent accepts and replies in the desk
and the customer sees the reply; a KPI drills down to one masked transcript and the 360;
every input is labelled, text has contrast, and the keyboard reaches the controls.

Screenshots go to test-artifacts/console/ (SCRM_CONSOLE_DOCS=1 also refreshes the ones the
README shows, docs/console/). Bounded: every wait has a timeout; the module takes < 90 s.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from events.codec import decode
from tests.console_server import PHONE, ConsoleServer, publish_traffic, start_console

CHROMIUM = Path(os.environ.get("SCRM_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
DOCS = REPO / "docs" / "console"
NAV = {
    "supervisor": {"overview", "desk", "customers", "alerts"},
    "agent": {"overview", "desk", "customers"},
    "marketer": {"customers", "marketing"},
    "data_scientist": {"models"},
    "admin": {"models", "alerts"},
}
WAIT_MS = 10_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: `make console-deps` installs Debian's chromium",
                allow_module_level=True)  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> ConsoleServer:
    server = start_console(tmp_path_factory.mktemp("console"))
    publish_traffic(server.parts, customers=40)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


def shot(page, name: str, docs: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("SCRM_CONSOLE_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / f"{name}.png")


def signed_in(browser, live: ConsoleServer, role: str, lang: str = "en"):
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(f"{live.url}/console/login")
    page.get_by_label("API" if lang == "en" else "API").fill(live.keys[role])
    page.select_option("#lang", lang)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{live.url}/console/**")
    return context, page


@pytest.mark.parametrize("role", sorted(NAV))
def test_each_role_signs_in_and_sees_only_its_pages(browser, live, role: str) -> None:
    context, page = signed_in(browser, live, role)
    shown = set(page.eval_on_selector_all("[data-nav]", "els => els.map(e => e.dataset.nav)"))
    assert shown == NAV[role]
    cookie = next(c for c in context.cookies() if c["name"] == "scrm_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    for name in sorted(NAV[role]):
        page.click(f"[data-nav={name}]")
        page.wait_for_load_state("load")
        assert page.locator("h1").count() == 1
        shot(page, f"{role}-{name}", docs=(role, name) in {("supervisor", "overview"),
                                                           ("marketer", "marketing")})  # fmt: skip
    forbidden = {"desk", "marketing", "models", "alerts"} - NAV[role]
    for name in forbidden:
        answer = page.goto(f"{live.url}/console/{name}")
        assert answer.status == 403, (role, name)
    context.close()


def test_agent_accepts_a_handed_off_web_chat_and_the_customer_sees_the_reply(browser, live):
    customer = {"X-API-Key": live.keys["customer"]}
    with httpx.Client(base_url=live.url, timeout=10) as http:
        opened = http.post("/v1/channels/web_chat/sessions", headers=customer, json={}).json()
        chat = {**customer, "X-Chat-Session": opened["session_token"]}
        for mid, text in (("m-handoff", "转人工"), ("m-ask", "补办银行卡需要多久")):
            said = http.post("/v1/channels/web_chat/messages", headers=chat,
                             json={"text": text, "message_id": mid})  # fmt: skip
            assert said.status_code == 200, said.text
        context, page = signed_in(browser, live, "agent")
        page.goto(f"{live.url}/console/desk")
        page.wait_for_selector("#desk[data-live=socket]")  # live over the console's socket
        page.get_by_role("button", name="Go on duty").click()
        page.wait_for_selector("#duty:has-text('on duty')")
        accept = page.locator("[data-accept]").first
        accept.wait_for()
        accept.click()
        page.wait_for_selector("#ticket-meta:has-text('open')")
        page.locator("[data-suggestion]").first.click()  # the knowledge base's closest answer
        assert "补卡" in page.get_by_label("Reply to the customer").input_value()
        page.get_by_label("Reply to the customer").fill("您好，我是小李，马上为您处理")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#lines li.agent")
        page.wait_for_selector("#queue li.ticket.open")  # listed under "my conversations"
        shot(page, "agent-desk-reply", docs=True)
        deadline = time.monotonic() + 10
        while True:
            seen = http.get(f"/v1/channels/web_chat/sessions/{opened['session_id']}",
                            headers=chat)  # fmt: skip
            assert seen.status_code == 200, seen.text
            history = seen.json()["history"]
            agent_lines = [h["text"] for h in history if h["role"] == "agent"]
            if agent_lines or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "您好，我是小李，马上为您处理" in agent_lines
        # The customer answers: pushed to the open conversation (the poll is 30 s while live).
        said = http.post("/v1/channels/web_chat/messages", headers=chat,
                         json={"text": "好的谢谢", "message_id": "m-thanks"})  # fmt: skip
        assert said.status_code == 200, said.text
        page.wait_for_selector("#lines li:has-text('好的谢谢')", timeout=5_000)
        ticket = page.locator("#ticket-meta").inner_text().split(" · ")[0]
        page.select_option("#outcome", "solved")
        page.get_by_role("button", name="Resolve").click()  # feedback `resolved`, then close
        page.wait_for_selector("#desk-status:has-text('/close')")
        closed = http.get(f"/v1/agent/tickets/{ticket}",
                          headers={"X-API-Key": live.keys["supervisor"]}).json()  # fmt: skip
        assert closed["state"] not in ("pending", "open"), closed
        context.close()
    log = sqlite3.connect(live.parts.settings.path(live.parts.settings.events.log))
    rows = log.execute("SELECT payload FROM log WHERE type = 'feedback.given'").fetchall()
    events = [decode(payload) for (payload,) in rows]
    outcomes = [e for e in events if e.type == "feedback.given" and e.kind == "resolved"]
    assert [(e.ticket_id, e.outcome, e.agent) for e in outcomes] == [(ticket, "solved", "li")]


def test_drill_from_a_kpi_to_one_masked_transcript_and_the_360(browser, live) -> None:
    context, page = signed_in(browser, live, "supervisor")
    page.goto(f"{live.url}/console/?hours=24")
    messages = page.locator("[data-value=messages]").inner_text()
    api = httpx.get(f"{live.url}/v1/analytics/overview?hours=24",
                    headers={"X-API-Key": live.keys["supervisor"]}).json()  # fmt: skip
    assert messages == str(api["total"]["messages"])
    page.evaluate("window.scrmMarker = 'no reload'")
    publish_traffic(live.parts, customers=3)  # 3 more turns: the page refreshes by itself
    more = str(api["total"]["messages"] + 3)
    page.wait_for_selector(f"[data-value=messages]:text-is('{more}')", timeout=15_000)
    assert page.evaluate("window.scrmMarker") == "no reload"
    page.click("[data-kpi=messages]")  # the number -> the table by channel
    page.click("tr[data-channel=web_chat] [data-channel-messages]")
    page.wait_for_url("**/console/drill/web_chat**")
    page.click("tr[data-intent=balance] th a")
    page.wait_for_url("**/conversations**")
    page.locator("a[data-conversation]:has-text('C-100')").first.click()
    page.wait_for_selector("#transcript li")
    text = page.locator("#transcript").inner_text()
    assert PHONE not in page.content()
    assert "[PHONE]" in text or "138****5678" in text  # masked on the bus or at the viewer's level
    shot(page, "supervisor-transcript", docs=True)
    page.click("[data-customer-link]")
    page.wait_for_selector("#features")
    assert "tenure" in page.locator("#features").inner_text()
    shot(page, "supervisor-customer-360", docs=True)
    context.close()


A11Y = """() => {
  const problems = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`))
      || el.getAttribute('aria-label') || el.closest('label');
    if (!labelled) problems.push('unlabelled ' + el.outerHTML.slice(0, 60));
  }
  const lum = (rgb) => {
    const c = rgb.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map(v => v / 255)
      .map(v => v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const bg = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const b = getComputedStyle(e).backgroundColor;
      if (b && !b.startsWith('rgba(0, 0, 0, 0)') && b !== 'transparent') return b;
    }
    return 'rgb(255, 255, 255)';
  };
  const texts = 'main p, main td, main th, main a, main label, main button, header a, h1, h2';
  for (const el of document.querySelectorAll(texts)) {
    if (!el.offsetParent) continue;
    const a = lum(getComputedStyle(el).color), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) {
      problems.push(`contrast ${ratio.toFixed(2)} ${el.tagName} ${el.textContent.slice(0, 30)}`);
    }
  }
  return problems;
}"""


def accessible(page, name: str) -> None:
    """Labels and contrast (A11Y), then the keyboard: the skip link first, then focus moves
    through distinct controls."""
    assert page.evaluate(A11Y) == [], name
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip", name
    seen = set()
    for _ in range(6):
        page.keyboard.press("Tab")
        seen.add(page.evaluate("document.activeElement.outerHTML.slice(0, 80)"))
    assert len(seen) >= 3, (name, seen)  # focus moves through distinct controls


@pytest.mark.parametrize("role", ["supervisor", "marketer", "data_scientist"])
def test_every_page_has_labels_contrast_and_keyboard_focus(browser, live, role: str) -> None:
    context, page = signed_in(browser, live, role)
    for name in sorted(NAV[role]):
        page.goto(f"{live.url}/console/{'' if name == 'overview' else name}")
        accessible(page, name)
    context.close()


def test_the_drill_down_pages_have_labels_contrast_and_keyboard_focus(browser, live) -> None:
    """Channel -> conversations -> transcript -> customer 360, reached by their links."""
    context, page = signed_in(browser, live, "supervisor")
    page.goto(f"{live.url}/console/drill/web_chat?hours=24")
    page.wait_for_selector("tr[data-intent=balance]")
    accessible(page, "channel")
    page.click("tr[data-intent=balance] th a")
    page.wait_for_url("**/conversations**")
    page.wait_for_selector("a[data-conversation]")
    accessible(page, "conversations")
    page.locator("a[data-conversation]:has-text('C-100')").first.click()
    page.wait_for_selector("#transcript li")
    accessible(page, "transcript")
    page.click("[data-customer-link]")
    page.wait_for_selector("#features")
    accessible(page, "customer 360")
    context.close()
