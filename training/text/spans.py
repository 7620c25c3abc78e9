"""BIO tags <-> entity spans, per character (Chinese NER tags one tag per character)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Span = tuple[int, int, str]  # start, end (exclusive), type


def bio_spans(tags: Sequence[str]) -> list[Span]:
    """Spans of a BIO sequence; a stray I-X (no B-X before it) starts a span, as seqeval does."""
    spans: list[Span] = []
    start, kind = None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        continues = prefix == "I" and name == kind
        if start is not None and not continues:
            spans.append((start, i, kind))
            start, kind = None, None
        if prefix == "B" or (prefix == "I" and not continues):
            start, kind = i, name
    return spans


def spans_bio(length: int, spans: Iterable[Span]) -> list[str]:
    """The BIO sequence of `length` characters holding `spans` (assumed non-overlapping)."""
    tags = ["O"] * length
    for start, end, kind in spans:
        if 0 <= start < end <= length:
            tags[start] = f"B-{kind}"
            tags[start + 1 : end] = [f"I-{kind}"] * (end - start - 1)
    return tags
