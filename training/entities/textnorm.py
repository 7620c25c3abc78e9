"""NFKC normalisation that remembers where every normalised character came from.

Chat text mixes full-width and half-width forms (１３８, ＡＢＣ, ￥, ：). Matching runs on the NFKC
form so that one regex covers both, but callers need offsets into the text they passed in, so
each character is normalised on its own and its source index recorded.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NormalisedText:
    """`text` is the NFKC form of `original`; `source[i]` is the original index of `text[i]`."""

    original: str
    text: str
    source: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a [start, end) span of `text` back to the smallest covering span of `original`."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span ({start}, {end}) outside normalised text of {len(self.text)}")
        return self.source[start], self.source[end - 1] + 1


def normalise(original: str) -> NormalisedText:
    """NFKC, one source character at a time, so the offset map stays exact.

    Whole-string NFKC could merge characters across positions; per-character NFKC never does,
    and the only forms it misses (combining sequences) do not occur in the identifiers we match.
    """
    parts: list[str] = []
    source: list[int] = []
    for index, char in enumerate(original):
        folded = char if char.isascii() else unicodedata.normalize("NFKC", char)
        parts.append(folded)
        source.extend([index] * len(folded))
    return NormalisedText(original, "".join(parts), tuple(source))
