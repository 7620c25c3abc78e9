"""`scrm eval marketing --served`: the A/B campaign through the running gateway's HTTP API and
channels, with the synthetic population's replies and purchases from a traffic simulator.

1. A throwaway project, its own MQTT broker (mosquitto) and the gateway's application
   (pipelines/marketing_gateway.py) on free 127.0.0.1 ports; consent, earlier opt-outs and
   this morning's sends seeded as the world before the campaign.
2. The CRM logs the customers in: a web chat session for those reachable there
   (`POST /v1/channels/web_chat/sessions`), a linked kiosk for those reachable over MQTT
   (`PUT /v1/channels/mqtt/identities/{kiosk}`).
3. The marketer previews the audience, creates the A/B campaign with a holdout over MQTT then
   web chat, and launches it (`/v1/marketing/...`): the gateway's rules decide who is sent.
4. The simulator is the customers and the shop: a kiosk receives its message on
   `scrm/out/<kiosk>`, a web chat customer in the session's transcript; each answers with the
   response model of pipelines/marketing_eval.py (on the text they saw: the offer or not)
   through its channel (MQTT publish, `POST /v1/channels/web_chat/messages`), and the shop's
   order system posts the purchases (`POST .../{id}/outcomes`).
5. The result with its interval, SRM check and decision is read from `GET .../{id}/results`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pipelines.chat_client import free_port
from pipelines.marketing_eval import BASE, REPLY, SENT_EFFECT, TRUE_LIFT, population

OFFER = "满200减30"
SPEC: dict[str, Any] = {
    "name": "served-winback",
    "purpose": "promotions",
    "audience": {"any": [{"kind": "segment", "name": "at_risk"},
                         {"kind": "segment", "name": "loyal"}]},
    "channels": ["mqtt", "web_chat"],
    "templates": {"mqtt": {"text": "会员回馈"}, "web_chat": {"text": "会员回馈"}},
    "arms": [
        {"name": "control", "weight": 1},
        {"name": "offer", "weight": 1,
         "templates": {"mqtt": {"text": f"会员回馈：{OFFER}"},
                       "web_chat": {"text": f"会员回馈：{OFFER}"}}},
    ],
    "holdout": 0.1,
    "rate_per_s": {"mqtt": 100, "web_chat": 100},
}  # fmt: skip
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
ARRIVAL_S = 10.0  # after the launch: a message not there by then is counted as lost


def wait_port(port: int, until: float) -> None:
    while time.monotonic() < until:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where `now` is about noon: the run is never in quiet hours, whatever
    the machine's clock says (the quiet-hours rule has its own tests)."""
    offset = 12 - now.hour  # hours east of UTC; Etc/GMT names count the other way
    return f"Etc/GMT{-offset:+d}"


def people_file(n: int, seed: int) -> tuple[dict[str, Any], random.Random]:
    """The in-process eval's seeded population; its WeCom reach is the MQTT kiosks here."""
    rng = random.Random(seed)
    people = population(n, rng)
    records = people["records"]
    return {
        "segments": {r.customer_id: next(iter(r.segments)) for r in records},
        "consent": {r.customer_id: r.consent for r in records},
        "reach": {"mqtt": sorted(people["reach"]["wecom"]),
                  "web_chat": sorted(people["reach"]["web_chat"])},
        "opted_out": sorted(people["opted_out"]),
        "messaged_today": sorted(people["messaged_today"]),
    }, rng  # fmt: skip


@contextmanager
def running_gateway(root: Path, repo: Path, deadline: float):
    """mosquitto and the gateway process on free ports; both stopped by their own pids."""
    mqtt_port, port = free_port(), free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    log = (root / "gateway.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    gateway = subprocess.Popen(
        [sys.executable, "-m", "pipelines.marketing_gateway", str(root), str(repo), str(port),
         str(mqtt_port)], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        try:
            wait_port(mqtt_port, deadline)
            wait_port(port, deadline)
        except TimeoutError as error:
            tail = (root / "gateway.log").read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"{error}; the gateway's log ends:\n{tail}") from None
        yield f"http://127.0.0.1:{port}", mqtt_port
    finally:  # the gateway first (a clean MQTT disconnect), then its broker
        for process in (gateway, broker):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()


