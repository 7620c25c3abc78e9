"""A replay cache for signed webhooks: a signature seen once may come back only with the very
same body (a vendor's retry, answered from the intake log), never with another one.

DingTalk's robot `sign` covers only the timestamp (its protocol), so without this a captured
(timestamp, sign) pair carries any body for the whole window. Entries expire with the window;
the cache is bounded (oldest dropped first) and per gateway replica, like the rate limits.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class ReplayCache:
    def __init__(
        self, window_s: float, max_entries: int = 100_000, clock: Callable[[], float] = time.time
    ):
        self.window_s, self.max_entries, self.clock = window_s, max_entries, clock
        self.seen: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.lock = threading.Lock()

    def admit(self, signature: str, body: bytes) -> bool:
        """True for a signature never seen in the window, or seen with this same body."""
        digest = hashlib.sha256(body).hexdigest()
        now = self.clock()
        with self.lock:
            while self.seen:
                oldest, (_, at) = next(iter(self.seen.items()))
                if now - at <= self.window_s and len(self.seen) < self.max_entries:
                    break
                self.seen.pop(oldest)
            known = self.seen.get(signature)
            if known is not None:
                return known[0] == digest
            self.seen[signature] = (digest, now)
            return True
