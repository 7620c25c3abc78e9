"""The intake log's contract: what every backend keeps and how consumers claim from it.

Durable intake: every accepted message is in a log before the channel is told "got it".

Vendors retry when they do not hear back in time (WeCom after 5 s, three times), and a worker
can die mid-message. So the log is
- durable first: `append` commits (sqlite WAL, `synchronous=FULL` by default) before the
  route answers; a crash after that loses nothing;
- idempotent on (channel, message id): a vendor retry finds the first copy (and its reply);
- at-least-once: a consumer `claim`s messages under a lease; `complete` stores the reply;
  `fail` schedules a retry with exponential backoff; a lease that expires (the worker died)
  makes the message claimable again; after `max_attempts` it moves to the dead-letter table.
  Handlers make their effects idempotent on the message key, so at-least-once delivery is
  exactly-once in effect.

Backends behind the one `IntakeLog` interface: `SqliteIntake` (default, one file, WAL) and
`RedisStreamIntake` (`crm.intake.redis_stream`, a stream + consumer group). For scale the
same interface maps onto Kafka (see crm/channels/README.md): `append` = an idempotent
producer `send(topic, key=channel:message_id)` awaited before acknowledging (acks=all), `claim`
= a consumer-group poll, `complete` = commit the offset after the effect, `fail` = publish to a
retry topic, then a dead-letter topic after `max_attempts`; dedup of vendor retries needs a
compacted "seen" topic or the effect store's unique key, since Kafka's idempotence is per
producer session only.

At rest (with a `FieldCipher`, which the factories always pass): the message (text, sender,
vendor context) and the reply are AES-256-GCM tokens bound to the customer's data key; the
tenant, channel, message id and customer id stay plain so that dedup, tenant filters and
erasure work without decrypting. `last_error` is masked (an exception may quote the text).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from crm.messages import InboundMessage, Reply

State = Literal["pending", "processing", "done", "dead"]


@dataclass(frozen=True)
class Accepted:
    """The result of `append`: `new` is False for a vendor retry of a logged message."""

    ref: str
    new: bool
    state: State
    reply: Reply | None = None
    claimed: bool = False  # the appender holds the lease and should process it itself


@dataclass(frozen=True)
class Claimed:
    ref: str
    message: InboundMessage
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    lease_s: float = 30.0  # a claim not completed by then is claimable again
    max_attempts: int = 5
    backoff_s: float = 1.0  # retry n waits backoff_s * 2**(n-1)

    def delay(self, attempts: int) -> float:
        return self.backoff_s * 2 ** max(attempts - 1, 0)


class IntakeLog(Protocol):
    policy: RetryPolicy

    def append(self, message: InboundMessage, claim_as: str | None = None) -> Accepted: ...

    def append_many(self, messages: Iterable[InboundMessage]) -> int: ...

    def append_batch(self, items: list[tuple[InboundMessage, str | None]]) -> list[Accepted]: ...

    def write_batch(
        self,
        items: list[tuple[InboundMessage, str | None]],
        completions: list[tuple[str, Reply | None]],
    ) -> list[Accepted]: ...

    def claim(self, consumer: str, limit: int) -> list[Claimed]: ...

    def complete(self, ref: str, reply: Reply | None) -> None: ...

    def fail(self, ref: str, error: str) -> bool:
        """Record a failed attempt; True when the message went to the dead-letter table."""
        ...

    def counts(self, tenant: str | None = None) -> dict[str, int]: ...

    def dead_letters(self, limit: int = 100, tenant: str | None = None) -> list[dict]: ...

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        """Delete a customer's messages and dead letters (right to be forgotten)."""
        ...

    def close(self) -> None: ...


def key_of(message: InboundMessage) -> str:
    return f"{message.channel}:{message.message_id}"


MESSAGE, REPLY = "intake.message", "intake.reply"  # encryption contexts of the two columns
ERASED = "personal data erased"