async def onboard(http: httpx.AsyncClient, crm: dict, people: dict) -> dict[str, Any]:
    """The CRM links each kiosk and opens each web chat session (customers logged in)."""
    slots = asyncio.Semaphore(16)

    async def link(customer: str) -> int:
        async with slots:
            answer = await http.put(f"/v1/channels/mqtt/identities/kiosk-{customer}",
                                    json={"customer_id": customer}, headers=crm)  # fmt: skip
        return answer.status_code

    async def session(customer: str) -> tuple[str, dict | None]:
        async with slots:
            answer = await http.post("/v1/channels/web_chat/sessions",
                                     json={"customer_id": customer}, headers=crm)  # fmt: skip
        return customer, answer.json() if answer.status_code == 200 else None

    linked = await asyncio.gather(*(link(c) for c in people["reach"]["mqtt"]))
    opened = await asyncio.gather(*(session(c) for c in people["reach"]["web_chat"]))
    sessions = {c: s for c, s in opened if s is not None}
    return {"linked": sum(code == 200 for code in linked), "sessions": sessions}


async def web_chat_inbox(http: httpx.AsyncClient, crm: dict, sessions: dict) -> dict[str, str]:
    """The marketing message in each customer's web chat transcript."""
    slots, found = asyncio.Semaphore(16), {}

    async def read(customer: str, session: dict) -> None:
        async with slots:
            answer = await http.get(f"/v1/channels/web_chat/sessions/{session['session_id']}",
                                    headers=crm)  # fmt: skip
        for line in answer.json().get("history", []) if answer.status_code == 200 else []:
            if line.get("role") == "marketing":
                found[customer] = line.get("text", "")

    await asyncio.gather(*(read(c, s) for c, s in sessions.items()))
    return found


def draw(people: dict, received: dict[str, dict], rng: random.Random) -> dict[str, Any]:
    """Who replies (received customers) and who buys (every audience member), from the
    response model of pipelines/marketing_eval.py, on the text each customer saw."""
    members = sorted(c for c, s in people["segments"].items() if s in ("at_risk", "loyal"))
    replies, purchases = [], []
    for customer in members:
        text = received.get(customer, {}).get("text")
        offer = text is not None and OFFER in text
        rate = BASE[people["segments"][customer]]
        if text is not None:
            rate += SENT_EFFECT + (TRUE_LIFT if offer else 0.0)
        if rng.random() < rate:
            purchases.append({"customer_id": customer, "kind": "converted",
                              "value": round(120 + rng.expovariate(1 / 80), 2)})  # fmt: skip
        if text is not None and rng.random() < REPLY["offer" if offer else "control"]:
            replies.append((customer, received[customer]["channel"]))
    return {"replies": replies, "purchases": purchases}


async def reply(http: httpx.AsyncClient, device: Any, sessions: dict,
                replies: list[tuple[str, str]]) -> dict[str, int]:  # fmt: skip
    """Each reply on the channel the customer got the message on: web chat through the
    traffic simulator's own turn (`pipelines.simulate.post`, retried on 429; the client
    carries the CRM's key), MQTT as the kiosk's publish."""
    from pipelines.simulate import Message, post

    slots, codes = asyncio.Semaphore(16), {"web_chat": 0, "mqtt": 0, "failed": 0}
    one_at_a_time = asyncio.Lock()  # the kiosks' client: QoS 1 publishes in order

    async def one(customer: str, channel: str) -> None:
        body = {"text": "好的，怎么用？", "message_id": uuid.uuid4().hex}
        async with slots:
            if channel == "web_chat":
                session = sessions[customer]
                said = Message(session["session_id"], customer, body["text"])
                status = await post(http, said, session["session_token"])
                codes["web_chat" if status == 200 else "failed"] += 1
            else:
                async with one_at_a_time:
                    await device.publish(f"scrm/in/kiosk-{customer}", json.dumps(body), qos=1)
                codes["mqtt"] += 1

    await asyncio.gather(*(one(c, channel) for c, channel in replies))
    return codes


