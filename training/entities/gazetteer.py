"""Word-list matching: every gazetteer term found in one left-to-right dictionary scan.

A compiled alternation of a few thousand literals is tried alternative by alternative at every
position; a dict probe per (position, term length) is linear in the text and needs no extra
dependency. All matches are returned, overlapping ones included: choosing between them is the
job of the overlap resolver, which sees the pattern and model spans too.

File format (`gazetteers/<type>.txt`, one entry per line, `#` starts a comment):
    中国建设银行|建设银行|建行   canonical first, then aliases; each is matched
    =father|父亲|爸爸            a leading `=` makes the canonical value a label, not a term
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

GAZETTEER_DIR = Path(__file__).resolve().parent / "gazetteers"


@dataclass(frozen=True, slots=True)
class Term:
    """A matchable surface form and what it normalises to."""

    type: str
    canonical: str


@dataclass(frozen=True, slots=True)
class GazetteerMatch:
    """A term occurrence in normalised-text coordinates."""

    start: int
    end: int
    type: str
    canonical: str


def _is_word_char(char: str) -> bool:
    """ASCII letters and digits: Latin terms (vivo, VIP, 618) need word boundaries, CJK not."""
    return char.isascii() and char.isalnum()


def _fold(text: str) -> str:
    """Lower-case without changing length, so positions in the folded text stay valid."""
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def parse_lines(type_name: str, lines: Iterable[str]) -> Iterator[tuple[str, Term]]:
    """(folded term, Term) pairs of one gazetteer file."""
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [field.strip() for field in line.split("|")]
        label_only = fields[0].startswith("=")
        canonical = fields[0].lstrip("=")
        surface = fields[1:] if label_only else fields
        if not canonical or not surface or not all(surface):
            raise ValueError(f"gazetteer {type_name}: malformed line {raw!r}")
        for term in surface:
            yield _fold(term), Term(type_name, canonical)


class Gazetteer:
    """All gazetteer types merged into one dictionary; a term may belong to only one type."""

    def __init__(self, entries: Iterable[tuple[str, Term]]) -> None:
        self.terms: dict[str, Term] = {}
        for folded, term in entries:
            if folded in self.terms and self.terms[folded] != term:
                other = self.terms[folded]
                raise ValueError(
                    f"gazetteer term {folded!r} is in both {other.type} and {term.type}"
                    if other.type != term.type
                    else f"gazetteer term {folded!r} listed twice in {term.type}"
                )
            self.terms[folded] = term
        self.lengths = sorted({len(term) for term in self.terms}, reverse=True)
        self.first_chars = frozenset(term[0] for term in self.terms)

    @classmethod
    def from_files(cls, type_names: Iterable[str], directory: Path = GAZETTEER_DIR) -> Gazetteer:
        """Load `<directory>/<type>.txt` for each type; a missing file is a registry error."""
        entries: list[tuple[str, Term]] = []
        for name in type_names:
            path = directory / f"{name}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"gazetteer type {name!r} has no word list at {path}")
            entries.extend(parse_lines(name, path.read_text(encoding="utf-8").splitlines()))
        return cls(entries)

    def scan(self, text: str) -> list[GazetteerMatch]:
        """Every term occurrence (overlaps included) in `text`, matched case-insensitively."""
        folded = _fold(text)
        size = len(folded)
        found: list[GazetteerMatch] = []
        for start in range(size):
            if folded[start] not in self.first_chars:
                continue
            for length in self.lengths:
                end = start + length
                term = self.terms.get(folded[start:end]) if end <= size else None
                if term is None or not self._bounded(folded, start, end):
                    continue
                found.append(GazetteerMatch(start, end, term.type, term.canonical))
        return found

    @staticmethod
    def _bounded(text: str, start: int, end: int) -> bool:
        """Latin-edged terms must not continue into adjacent letters/digits (VIP in SVIP)."""
        if _is_word_char(text[start]) and start > 0 and _is_word_char(text[start - 1]):
            return False
        return not (_is_word_char(text[end - 1]) and end < len(text) and _is_word_char(text[end]))
