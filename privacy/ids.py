"""Random identifiers that masking and the log grep can never take for personal numbers.

A hex id holds digit runs by chance: `anon-9167915305124041` passed as a Luhn-valid card and
`dialogue:16017769138f` as a mobile number, so a response masked the id a client needs back and
the session-end log grep failed the suite. Letters only (no 0/1-like l, i, o) rule that out.
"""

from __future__ import annotations

import random
import secrets

LETTERS = "abcdefghjkmnpqrstuvwxyz"  # 23 letters: 16 of them are 72 bits


def opaque_id(length: int = 16, rng: random.Random | None = None) -> str:
    """`length` random letters; `rng` for a seeded, reproducible id (simulations)."""
    if rng is not None:
        return "".join(rng.choice(LETTERS) for _ in range(length))
    return "".join(secrets.choice(LETTERS) for _ in range(length))
