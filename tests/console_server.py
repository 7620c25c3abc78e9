"""A live gateway app with the console on a free loopback port, over the same in-process fakes
as tests/unit/test_application.py (dialogue, desk, features), for browser tests: uvicorn in a
thread of the test process, stopped by its flag."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn

from crm.api import build_api
from crm.parts import build_parts
from crm.streams.recorder import BusRecorder
from events.embedded import EmbeddedBus
from events.schemas import FeedbackGiven, Handoff, MessageReceived, TurnRecorded
from tests.channel_setup import free_port
from tests.support import FakeFeatures, LocalConversation, application_settings, issue_test_key
from tests.unit.test_application import CUSTOMER, models
from tests.unit.test_dialogue import intent, make_manager

ROLES = {  # role -> (subject, clearance)
    "supervisor": ("sup", 3), "agent": ("li", 2), "marketer": ("mk", 1),
    "data_scientist": ("ds", 1), "admin": ("adm", 3), "customer": (CUSTOMER, 2),
}  # fmt: skip
PHONE = "13812345678"


@dataclass
class ConsoleServer:
    url: str
    parts: Any
    keys: dict[str, str]
    server: Any
    thread: threading.Thread
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.parts.stop()


def start_console(
    root: Path,
    customers: tuple[str, ...] = (),
    record_turns: bool = False,
    port: int = 0,
    start_worker: bool = False,
    intake: dict | None = None,
) -> ConsoleServer:
    """`customers`: more known customers than C-100; `record_turns`: the dialogue publishes
    its turns on the bus as the Conversation deployment does; `start_worker`: the intake worker
    runs beside the routes as in a gateway replica (the soak and its faults need both);
    `intake`: settings of the intake log over params.yaml's (a short lease, the Redis backend)."""
    settings = application_settings(root)
    if intake:
        channels = settings.channels.model_copy(
            update={"intake": settings.channels.intake.model_copy(update=intake)}
        )
        settings = settings.model_copy(update={"channels": channels})
    manager = make_manager(root, {"查余额": intent("balance"), "转人工": intent("balance")})
    known = {c: {"tenure": 3.0, "monetary_90d": 1.0} for c in customers}
    features = FakeFeatures({**known, CUSTOMER: {"tenure": 12.0, "monetary_90d": 10.0}})
    parts = build_parts(settings, models(), LocalConversation(manager), features, features,
                        lambda _: features)  # fmt: skip
    if record_turns:
        manager.record_event = BusRecorder(parts.bus.publish, "default")
    # Service hours: agents may read customer data whatever the clock says when tests run.
    parts.access.guard.clock = lambda: datetime(2026, 12, 7, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    keys = {role: issue_test_key(settings, sub, "default", role, clearance=level,
                                 rate_per_s=1000.0, burst=1000)
            for role, (sub, level) in ROLES.items()}  # fmt: skip
    port = port or free_port()
    api = build_api(parts)
    if start_worker:  # on uvicorn's loop, as Gateway.__init__ does on the replica's
        api.router.on_startup.append(parts.start)
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console's uvicorn did not start in 20 s")
        time.sleep(0.05)
    return ConsoleServer(f"http://127.0.0.1:{port}", parts, keys, server, thread)


def publish_traffic(parts: Any, now: datetime | None = None, customers: int = 3) -> None:
    """Turns on web chat and WeCom for `customers` customers (C-100 first, who exists), one
    handoff answered and resolved, one rating."""
    now = now or datetime.now(UTC)
    bus = EmbeddedBus(parts.settings.path(parts.settings.events.log), partitions=8)
    at = lambda s: now - timedelta(seconds=s)  # noqa: E731
    events: list = [
        MessageReceived(customer_id=CUSTOMER, channel="web_chat", session="s1",
                        text=f"call me at {PHONE}", at=at(600)),
        TurnRecorded(customer_id=CUSTOMER, channel="web_chat", session="s1", intent="balance",
                     reply_kind="handoff", handoff=True, at=at(590)),
        Handoff(customer_id=CUSTOMER, type="handoff.requested", at=at(590)),
        Handoff(customer_id=CUSTOMER, type="handoff.assigned", agent="li", at=at(530)),
        Handoff(customer_id=CUSTOMER, type="handoff.resolved", agent="li", at=at(300)),
        FeedbackGiven(customer_id=CUSTOMER, kind="csat", csat=5, at=at(200)),
    ]  # fmt: skip
    for n in range(1, customers):
        channel = "wecom" if n % 2 else "web_chat"
        events.append(TurnRecorded(customer_id=f"C-{100 + n}", channel=channel,
                                   session=f"s{n + 1}", intent="card" if n % 3 else "balance",
                                   reply_kind="answer", at=at(n % 3000)))  # fmt: skip
    bus.publish_now(events)
