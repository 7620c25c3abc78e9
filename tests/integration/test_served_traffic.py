"""Served history end to end: `scrm simulate traffic` through the running gateway, the turns
on the bus, `scrm events history` (the served_history stage) and `scrm features build`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import BIN, run

pytestmark = pytest.mark.integration


def test_simulated_traffic_through_the_gateway_becomes_the_training_history(
    pipeline_workspace: Path, server: str, service_key: str
) -> None:
    root = pipeline_workspace
    # the session's other tests serve turns too (WeCom, web chat): this run's are the new ones
    before = served_history(root)
    sent = run(
        [str(BIN / "scrm"), "simulate", "traffic", "--rate", "8", "--duration", "5",
         "--url", server, "--seed", "7"],  # fmt: skip
        root, env={"SCRM_API_KEY": service_key},
    )  # fmt: skip
    result = json.loads(sent.stdout.strip().splitlines()[-1])
    assert result["messages"] == 40 and result["statuses"].get("200", 0) >= 36, result
    assert result["sessions"] < 40  # sessions of several turns

    # The dialogue published a turn event for each bot turn (a session handed to an agent
    # sends the customer's next messages to the desk, not through a bot turn); the
    # application's processors keep the history: wait until it holds every turn on the bus.
    deadline = time.monotonic() + 60
    while True:
        served = served_history(root)
        on_bus = turns_on_bus(root)
        if (on_bus and len(served) == on_bus) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(served) == on_bus  # every turn the bus stored is in the history, once
    web, web_before = (f[f["channel"] == "web_chat"] for f in (served, before))
    # most answered turns were bot turns (web chat answers in the request: none arrive late)
    assert len(web) - len(web_before) >= result["statuses"]["200"] // 2
    simulated = set(web["customer_id"]) - set(web_before["customer_id"])
    assert 0 < len(simulated) <= result["customers"]

    # the build_features step on them (into a folder of its own: the session's store stays)
    run([str(BIN / "scrm"), "features", "build"], root,
        env={"SCRM__FEATURES__OUTPUT_DIR": "data/features-served"})  # fmt: skip
    stats = pd.read_parquet(root / "data/features-served/conversation_stats.parquet")
    assert simulated <= set(stats["customer_id"])


def served_history(root: Path) -> pd.DataFrame:
    """The served_history stage's output, rebuilt from the bus now."""
    run([str(BIN / "scrm"), "events", "history"], root)
    return pd.read_parquet(root / "data/served/conversation_events.parquet")


def turns_on_bus(root: Path) -> int:
    """turn.recorded events in the embedded log (the engine the workspace uses)."""
    import sqlite3

    with sqlite3.connect(root / "data/events/bus.db") as db:
        return db.execute("SELECT COUNT(*) FROM log WHERE type = 'turn.recorded'").fetchone()[0]
