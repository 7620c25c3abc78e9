"""A redelivered message records its turn once (issue 26, found by the soak's fault design).

The gateway logs a message, the dialogue publishes its turn (durable), and only then does the
intake log mark the message done: a process killed in between leaves the message to the intake
worker, which hands it to the dialogue again. The turn's event id is derived from the message
id, so the bus drops the second copy; turns without a message id keep random ids.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from crm.conversation.manager import Turn
from crm.streams.recorder import BusRecorder
from events.embedded import EmbeddedBus
from tests.unit.test_dialogue import intent, make_manager


def stored(bus: EmbeddedBus) -> list[str]:
    return [t for (t,) in bus.db.execute("SELECT type FROM log ORDER BY position")]


def test_a_message_handled_twice_publishes_its_turn_and_handoff_once(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db", partitions=4)
    known = {"查余额": intent("balance"), "转人工": intent("balance")}
    manager = make_manager(tmp_path, known, record_event=BusRecorder(bus.publish_now))
    first = Turn("wecom", "wx1", "查余额", customer_id="C-1", tenant="t", message_id="m-1")
    handoff = Turn("wecom", "wx1", "转人工", customer_id="C-1", tenant="t", message_id="m-2")
    for turn in (first, first, handoff, handoff):  # each one redelivered after a crash
        manager.handle(turn)
    assert stored(bus) == ["turn.recorded", "turn.recorded", "handoff.requested"]
    other_tenant = Turn("wecom", "wx1", "查余额", customer_id="C-1", tenant="u", message_id="m-1")
    manager.handle(other_tenant)  # same vendor id, another corp: a different message
    no_id = Turn("web_chat", "tab", "查余额", customer_id="C-1")
    manager.handle(no_id)
    manager.handle(no_id)  # no message id: nothing to know it by, both kept
    assert stored(bus).count("turn.recorded") == 5
    asyncio.run(bus.close())
