"""Generated ids are never taken for personal numbers (masking, the session-end log grep)."""

from __future__ import annotations

import random

from privacy.ids import opaque_id
from privacy.masking import mask_payload
from privacy.scan import scan_text


def test_opaque_ids_survive_masking_and_the_log_grep() -> None:
    ids = [f"anon-{opaque_id()}" for _ in range(3000)] + [f"dialogue:{opaque_id()}"]
    assert len(set(ids)) == len(ids)
    for value in ids:
        assert mask_payload({"customer_id": value}, "standard") == {"customer_id": value}
        assert scan_text(value) == []
    # what the old shapes let through: a hex id that is all digits reads as a card / a mobile
    assert scan_text("anon-9167915305124041") and scan_text("dialogue:16017769138f")


def test_a_seeded_id_is_reproducible() -> None:
    assert opaque_id(12, random.Random(7)) == opaque_id(12, random.Random(7))
