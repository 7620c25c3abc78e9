"""The intake log on Redis Streams: for several gateway hosts sharing one log.

- `append`: one Lua script (atomic) checks the dedup key `<stream>:seen:<channel>:<id>` and
  XADDs the message; a vendor retry gets the first entry's id back. Durability is Redis's:
  run it with `appendonly yes` (`appendfsync always` for sqlite FULL's guarantee).
- `claim`: XAUTOCLAIM entries whose lease (pending idle time) expired, then XREADGROUP new ones
  in the consumer group; the attempt count is the entry's delivery count.
- `complete`: store the reply and state, XACK. `fail`: leave it pending, so it is reclaimed
  after the lease; at `max_attempts` it is copied to `<stream>:dead` and acknowledged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import redis

from serving.adapters.intake import Accepted, Claimed, RetryPolicy, key_of
from serving.adapters.messages import InboundMessage, Reply

APPEND = """
local id = redis.call('GET', KEYS[2])
if id then return {0, id} end
id = redis.call('XADD', KEYS[1], '*', 'message', ARGV[1])
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
redis.call('HSET', KEYS[3], id, 'pending')
return {1, id}
"""


class RedisStreamIntake:
    group = "workers"

    def __init__(
        self,
        url: str,
        stream: str = "scrm:intake",
        policy: RetryPolicy | None = None,
        dedup_ttl_s: int = 7 * 24 * 3600,
    ):
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.stream = stream
        self.policy = policy or RetryPolicy()
        self.dedup_ttl_s = dedup_ttl_s
        self.states = f"{stream}:state"
        self.replies = f"{stream}:replies"
        self.dead = f"{stream}:dead"
        self._append = self.redis.register_script(APPEND)
        try:
            self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def append(self, message: InboundMessage, claim_as: str | None = None) -> Accepted:
        # Stream entries are owned only once read by the group: inline processing is not a
        # claim here (claimed=False); the worker skips entries already completed inline.
        new, ref = self._append(
            keys=[self.stream, f"{self.stream}:seen:{key_of(message)}", self.states],
            args=[message.model_dump_json(), self.dedup_ttl_s],
        )
        if new:
            return Accepted(ref, True, "pending")
        state = self.redis.hget(self.states, ref) or "pending"
        reply = self.redis.hget(self.replies, ref)
        return Accepted(ref, False, state, Reply.model_validate_json(reply) if reply else None)

    def append_batch(self, items: list[tuple[InboundMessage, str | None]]) -> list[Accepted]:
        return [self.append(message, claim_as) for message, claim_as in items]

    def write_batch(
        self,
        items: list[tuple[InboundMessage, str | None]],
        completions: list[tuple[str, Reply | None]],
    ) -> list[Accepted]:
        for ref, reply in completions:
            self.complete(ref, reply)
        return self.append_batch(items)

    def append_many(self, messages: Iterable[InboundMessage]) -> int:
        return sum(self.append(message).new for message in messages)

    def _attempts(self, ref: str) -> int:
        pending = self.redis.xpending_range(self.stream, self.group, ref, ref, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    def claim(self, consumer: str, limit: int) -> list[Claimed]:
        lease_ms = int(self.policy.lease_s * 1000)
        _, reclaimed, *_ = self.redis.xautoclaim(
            self.stream, self.group, consumer, lease_ms, "0-0", count=limit
        )
        entries = list(reclaimed)
        if len(entries) < limit:
            fresh = self.redis.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=limit - len(entries)
            )
            for _, items in fresh or []:
                entries.extend(items)
        claimed = []
        for ref, fields in entries:
            if not fields:  # trimmed from the stream
                self.redis.xack(self.stream, self.group, ref)
                continue
            state = self.redis.hget(self.states, ref)
            if state in ("done", "dead"):  # completed inline by the gateway
                self.redis.xack(self.stream, self.group, ref)
                continue
            attempts = self._attempts(ref)
            if attempts > self.policy.max_attempts:
                self._bury(ref, fields["message"], attempts - 1, "lease expired too often")
                continue
            self.redis.hset(self.states, ref, "processing")
            message = InboundMessage.model_validate_json(fields["message"])
            claimed.append(Claimed(ref, message, attempts))
        return claimed

    def complete(self, ref: str, reply: Reply | None) -> None:
        with self.redis.pipeline() as pipe:
            if reply is not None:
                pipe.hset(self.replies, ref, reply.model_dump_json())
            pipe.hset(self.states, ref, "done")
            pipe.xack(self.stream, self.group, ref)
            pipe.execute()

    def fail(self, ref: str, error: str) -> bool:
        attempts = self._attempts(ref)
        if attempts >= self.policy.max_attempts:
            entry = self.redis.xrange(self.stream, ref, ref, count=1)
            self._bury(ref, entry[0][1]["message"] if entry else "{}", attempts, error)
            return True
        self.redis.hset(self.states, ref, "pending")  # reclaimed once the lease expires
        return False

    def _bury(self, ref: str, message: str, attempts: int, error: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.xadd(
                self.dead,
                {
                    "ref": ref,
                    "message": message,
                    "attempts": attempts,
                    "error": error[:2000],
                    "dead_at": time.time(),
                },
            )
            pipe.hset(self.states, ref, "dead")
            pipe.xack(self.stream, self.group, ref)
            pipe.execute()

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {"pending": 0, "processing": 0, "done": 0, "dead": 0}
        for state in self.redis.hvals(self.states):
            found[state] = found.get(state, 0) + 1
        return found

    def dead_letters(self, limit: int = 100) -> list[dict]:
        rows = self.redis.xrevrange(self.dead, count=limit)
        out = []
        for _, fields in rows:
            message = json.loads(fields["message"])
            out.append(
                {
                    "ref": fields["ref"],
                    "channel": message.get("channel"),
                    "message_id": message.get("message_id"),
                    "attempts": int(fields["attempts"]),
                    "last_error": fields["error"],
                    "dead_at": float(fields["dead_at"]),
                }
            )
        return out

    def drop(self) -> None:
        """Delete the stream and its side keys (tests use a unique stream name)."""
        keys = [self.stream, self.states, self.replies, self.dead]
        keys += list(self.redis.scan_iter(f"{self.stream}:seen:*"))
        self.redis.delete(*keys)

    def close(self) -> None:
        self.redis.close()