async def kiosk_inbox(messages: Any, inbox: dict[str, dict]) -> None:
    """Every marketing message the kiosks receive on `scrm/out/<kiosk>` (until cancelled)."""
    async for incoming in messages:
        kiosk = str(incoming.topic).removeprefix("scrm/out/")
        payload = json.loads(bytes(incoming.payload))
        if payload.get("role") == "marketing" and kiosk.startswith("kiosk-"):
            inbox[kiosk.removeprefix("kiosk-")] = {"channel": "mqtt", "text": payload["reply"]}


async def wait_for(check: Any, until: float, every: float = 0.25) -> bool:
    while time.monotonic() < until:
        if await check():
            return True
        await asyncio.sleep(every)
    return False


async def launch(http: httpx.AsyncClient, mk: dict, spec: dict, deadline: float) -> dict:
    """The marketer's part: preview, create, launch; the audience count and the run's counts
    (a launch over the gateway's inline limit is queued: 202, followed to its end)."""
    preview = await http.post("/v1/marketing/audiences/preview", json=spec["audience"],
                              headers=mk)  # fmt: skip
    preview.raise_for_status()
    created = await http.post("/v1/marketing/campaigns", json=spec, headers=mk)
    created.raise_for_status()
    cid = created.json()["id"]
    launched = await http.post(f"/v1/marketing/campaigns/{cid}/launch", headers=mk)
    launched.raise_for_status()
    answer = launched.json()
    if launched.status_code == 202:  # a large audience: queued, sent by the replica's task
        answer = await launch_done(http, mk, answer["status_url"], deadline)
    return {"id": cid, "preview": preview.json(), "run": answer["run"],
            "queued": launched.status_code == 202}  # fmt: skip


async def launch_done(http: httpx.AsyncClient, mk: dict, url: str, deadline: float) -> dict:
    """Follow a queued launch until it is done; its run's counts as an inline launch has them."""
    job: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal job
        answer = await http.get(url, headers=mk)
        answer.raise_for_status()
        job = answer.json()
        return job.get("state") in ("done", "failed")

    if not await wait_for(finished, deadline) or job["state"] != "done":
        raise RuntimeError(f"the queued launch did not finish: {job}")
    run = job.get("run") or {}
    return {"run": run.get("counts", run)}


async def respond(http: httpx.AsyncClient, keys: dict, device: Any, campaign: dict,
                  sessions: dict, drawn: dict, deadline: float) -> dict[str, Any]:  # fmt: skip
    """The customers reply on their channels, the shop posts its orders; then the result,
    once the gateway attributed every reply (or at the deadline)."""
    mk = {"X-API-Key": keys["marketer"]}
    replied = await reply(http, device, sessions, drawn["replies"])
    orders = await http.post(f"/v1/marketing/campaigns/{campaign['id']}/outcomes",
                             json={"outcomes": drawn["purchases"]}, headers=mk)  # fmt: skip
    orders.raise_for_status()

    async def results() -> dict[str, Any]:
        answer = await http.get(f"/v1/marketing/campaigns/{campaign['id']}/results", headers=mk)
        answer.raise_for_status()
        return answer.json()

    async def attributed() -> bool:
        return replies_in(await results()) >= len(drawn["replies"])

    complete = await wait_for(attributed, deadline)
    found = await results()
    return {"replies_sent": replied, "replies_attributed": replies_in(found),
            "all_replies_attributed": complete, "purchases_posted": orders.json(),
            "results": found["summary"], "vs_holdout": found["vs_holdout"],
            "sent": found["sent"]}  # fmt: skip


