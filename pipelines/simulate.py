"""`scrm simulate traffic`: real public utterances through the running gateway's web chat.

The conversation history the pipeline trains on is what the gateway served (the bus's turn
history, `scrm events history`); on a machine with no customers yet, this produces it: real
sentences (BANKING77, SMP2017, ChnSentiCorp, CLUENER) from customer ids of the public
populations (Telco, Online Retail), as sessions of several turns (geometric, mean
`turns_per_session`), repeat customers (a Zipf-like pick over a pool), and handoff requests.
Every message goes through `POST /v1/channels/web_chat/messages`, so the events on the bus
are the ones the dialogue publishes for real turns, with their model predictions.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from pipelines.chat_client import CHAT_ROUTE, headers
from privacy.ids import opaque_id
from settings import Settings

TEXT_SETS = ("banking77", "smp2017_ecdt_task1", "chnsenticorp", "cluener2020")
POPULATIONS = ("telco_churn", "online_retail")
HANDOFF_TEXTS = ("转人工", "I want to talk to a human agent")


@dataclass(frozen=True)
class Message:
    session_id: str
    customer_id: str
    text: str


def load_sources(settings: Settings, per_set: int = 2000) -> tuple[list[str], list[str]]:
    """Utterances of the public text sets and customer ids of the public populations."""
    texts: list[str] = []
    for name in TEXT_SETS:
        path = settings.validated_file(name)
        if path.is_file():
            column = pd.read_parquet(path, columns=["text"])["text"].dropna().astype(str)
            texts += column[column.str.len().between(2, 200)].head(per_set).tolist()
    customers: list[str] = []
    for name in POPULATIONS:
        path = settings.validated_file(name)
        if path.is_file():
            frame = pd.read_parquet(path)  # Telco names its id `id`, Online Retail `customer_id`
            ids = frame["customer_id" if "customer_id" in frame else "id"].dropna()
            customers += sorted(ids.astype(str).unique().tolist())[:5000]
    if not texts or not customers:
        raise FileNotFoundError("no validated text sets or populations: run `scrm validate` first")
    return texts, customers


def plan(
    texts: list[str],
    customers: list[str],
    count: int,
    seed: int = 0,
    turns_per_session: float = 3.0,
    handoff_share: float = 0.05,
    pool: int = 500,
) -> list[Message]:
    """`count` messages in sessions; a few customers come back often (rank-weighted pick)."""
    rng = random.Random(seed)
    regulars = rng.sample(customers, min(pool, len(customers)))
    weights = [1 / (rank + 1) for rank in range(len(regulars))]
    out: list[Message] = []
    while len(out) < count:
        customer = rng.choices(regulars, weights)[0]
        session = f"sim-{opaque_id(12, rng)}"
        turns = 1
        while rng.random() > 1 / turns_per_session:
            turns += 1
        for _ in range(min(turns, count - len(out))):
            handoff = rng.random() < handoff_share
            text = rng.choice(HANDOFF_TEXTS) if handoff else rng.choice(texts)
            out.append(Message(session, customer, text))
    return out


async def send(
    url: str, messages: list[Message], rate: float, api_key: str | None, concurrency: int = 32
) -> dict[str, Any]:
    """Send at `rate` messages/s (a session's turns in order); count answers by status."""
    sessions: dict[str, list[Message]] = {}
    for message in messages:
        sessions.setdefault(message.session_id, []).append(message)
    statuses: dict[int, int] = {}
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    sent = 0

    async def run_session(client: httpx.AsyncClient, turns: list[Message]) -> None:
        nonlocal sent
        token = await open_session(client, turns[0].customer_id)
        for message in turns:
            async with slots:
                due = started + sent / rate
                sent += 1
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                status = await post(client, message, token) if token else 0
            statuses[status] = statuses.get(status, 0) + 1

    async with httpx.AsyncClient(base_url=url, headers=headers(api_key), timeout=60) as client:
        await asyncio.gather(*(run_session(client, turns) for turns in sessions.values()))
    elapsed = time.monotonic() - started
    return {"messages": len(messages), "sessions": len(sessions),
            "customers": len({m.customer_id for m in messages}),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "seconds": round(elapsed, 2), "rate": round(len(messages) / elapsed, 1)}  # fmt: skip


async def open_session(client: httpx.AsyncClient, customer_id: str) -> str | None:
    """A server-issued web chat session for the customer (the gateway binds the session to
    them; a body never names a session or a customer)."""
    try:
        opened = await client.post(f"{CHAT_ROUTE.rsplit('/', 1)[0]}/sessions",
                                   json={"customer_id": customer_id})  # fmt: skip
    except httpx.HTTPError:
        return None
    return opened.json().get("session_token") if opened.status_code == 200 else None


async def post(client: httpx.AsyncClient, message: Message, token: str) -> int:
    body = {"text": message.text, "message_id": uuid.uuid4().hex}
    for _ in range(20):
        try:
            answer = await client.post(CHAT_ROUTE, json=body, headers={"X-Chat-Session": token})
        except httpx.HTTPError:
            return 0
        if answer.status_code != 429:
            return answer.status_code
        await asyncio.sleep(min(float(answer.headers.get("retry-after") or 1), 10))
    return 429
