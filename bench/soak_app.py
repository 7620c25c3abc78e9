"""The soaked application as a process, and what it stored (issue 26).

`SoakApp` starts `python -m tests.soak_server` (the gateway app over in-process fakes of the
model and Conversation deployments, embedded stores in a throwaway root) on a loopback port,
with channel secrets made for the run, and can SIGKILL and restart it over the same stores.
`reconcile` reads those stores the way the integration tests do (the intake log's rows, the
web chat transcript, the bus log) and says, for every message the soak sent, whether it was
accepted, answered once and recorded once.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from events.codec import decode
from privacy.ids import opaque_id
from settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def channel_secrets() -> dict[str, str]:
    """WeCom and DingTalk secrets for this run only (what a corp's app settings would hold);
    no WeCom app secret: nothing is ever sent to a vendor API from a soak."""
    return {
        "SCRM_WECOM_TOKEN": opaque_id(12),
        "SCRM_WECOM_AES_KEY": base64.b64encode(os.urandom(32)).decode()[:43],
        "SCRM_WECOM_CORP_ID": f"wx{opaque_id(16)}",
        "SCRM_DINGTALK_APP_SECRET": opaque_id(32),
    }


@dataclass
class SoakApp:
    root: Path
    port: int
    customers: int
    intake: dict[str, Any] = field(default_factory=dict)  # intake settings over params.yaml's
    secrets: dict[str, str] = field(default_factory=channel_secrets)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        return load_settings(ROOT, environ={}).model_copy(update={"root": self.root})

    def start(self, timeout_s: float = 60.0) -> float:
        """Start the server and wait for /healthz; returns the seconds it took."""
        started = time.monotonic()
        env = {**os.environ, **self.secrets, "SCRM_SOAK_INTAKE": json.dumps(self.intake)}
        env.pop("SCRM_ROOT", None)
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.soak_server", str(self.root), str(self.port),
             str(self.customers)],  # fmt: skip
            cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"soak server exited {self.process.returncode}: see {log.name}")
            try:  # the keys are written once the routes answer
                up = httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
                if up and (self.root / "soak-keys.json").exists():
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"soak server not up after {timeout_s:.0f}s")

    def keys(self) -> dict[str, str]:
        return json.loads((self.root / "soak-keys.json").read_text(encoding="utf-8"))

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (the fault tests)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of the server and its children, and of this (client) process."""
        found: dict[str, float] = {}
        if self.process is not None and self.process.poll() is None:
            server = psutil.Process(self.process.pid)
            for proc in [server, *server.children(recursive=True)]:
                found[f"server:{proc.pid}"] = proc.memory_info().rss / 2**20
        found[f"client:{os.getpid()}"] = psutil.Process().memory_info().rss / 2**20
        return found

    def unfinished(self) -> int:
        """Messages the intake log holds but has not answered (pending or processing)."""
        states = Counter(state for state, _, _ in intake_rows(self)[0].values())
        return states["pending"] + states["processing"]

    def drain(self, timeout_s: float) -> float:
        """Wait until the intake worker has answered everything logged; returns seconds."""
        started = time.monotonic()
        while self.unfinished() and time.monotonic() - started < timeout_s:
            time.sleep(0.2)
        return time.monotonic() - started


Row = tuple[str, bool, str | None]  # state, has a reply, customer id


def intake_rows(app: SoakApp) -> tuple[dict[tuple[str, str], Row], int]:
    """The intake log's messages by (channel, message id), and its dead letters' count."""
    settings, config = app.settings, app.settings.channels.intake
    if config.backend == "redis" or app.intake.get("backend") == "redis":
        import redis

        client = redis.Redis.from_url(app.intake.get("redis_url", config.redis_url),
                                      decode_responses=True)  # fmt: skip
        stream = app.intake.get("stream", config.stream)
        states, replies = client.hgetall(f"{stream}:state"), client.hgetall(f"{stream}:replies")
        rows = {
            (fields["channel"], fields["message_id"]):
                (states.get(ref, "?"), ref in replies, fields.get("customer_id") or None)
            for ref, fields in client.xrange(stream)
        }  # fmt: skip
        dead = client.xlen(f"{stream}:dead") if client.exists(f"{stream}:dead") else 0
        client.close()
        return rows, dead
    path = settings.path(config.path)
    if not path.exists():
        return {}, 0
    with sqlite3.connect(path) as db:
        rows = {
            (channel, mid): (state, bool(has_reply), customer)
            for channel, mid, state, has_reply, customer in db.execute(
                "SELECT channel, message_id, state, reply IS NOT NULL, customer_id FROM intake"
            )
        }
        (dead,) = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
    return rows, dead


def reconcile(app: SoakApp, sent: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Every message the soak sent, against the stores: `sent` maps (channel, intake id) to
    {"accepted": the client saw a 2xx}; each customer's turn events are counted against the
    intake rows of that customer (the soak's customers send nothing else). Lost: accepted by
    the client but not answered (no row, not done, or no reply); duplicated: a transcript line
    or a turn event more than once (one row per message: the log's key is unique)."""
    settings = app.settings
    found, dead = intake_rows(app)
    rows = {key: (state, reply) for key, (state, reply, _) in found.items()}
    owner = {key: customer for key, (_, _, customer) in found.items()}
    logged = {key for key in sent if key in rows}
    answered = {key for key in logged if rows[key] == ("done", True)}
    accepted = {key for key, what in sent.items() if what["accepted"]}
    lost = sorted(f"{c}/{m}" for c, m in accepted - answered)
    with sqlite3.connect(settings.path(settings.channels.store)) as db:
        lines = Counter(
            (mid, role)
            for mid, role in db.execute("SELECT message_id, role FROM web_chat_transcript")
        )
    web = [mid for channel, mid in logged if channel == "web_chat"]
    transcript_twice = sum(1 for m in web for r in ("customer", "bot") if lines[(m, r)] > 1)
    transcript_missing = sum(1 for m in web for r in ("customer", "bot") if lines[(m, r)] == 0)
    with sqlite3.connect(settings.path(settings.events.log)) as db:
        turns = Counter(
            decode(payload).customer_id
            for (payload,) in db.execute("SELECT payload FROM log WHERE type = 'turn.recorded'")
        )
    expected = Counter(owner[key] for key in logged)  # web chat: the session's own customer
    events_twice = sum(max(0, turns[c] - n) for c, n in expected.items())
    events_missing = sum(max(0, n - turns[c]) for c, n in expected.items())
    return {
        "sent": len(sent),
        "accepted_by_client": len(accepted),
        "logged_by_server": len(logged),
        "logged_not_acknowledged": len(logged - accepted),  # answered, the client never knew
        "answered": len(answered),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "dead_letters": dead,
        "transcript_lines_missing": transcript_missing,
        "transcript_lines_twice": transcript_twice,
        "turn_events_missing": events_missing,
        "turn_events_twice": events_twice,
        "duplicated": transcript_twice + events_twice,
    }