async def campaign_over_http(url: str, mqtt_port: int, keys: dict, people: dict,
                             rng: random.Random, deadline: float) -> dict[str, Any]:  # fmt: skip
    """Steps 2-5 of the module's run, against the gateway at `url`."""
    import aiomqtt

    crm, mk = {"X-API-Key": keys["crm"]}, {"X-API-Key": keys["marketer"]}
    spec = {**SPEC, "quiet_hours": {"zone": daytime_zone(datetime.now(UTC))}}
    marks = [time.monotonic()]
    async with (
        httpx.AsyncClient(base_url=url, timeout=30, headers=crm) as http,
        aiomqtt.Client(
            "127.0.0.1", mqtt_port, identifier=f"kiosks-{uuid.uuid4().hex[:6]}"
        ) as device,
    ):
        await device.subscribe("scrm/out/#", qos=1)
        inbox: dict[str, dict] = {}
        listening = asyncio.create_task(kiosk_inbox(device.messages, inbox))
        onboarded = await onboard(http, crm, people)
        marks.append(time.monotonic())
        campaign = await launch(http, mk, spec, deadline)
        marks.append(time.monotonic())

        async def all_arrived() -> bool:
            chats = await web_chat_inbox(http, crm, onboarded["sessions"])
            inbox.update({c: {"channel": "web_chat", "text": t} for c, t in chats.items()})
            return len(inbox) >= campaign["run"].get("sent", 0)

        await wait_for(all_arrived, min(deadline, time.monotonic() + ARRIVAL_S))
        received = dict(inbox)
        drawn = draw(people, received, rng)
        marks.append(time.monotonic())
        answered = await respond(http, keys, device, campaign, onboarded["sessions"], drawn,
                                 deadline)  # fmt: skip
        marks.append(time.monotonic())
        listening.cancel()
    return {
        "audience": {"count": campaign["preview"]["count"],
                     "of": campaign["preview"].get("population")},
        "onboarded": {"kiosks_linked": onboarded["linked"],
                      "web_chat_sessions": len(onboarded["sessions"])},
        "launch": campaign["run"],
        "launch_queued": campaign["queued"],
        "received_by_channel": {c: sum(1 for r in received.values() if r["channel"] == c)
                                for c in ("mqtt", "web_chat")},
        "not_received": campaign["run"].get("sent", 0) - len(received),
        "opted_out_who_received": len(set(received) & set(people["opted_out"])),
        **answered,
        "seconds": dict(zip(STEPS, durations(marks), strict=True)),
    }  # fmt: skip


STEPS = ("onboard", "launch", "deliver", "outcomes_and_result")


def durations(marks: list[float]) -> list[float]:
    """Seconds between consecutive marks."""
    return [round(later - earlier, 2) for earlier, later in zip(marks, marks[1:], strict=False)]


def replies_in(found: dict[str, Any]) -> int:
    """Replies the gateway attributed to the campaign: reply rate x sent, over the arms."""
    metrics = found.get("result", {}).get("metrics", {}).values()
    rates = [m.get("reply_rate", {}) for m in metrics]
    return sum(round((r.get("value") or 0) * r.get("eligible", 0)) for r in rates)


def served_campaign(n: int, seed: int, repo: Path, budget_s: float = 60.0) -> dict[str, Any]:
    """The whole run (gateway start to result) within `budget_s` seconds."""
    from pipelines.marketing_gateway import (
        POPULATION_FILE,
        gateway_settings,
        issue_keys,
        seed_world,
    )

    started = time.monotonic()
    deadline = started + budget_s
    people, rng = people_file(n, seed)
    with tempfile.TemporaryDirectory(prefix="scrm-served-") as folder:
        root = Path(folder)
        (root / POPULATION_FILE).write_text(json.dumps(people), encoding="utf-8")
        settings = gateway_settings(repo, root, 1883)
        keys = issue_keys(settings)
        seed_world(settings, people, datetime.now(UTC))
        with running_gateway(root, repo, deadline) as (url, mqtt_port):
            up = time.monotonic() - started
            found = asyncio.run(campaign_over_http(url, mqtt_port, keys, people, rng, deadline))
        if found["not_received"]:  # what the gateway said about it (its logs are masked)
            log = (root / "gateway.log").read_text(encoding="utf-8", errors="replace")
            found["gateway_log_tail"] = log.splitlines()[-20:]
        found["ports"] = {"gateway": int(url.rsplit(":", 1)[1]), "mqtt": mqtt_port}
    found["seconds"] = {"gateway_up": round(up, 2), **found["seconds"],
                        "total": round(time.monotonic() - started, 2)}  # fmt: skip
    return {"population": n, "seed": seed, **found}
