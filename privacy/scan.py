"""Find raw personal numbers in files: the check behind "no raw phone/ID/card in any log".

Masked forms (`138****5678`, `[PHONE]`) no longer match the detectors, so every hit is a value
that escaped masking. Meant for a session-end test over the suite's log folders and for audits
of log directories.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from privacy.masking import detect, mask_value

KINDS = ("mobile", "id", "card")
# Identifiers hold long digit runs by chance: request UUIDs (`20a38058-5131-4798-9b8f-...` reads
# as a card, `...-b18700959361` as a phone) and hex hashes (the audit log's SHA-256 chain, run
# ids). They are blanked before detection: a number inside one is part of an id.
IDENTIFIERS = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?<![0-9a-zA-Z])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}(?![0-9a-zA-Z])"
)


def without_identifiers(line: str) -> str:
    """The line with UUIDs and hex ids replaced by `x`s of the same length (offsets kept)."""
    return IDENTIFIERS.sub(lambda m: "x" * len(m.group()), line)


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    kind: str
    masked: str  # the value as the log should have shown it (the report never repeats it raw)


def scan_text(text: str, source: str = "<text>", kinds: Iterable[str] = KINDS) -> list[Finding]:
    wanted = set(kinds)
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for span in detect(without_identifiers(line)):
            if span.kind in wanted:
                raw = line[span.start : span.end]
                found.append(
                    Finding(source, number, span.kind, mask_value(raw, span.kind, "standard"))
                )
    return found


def scan_files(
    paths: Iterable[Path],
    patterns: tuple[str, ...] = ("*.log", "*.txt", "*.jsonl", "*.out", "*.err"),
    kinds: Iterable[str] = KINDS,
    max_bytes: int = 20_000_000,
) -> list[Finding]:
    """Scan files, and files matching `patterns` under folders; unreadable bytes are skipped."""
    findings: list[Finding] = []
    for path in paths:
        path = Path(path)
        files = [path] if path.is_file() else [f for p in patterns for f in path.rglob(p)]
        for file in files:
            if not file.is_file() or file.stat().st_size > max_bytes:
                continue
            text = file.read_text(encoding="utf-8", errors="ignore")
            findings += scan_text(text, str(file), kinds)
    return findings
