"""First paint of every console page, in Debian's Chromium driven by Playwright, over the real
gateway app (crm.api.build_api) with a served history on the bus.

    .venv/bin/python bench/console_paint.py [--events 50000] [--runs 5]

The app runs in this process (uvicorn on a loopback port) over stub deployments: the pages
read the bus log, the desk, the 360 features, the alert list and the readiness of models, and
only the bus is large here. The history is `--events` turns over 30 days, 4 channels, 20
intents, 5% handed off (each with assignment, agent reply and resolution), 2% rated: about
what `scrm simulate traffic` leaves after a month at a few turns a minute. Each page is loaded
`--runs` times in a fresh tab; the figure is the median `first-contentful-paint` (ms), with
the server's time to the first byte beside it. Writes bench/results/console_first_paint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHANNELS = ("web_chat", "wecom", "dingtalk", "mqtt")


class Remote:
    """A deployment method as a Serve handle exposes it (`.remote(...)` -> awaitable)."""

    def __init__(self, function: Any):
        self.function = function

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return self.function(*args, **kwargs)

        return call()


class StubModel:
    def __init__(self, name: str):
        self.status = Remote(lambda: {"model": name, "registered_model": name, "loaded": True,
                                      "versions": {"champion": "3", "challenger": "4"},
                                      "challenger_mode": "shadow"})  # fmt: skip


class StubConversation:
    """The Conversation handle: an empty desk queue (the pages' only call into it)."""

    def __init__(self) -> None:
        self.desk = Remote(lambda op, args: {"result": [] if op == "queue" else {}})
        self.turn = Remote(lambda message: None)


class StubFeatures:
    service = type("Service", (), {"name": "customer_360_v1"})()

    def get(self, customer_id: str, at: Any = None) -> dict | None:
        return {"tenure": 12.0, "monetary_90d": 88.0} if customer_id.startswith("C-") else None

    def get_many(self, ids: list[str]) -> list:
        return [self.get(i) for i in ids]

    def record(self, event: Any) -> dict:
        return {}


def history(events: int, seed: int = 7) -> list:
    """`events` turns (plus their handoff, reply and rating events) over the last 30 days."""
    from events.schemas import AgentReplied, FeedbackGiven, Handoff, TurnRecorded

    rng, now, out = random.Random(seed), datetime.now(UTC), []
    for n in range(events):
        customer = f"C-{rng.randrange(5000)}"
        at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        channel, handoff = rng.choice(CHANNELS), rng.random() < 0.05
        if n == 0:  # the conversation the transcript page opens
            customer, channel = "C-1", "web_chat"
        out.append(TurnRecorded(customer_id=customer, channel=channel, session=f"s{n // 4}",
                                intent=f"intent_{rng.randrange(20)}", handoff=handoff,
                                reply_kind="handoff" if handoff else rng.choice(
                                    ("answer", "task", "chitchat", "clarify")), at=at))  # fmt: skip
        if handoff:
            wait = rng.uniform(5, 600)
            out += [Handoff(customer_id=customer, type="handoff.requested", at=at),
                    Handoff(customer_id=customer, type="handoff.assigned", agent="li",
                            at=at + timedelta(seconds=wait)),
                    AgentReplied(customer_id=customer, agent="li",
                                 at=at + timedelta(seconds=wait + 20)),
                    Handoff(customer_id=customer, type="handoff.resolved", agent="li",
                            at=at + timedelta(seconds=wait + 300))]  # fmt: skip
        if rng.random() < 0.02:
            out.append(FeedbackGiven(customer_id=customer, kind="csat", csat=rng.randint(1, 5),
                                     at=at + timedelta(seconds=30)))  # fmt: skip
    return out


def start_app(root: Path, events: int) -> tuple[str, dict[str, str], Any]:
    import uvicorn

    from crm.api import build_api
    from crm.parts import build_parts
    from events.embedded import EmbeddedBus
    from privacy.auth import ApiKeyStore, Subject
    from settings import load_settings

    base = load_settings(REPO, environ={})
    privacy = base.privacy.model_copy(update={"policy_file": str(REPO / base.privacy.policy_file)})
    settings = base.model_copy(update={"root": root, "privacy": privacy})
    features = StubFeatures()
    models = {name: StubModel(name) for name in settings.serving.models}
    parts = build_parts(settings, models, StubConversation(), features, features,
                        lambda _: features)  # fmt: skip
    bus = EmbeddedBus(settings.path(settings.events.log), partitions=8)
    made = history(events)
    for start in range(0, len(made), 5000):
        bus.publish_now(made[start : start + 5000])
    store = ApiKeyStore(settings.path(settings.privacy.api_keys_file))
    keys = {role: store.issue(Subject(id=sub, tenant="default", role=role, clearance=3,
                                      rate_per_s=1000.0, burst=1000))
            for role, sub in (("supervisor", "sup"), ("marketer", "mk"),
                              ("data_scientist", "ds"))}  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(build_api(parts), host="127.0.0.1",
                                           port=free_port(), log_level="warning"))  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start in 30 s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}", keys, (server, parts)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PAGES = {  # role -> pages it measures
    "supervisor": ["/console/", "/console/drill/web_chat",
                   "/console/drill/web_chat/conversations?intent=intent_3",
                   "/console/conversations/web_chat/C-1/s0", "/console/desk",
                   "/console/customers/C-1", "/console/alerts"],
    "marketer": ["/console/marketing"],
    "data_scientist": ["/console/models"],
}  # fmt: skip
PAINT = """() => {
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const nav = performance.getEntriesByType('navigation')[0];
  return {fcp: fcp ? fcp.startTime : null, ttfb: nav.responseStart - nav.startTime};
}"""


