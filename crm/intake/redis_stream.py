"""The intake log on Redis Streams: for several gateway hosts sharing one log.

- `append`: one Lua script (atomic) checks the dedup key `<stream>:seen:<channel>:<id>` and
  XADDs the message; a vendor retry gets the first entry's id back. Durability is Redis's:
  run it with `appendonly yes` (`appendfsync always` for sqlite FULL's guarantee).
- `claim`: XAUTOCLAIM entries whose lease (pending idle time) expired, then XREADGROUP new ones
  in the consumer group; the attempt count is the entry's delivery count. An entry the gateway
  is answering inline (appended with `claim_as`: `processing`, in `<stream>:inline_at`) is left
  alone until its lease has passed, or the worker would answer it a second time (issue 26).
- `complete`: store the reply and state, XACK. `fail`: leave it pending, so it is reclaimed
  after the lease; at `max_attempts` it is copied to `<stream>:dead` and acknowledged.

At rest (with a `FieldCipher`): an entry's `message` and the stored replies are AES-256-GCM
tokens bound to the customer's data key; `tenant`, `customer_id` and `data_key` ride along in
plain fields. Stream entries cannot be rewritten in place, so `scrm keys rotate` does not move
them to a new key: they stay readable while the old key is in the keyring, and `--retire` keeps
a key for as long as `key_usage` finds a value under it (trim acknowledged entries to let go).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import redis

from crm.intake.log import ERASED, MESSAGE, REPLY, Accepted, Claimed, RetryPolicy, key_of
from crm.messages import InboundMessage, Reply
from privacy.atrest import FieldCipher, data_key, open_opt, seal_opt
from privacy.crypto import DecryptError, is_token
from privacy.masking import mask_for_logs

APPEND = """
local id = redis.call('GET', KEYS[2])
if id then return {0, id} end
id = redis.call('XADD', KEYS[1], '*', 'message', ARGV[1], 'tenant', ARGV[3],
  'customer_id', ARGV[4], 'data_key', ARGV[5], 'channel', ARGV[6], 'message_id', ARGV[7])
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
redis.call('HSET', KEYS[3], id, ARGV[8])
redis.call('HSET', KEYS[4], id, ARGV[3])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[5], id, ARGV[9]) end
return {1, id}
"""

# Set an entry's state unless it is already final: the gateway may complete an entry between a
# worker's read of its state and its write (issue 26), and an answer must never be undone.
SET_UNLESS_FINAL = """
local state = redis.call('HGET', KEYS[1], ARGV[1])
if state == 'done' or state == 'dead' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisStreamIntake:
    group = "workers"

    def __init__(
        self,
        url: str,
        stream: str = "scrm:intake",
        policy: RetryPolicy | None = None,
        dedup_ttl_s: int = 7 * 24 * 3600,
        cipher: FieldCipher | None = None,
    ):
        self.cipher = cipher
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.stream = stream
        self.policy = policy or RetryPolicy()
        self.dedup_ttl_s = dedup_ttl_s
        self.states = f"{stream}:state"
        self.replies = f"{stream}:replies"
        self.dead = f"{stream}:dead"
        self.tenants = f"{stream}:tenant"
        self.inline_at = f"{stream}:inline_at"  # entries the gateway answers inline: since when
        self._append = self.redis.register_script(APPEND)
        self._set_unless_final = self.redis.register_script(SET_UNLESS_FINAL)
        try:
            self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def append(self, message: InboundMessage, claim_as: str | None = None) -> Accepted:
        # Stream entries are owned only once read by the group: an inline append marks the entry
        # processing since now, which the worker leaves alone for a lease (then it is fair game).
        key = data_key(message.tenant, message.customer_id)
        new, ref = self._append(
            keys=[
                self.stream,
                f"{self.stream}:seen:{key_of(message)}",
                self.states,
                self.tenants,
                self.inline_at,
            ],
            args=[
                seal_opt(self.cipher, message.model_dump_json(), MESSAGE, key),
                self.dedup_ttl_s,
                message.tenant,
                message.customer_id or "",
                key,
                message.channel,
                message.message_id,
                "processing" if claim_as else "pending",
                time.time() if claim_as else "",
            ],
        )
        if new:
            return Accepted(ref, True, "pending")
        state = self.redis.hget(self.states, ref) or "pending"
        return Accepted(ref, False, state, self._reply(self.redis.hget(self.replies, ref), key))

    def _reply(self, value: str | None, key: str) -> Reply | None:
        if not value:
            return None
        try:
            return Reply.model_validate_json(open_opt(self.cipher, value, REPLY, key))
        except DecryptError:
            return None

    def _data_key(self, ref: str) -> str:
        entry = self.redis.xrange(self.stream, ref, ref, count=1)
        return entry[0][1].get("data_key", "") if entry else ""

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

    def _answering(self, ref: str) -> bool:
        """The gateway appended `ref` to answer it inline less than a lease ago."""
        since = float(self.redis.hget(self.inline_at, ref) or 0)
        return time.time() - since < self.policy.lease_s

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
            if state == "processing" and self._answering(ref):
                continue  # still pending for the group: XAUTOCLAIM offers it after the lease
            attempts = self._attempts(ref)
            if attempts > self.policy.max_attempts:
                self._bury(ref, fields, attempts - 1, "lease expired too often")
                continue
            try:
                body = open_opt(self.cipher, fields["message"], MESSAGE, fields.get("data_key"))
            except DecryptError:  # the customer was erased
                self._bury(ref, fields, attempts, ERASED)
                continue
            if not self._set_unless_final(keys=[self.states], args=[ref, "processing"]):
                self.redis.xack(self.stream, self.group, ref)  # answered inline meanwhile
                continue
            claimed.append(Claimed(ref, InboundMessage.model_validate_json(body), attempts))
        return claimed

    def complete(self, ref: str, reply: Reply | None) -> None:
        body = None
        if reply is not None:
            body = seal_opt(self.cipher, reply.model_dump_json(), REPLY, self._data_key(ref))
        with self.redis.pipeline() as pipe:
            if body is not None:
                pipe.hset(self.replies, ref, body)
            pipe.hset(self.states, ref, "done")
            pipe.hdel(self.inline_at, ref)
            pipe.xack(self.stream, self.group, ref)
            pipe.execute()

    def fail(self, ref: str, error: str) -> bool:
        attempts = self._attempts(ref)
        if attempts >= self.policy.max_attempts:
            entry = self.redis.xrange(self.stream, ref, ref, count=1)
            self._bury(ref, entry[0][1] if entry else {"message": "{}"}, attempts, error)
            return True
        # reclaimed once the lease expires; an entry answered meanwhile stays answered
        self._set_unless_final(keys=[self.states], args=[ref, "pending"])
        self.redis.hdel(self.inline_at, ref)
        return False

    def _bury(self, ref: str, fields: dict, attempts: int, error: str) -> None:
        message = fields.get("message", "{}")
        where = {"channel": "", "message_id": ""}
        if not is_token(message):  # written without a cipher: the ids are readable
            where = {k: json.loads(message).get(k) or "" for k in where}
        else:
            where = {k: fields.get(k, "") for k in where}
        with self.redis.pipeline() as pipe:
            pipe.xadd(
                self.dead,
                {
                    "ref": ref,
                    "message": message,
                    "attempts": attempts,
                    "error": mask_for_logs(error[:2000]),
                    "dead_at": time.time(),
                    "tenant": fields.get("tenant", "default"),
                    "customer_id": fields.get("customer_id", ""),
                    "data_key": fields.get("data_key", ""),
                    **where,
                },
            )
            pipe.hset(self.states, ref, "dead")
            pipe.xack(self.stream, self.group, ref)
            pipe.execute()

    def counts(self, tenant: str | None = None) -> dict[str, int]:
        found: dict[str, int] = {"pending": 0, "processing": 0, "done": 0, "dead": 0}
        states = self.redis.hgetall(self.states)
        if tenant:
            owners = self.redis.hgetall(self.tenants)
            states = {ref: s for ref, s in states.items() if owners.get(ref) == tenant}
        for state in states.values():
            found[state] = found.get(state, 0) + 1
        return found

    def dead_letters(self, limit: int = 100, tenant: str | None = None) -> list[dict]:
        rows = self.redis.xrevrange(self.dead, count=limit if not tenant else None)
        out = []
        for _, fields in rows:
            if tenant and fields.get("tenant", "default") != tenant:
                continue
            ids = {"channel": fields.get("channel"), "message_id": fields.get("message_id")}
            if "channel" not in fields and not is_token(fields["message"]):  # older entries
                message = json.loads(fields["message"])
                ids = {k: message.get(k) for k in ids}
            out.append(
                {
                    "ref": fields["ref"],
                    **ids,
                    "attempts": int(fields["attempts"]),
                    "last_error": fields["error"],
                    "dead_at": float(fields["dead_at"]),
                    "tenant": fields.get("tenant", "default"),
                }
            )
        return out[:limit]

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        """XDEL the customer's entries (stream and dead letters) and their replies."""
        removed = 0
        for stream in (self.stream, self.dead):
            for ref, fields in self.redis.xrange(stream):
                if fields.get("customer_id") != customer_id:
                    continue
                if tenant and fields.get("tenant") != tenant:
                    continue
                removed += self.redis.xdel(stream, ref)
                self.redis.hdel(self.replies, fields.get("ref", ref))
        return removed

    def key_usage(self) -> dict[str, int]:
        """Values per key id (stream, dead letters, replies): a key in use must not retire."""
        usage: dict[str, int] = {}
        values = [f.get("message", "") for _, f in self.redis.xrange(self.stream)]
        values += [f.get("message", "") for _, f in self.redis.xrange(self.dead)]
        values += self.redis.hvals(self.replies)
        for value in values:
            if is_token(value):
                kid = value.split(":", 2)[1]
                usage[kid] = usage.get(kid, 0) + 1
        return usage

    def drop(self) -> None:
        """Delete the stream and its side keys (tests use a unique stream name)."""
        keys = [self.stream, self.states, self.replies, self.dead, self.tenants, self.inline_at]
        keys += list(self.redis.scan_iter(f"{self.stream}:seen:*"))
        self.redis.delete(*keys)

    def close(self) -> None:
        self.redis.close()
