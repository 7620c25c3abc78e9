"""The real engine: NATS JetStream (nats-py), file storage, one stream for all events.

Subjects are `prefix.<tenant>.<event_type>.p<partition>` (`codec.subject_of`), so a stream
view, a consumer or a permission can be cut per tenant, per event type or per key partition.
Publishing sets `Nats-Msg-Id` to the event id: the server drops a re-publish within the
stream's duplicate window (a producer that retries after a lost ack adds nothing).
`publish` sends the whole batch asynchronously and returns once every publish ack is back:
the server has stored each event (and, with stream_replicas > 1, a quorum of servers has).
A keyed consumer is one durable pull consumer per partition (`<name>-p<N>`, explicit ack);
unacknowledged messages are redelivered after `ack_wait_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from events.bus import Consumer, Delivery, EventBus
from events.codec import EventRejected, decode, encode, partition_of, subject_of
from events.schemas import Event
from settings.events import EventSettings

PUBLISH_TIMEOUT_S = 30.0
log = logging.getLogger(__name__)


async def _log_error(error: Exception) -> None:
    """nats-py's default prints a traceback per failed (re)connect: one line is enough."""
    log.warning("nats: %s: %s", type(error).__name__, error)


# Events per envelope at most; a delivery's position is stream sequence x SCALE + line.
ENVELOPE_MAX = 1000
SCALE = 1024


def envelope_id(chunk: Sequence[Event]) -> str:
    if len(chunk) == 1:
        return chunk[0].event_id
    return hashlib.blake2b("".join(e.event_id for e in chunk).encode(), digest_size=16).hexdigest()


class StaleConsumer(RuntimeError):
    """The connection dropped and came back since this consumer was opened."""


class Epoch:
    """Counts connection drops and reconnects (nats-py callbacks)."""

    def __init__(self) -> None:
        self.value = 0

    async def advance(self) -> None:
        self.value += 1
        log.warning("nats connection changed (epoch %d): consumers re-open", self.value)


class JetStreamBus(EventBus):
    engine = "jetstream"

    def __init__(self, nc: Any, config: EventSettings):
        self.nc, self.config = nc, config
        self.partitions = config.partitions
        self.js = nc.jetstream(publish_async_max_pending=50_000, timeout=10)
        self.envelope_max = ENVELOPE_MAX
        self.epoch = Epoch()

    @classmethod
    async def connect(cls, config: EventSettings, **options: Any) -> JetStreamBus:
        servers = [s.strip() for s in config.nats_url.split(",")]
        epoch = Epoch()
        nc = await nats.connect(
            servers=servers, connect_timeout=2, max_reconnect_attempts=3,
            reconnect_time_wait=0.2, error_cb=_log_error, disconnected_cb=epoch.advance,
            reconnected_cb=epoch.advance, **options,
        )  # fmt: skip
        nc.options["max_reconnect_attempts"] = -1  # once connected: reconnect for ever
        bus = cls(nc, config)
        bus.epoch = epoch
        await bus.ensure_stream()
        return bus

    async def ensure_stream(self) -> None:
        stream = StreamConfig(
            name=self.config.stream,
            subjects=[f"{self.config.subject_prefix}.>"],
            storage=StorageType.FILE,
            num_replicas=self.config.stream_replicas,
            duplicate_window=self.config.duplicate_window_s,
        )
        try:
            await self.js.stream_info(self.config.stream)
        except NotFoundError:
            await self.js.add_stream(stream)

    async def publish(self, events: Sequence[Event]) -> int:
        """Every event stored when this returns. Events of one subject in one call travel as
        envelopes of up to `envelope_max` JSON lines (one publish ack each): a publish ack
        costs the same for one event or hundreds, which is how one Python process gets past
        the per-message ceiling. The envelope's `Nats-Msg-Id` is the event id (one event) or
        a digest of its ids, so a retried publish of the same batch is dropped as a duplicate.
        Within a call, events keep their order per subject (tenant, type, partition)."""
        if not events:
            return 0
        groups: dict[str, list[Event]] = {}
        for event in events:
            subject = subject_of(self.config.subject_prefix, event, self.partitions)
            groups.setdefault(subject, []).append(event)
        sent = []
        for subject, group in groups.items():
            for start in range(0, len(group), self.envelope_max):
                chunk = group[start : start + self.envelope_max]
                payload = b"\n".join(encode(e, self.config.message_text) for e in chunk)
                future = await self.js.publish_async(
                    subject, payload, headers={"Nats-Msg-Id": envelope_id(chunk)}
                )
                sent.append((len(chunk), future))
        acks = await asyncio.wait_for(asyncio.gather(*(f for _, f in sent)), PUBLISH_TIMEOUT_S)
        return sum(n for (n, _), ack in zip(sent, acks, strict=True) if not ack.duplicate)

    async def consumer(
        self, name: str, partitions: Sequence[int], after: dict[int, int]
    ) -> Consumer:
        """Durable pull consumers `<name>-p<N>`, re-created at the checkpoint on every open.

        The checkpoint, committed with the derived state, is the truth: a consumer that died
        with messages fetched but not acknowledged must not see newer messages before those
        come back (JetStream would redeliver them only after `ack_wait`, after newer ones),
        so each open starts the partition again right after what was applied."""
        subs = {}
        for p in partitions:
            durable = f"{name}-p{p}"
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(self.config.stream, durable)
            start = int(after.get(p, 0)) // SCALE  # the message of the last applied line
            config = ConsumerConfig(
                durable_name=durable,
                filter_subject=self.partition_filter(p),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=20_000,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
                opt_start_seq=start or None,  # its rest (lines at or below: skipped)
            )
            subs[p] = await self.js.pull_subscribe(
                config.filter_subject, durable=durable, stream=self.config.stream, config=config
            )
        return JetStreamConsumer(name, tuple(partitions), subs, self.epoch)

    def partition_filter(self, partition: int) -> str:
        return f"{self.config.subject_prefix}.*.*.p{partition}"

    async def lag_of(self, name: str, partitions: Sequence[int], after: dict[int, int]) -> int:
        """Messages not yet acknowledged by `name`, without touching its subscriptions (the
        whole partition when it never started)."""
        total = 0
        for p in partitions:
            try:
                info = await self.js.consumer_info(self.config.stream, f"{name}-p{p}")
                total += (info.num_pending or 0) + (info.num_ack_pending or 0)
            except NotFoundError:
                stream = await self.js.stream_info(self.config.stream, self.partition_filter(p))
                total += sum((stream.state.subjects or {}).values())
        return total

    async def reset_consumer(self, name: str) -> None:
        for p in range(self.partitions):
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(self.config.stream, f"{name}-p{p}")

    async def stats(self) -> dict[str, Any]:
        info = await self.js.stream_info(self.config.stream)
        return {"engine": self.engine, "stream": self.config.stream,
                "events": info.state.messages, "first": info.state.first_seq,
                "last": info.state.last_seq,
                "replicas": self.config.stream_replicas}  # fmt: skip

    async def delete_stream(self) -> None:
        with contextlib.suppress(NotFoundError):
            await self.js.delete_stream(self.config.stream)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()