def measure(url: str, keys: dict[str, str], runs: int, chromium: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        for role, pages in PAGES.items():
            context = browser.new_context(viewport={"width": 1360, "height": 860})
            login = context.new_page()
            login.goto(f"{url}/console/login")
            login.fill("#api_key", keys[role])
            login.click("button[type=submit]")
            login.wait_for_load_state("load")
            login.close()
            for path in pages:
                samples = []
                for _ in range(runs):
                    tab = context.new_page()
                    answer = tab.goto(url + path, wait_until="load")
                    assert answer is not None and answer.status == 200, (path, answer)
                    tab.wait_for_timeout(100)  # let the paint entry land
                    samples.append(tab.evaluate(PAINT))
                    tab.close()
                fcp = [s["fcp"] for s in samples if s["fcp"] is not None]
                out[path] = {
                    "first_contentful_paint_ms": round(statistics.median(fcp), 1),
                    "ttfb_ms": round(statistics.median(s["ttfb"] for s in samples), 1),
                    "max_fcp_ms": round(max(fcp), 1),
                    "first_run_fcp_ms": round(fcp[0], 1),  # cold: the bus log read first
                }
            context.close()
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default=str(REPO / "bench/results/console_first_paint.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        url, keys, (server, parts) = start_app(Path(tmp), args.events)
        setup_s = time.perf_counter() - started
        pages = measure(url, keys, args.runs, args.chromium)
        from crm.console.kpis import EventLog

        # A fresh reader of the whole log: what the gateway's start-up warm-up reads (measured
        # after the pages, so the app's own warm-up thread does not compete with it).
        cold = time.perf_counter()
        log = EventLog(parts.settings.path(parts.settings.events.log))
        log_events = len(log.records("default"))
        cold_s = time.perf_counter() - cold
        server.should_exit = True
        parts.stop()
    result = {
        "command": "python bench/console_paint.py "
        f"--events {args.events} --runs {args.runs}",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "turn_events": args.events, "runs_per_page": args.runs,
        "load_average_1m": os.getloadavg()[0], "cpus": os.cpu_count(),
        "setup_s": round(setup_s, 1), "cold_log_read_s": round(cold_s, 2),
        "log_records": log_events, "pages": pages,
        "slowest_fcp_ms": max(p["first_contentful_paint_ms"] for p in pages.values()),
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