class JetStreamConsumer(Consumer):
    def __init__(self, name: str, partitions: tuple[int, ...], subs: dict[int, Any], epoch: Epoch):
        self.name, self.partitions, self.subs = name, partitions, subs
        self.epoch, self.opened_in = epoch, epoch.value
        self.lines_per_message = 100.0  # a guess until the first fetch: ask little

    async def fetch(self, max_events: int, timeout_s: float = 0.5) -> list[Delivery]:
        """About `max_events` events: messages asked for are scaled by the envelope size seen
        last (asking for thousands of big envelopes lets the server's write deadline pass
        while this process is busy applying, and it cuts a slow consumer off)."""
        self.check()
        per_partition = max_events / len(self.subs) / self.lines_per_message
        each = max(1, int(per_partition))
        results = await asyncio.gather(
            *(self._fetch(p, sub, each, timeout_s) for p, sub in self.subs.items())
        )
        found = [d for batch in results for d in batch]
        self.check()  # a reconnect while fetching: what came may follow a gap
        messages = len({id(d.handle) for d in found})
        if messages:
            self.lines_per_message = len(found) / messages
        return found

    async def _fetch(self, partition: int, sub: Any, n: int, timeout_s: float) -> list:
        try:
            msgs = await sub.fetch(n, timeout=max(timeout_s, 0.05))
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        return [d for msg in msgs for d in _deliveries(partition, msg)]

    def check(self) -> None:
        """Messages in flight when the connection dropped are redelivered only after
        `ack_wait`, after newer ones: a consumer opened before a reconnect must be re-opened
        at its checkpoint instead of reading on (the runner does that on this error)."""
        if self.epoch.value != self.opened_in:
            raise StaleConsumer(f"{self.name}: the connection dropped since it was opened")

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """One ack per message (an envelope's lines share it)."""
        for msg in {id(d.handle): d.handle for d in deliveries}.values():
            await msg.ack()

    async def lag(self) -> int:
        total = 0
        for sub in self.subs.values():
            info = await sub.consumer_info()
            total += (info.num_pending or 0) + (info.num_ack_pending or 0)
        return total

    async def close(self) -> None:
        for sub in self.subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def _deliveries(partition: int, msg: Any) -> list[Delivery]:
    """The events of one message (an envelope: one per line), each with its own position."""
    meta = msg.metadata
    out = []
    for line, payload in enumerate(msg.data.split(b"\n")):
        base = dict(partition=partition, position=meta.sequence.stream * SCALE + line,
                    payload=payload, handle=msg, redelivered=meta.num_delivered > 1)  # fmt: skip
        try:
            out.append(Delivery(**base, event=decode(payload)))
        except EventRejected as error:
            out.append(Delivery(**base, error=error))
    return out


def partition_subject(config: EventSettings, customer_id: str) -> str:
    """Every subject one customer's events can be on (for a one-customer stream view)."""
    p = partition_of(customer_id, config.partitions)
    return f"{config.subject_prefix}.*.*.p{p}"
