"""Raw files -> one typed frame per data set, in the schema of its kind, with its splits.

| kind                | columns                                         |
|---------------------|-------------------------------------------------|
| text-classification | text, label, split                              |
| text-pair           | text_a, text_b, label, split                    |
| sequence-labelling  | text, tokens, tags (BIO, one per token), split  |
| tabular             | id, feature columns..., label, split            |
| transactions        | invoice_no, stock_code, item, quantity,         |
|                     | invoiced_at, unit_price, amount, customer_id,   |
|                     | country                                         |
| interactions        | student_id, skill_id, correct (0/1), order,     |
|                     | split (one per student), [skill_name, answered_at] |

Loading never drops or fixes rows unless the spec says so (`drop_leaks`, `repairs`, counted
in the validation report): whatever is wrong with the content must reach the Great
Expectations suite, the one place that decides whether the data may be trained on. Only a file
that cannot be read as the data set at all (missing, not UTF-8, without a required column)
stops here, as a `DataLoadError` naming the file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.repairs import apply_repairs
from pipelines.splits import carve, drop_leaks
from settings.platform import DatasetSpec

REQUIRED = {
    "text-classification": ["text", "label"],
    "text-pair": ["text_a", "text_b", "label"],
    "sequence-labelling": ["tokens", "tags"],
    "tabular": ["label"],
    "transactions": [],
    "interactions": ["student_id", "skill_id", "correct", "order"],
}
TRANSACTION_COLUMNS = {
    "InvoiceNo": "invoice_no",
    "StockCode": "stock_code",
    "Description": "item",
    "Quantity": "quantity",
    "InvoiceDate": "invoiced_at",
    "UnitPrice": "unit_price",
    "CustomerID": "customer_id",
    "Country": "country",
}


class DataLoadError(Exception):
    """A raw file that cannot be read as the data set."""


def check_utf8(path: Path) -> None:
    if not path.is_file():
        raise DataLoadError(f"{path} does not exist")
    try:
        path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        raise DataLoadError(
            f"{path.name} is not valid UTF-8 (byte {byte:#04x} at offset {err.start})"
        ) from err


def read_table(path: Path, header: list[str] | None = None) -> pd.DataFrame:
    """CSV, TSV (unquoted) or JSON lines, everything as strings; a BOM is dropped."""
    check_utf8(path)
    if path.suffix in (".json", ".jsonl"):
        with open(path, encoding="utf-8-sig") as handle:
            return pd.DataFrame([json.loads(line) for line in handle if line.strip()])
    tsv = path.suffix == ".tsv" or (header is not None and path.suffix != ".csv")
    options = {"sep": "\t", "quoting": csv.QUOTE_NONE} if tsv else {}
    if header is not None:
        options.update(header=None, names=header, quoting=csv.QUOTE_NONE, sep="\t")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", **options)
    return frame.rename(columns=lambda c: str(c).lstrip("\ufeff"))


def spans_to_bio(text: str, spans: dict[str, dict[str, list[list[int]]]]) -> tuple[list[str], int]:
    """CLUENER labels ({type: {mention: [[start, end_inclusive]]}}) -> BIO tag per character.

    BIO cannot hold overlapping mentions: the longest wins, and the number of mentions left
    out is returned so validation can count them.
    """
    found = [
        (start, end, entity_type)
        for entity_type, mentions in (spans or {}).items()
        for positions in mentions.values()
        for start, end in positions
    ]
    tags, skipped = ["O"] * len(text), 0
    for start, end, entity_type in sorted(found, key=lambda s: s[0] - s[1]):
        if any(tag != "O" for tag in tags[start : end + 1]):
            skipped += 1
            continue
        tags[start : end + 1] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (end - start)
    return tags, skipped


def as_sequences(frame: pd.DataFrame) -> pd.DataFrame:
    """Accept span-annotated records (text + label dict) or token/tag lists or strings."""
    if "tokens" not in frame and {"text", "label"} <= set(frame.columns):
        converted = [spans_to_bio(t, s) for t, s in zip(frame["text"], frame["label"], strict=True)]
        return pd.DataFrame(
            {
                "tokens": frame["text"].map(list),
                "tags": [tags for tags, _ in converted],
                "_overlapping_mentions": [skipped for _, skipped in converted],
            }
        )
    out = frame.copy()
    for column in ("tokens", "tags"):
        if column in out:
            out[column] = out[column].map(lambda v: v.split() if isinstance(v, str) else list(v))
    return out.assign(_overlapping_mentions=0)


def canonical(frame: pd.DataFrame, spec: DatasetSpec, file_name: str) -> pd.DataFrame:
    """Rename raw columns to the kind's schema and check the required ones are there."""
    in_file = ", ".join(map(str, frame.columns))
    frame = frame.rename(columns={raw: name for name, raw in spec.columns.items()})
    if spec.kind == "sequence-labelling":
        frame = as_sequences(frame)
    if spec.kind == "transactions":
        frame = frame.rename(columns=TRANSACTION_COLUMNS)
    if missing := [c for c in REQUIRED[spec.kind] if c not in frame]:
        wanted = spec.columns.get(missing[0], missing[0])
        raise DataLoadError(f"{file_name} has no column {wanted!r} (columns: {in_file})")
    for column in ("text", "text_a", "text_b", "label"):
        if column in frame:
            frame[column] = frame[column].astype(str).str.strip()
    if spec.label_names and "label" in frame:
        frame["label"] = frame["label"].map(lambda v: spec.label_names.get(v, v))
    return frame


def typed(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Numbers and timestamps as such; unparseable values become NaN/NaT for GX to count."""
    if spec.kind == "tabular":
        for column in spec.numeric:
            if column in frame:
                frame[column] = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    if spec.kind == "transactions":
        for column in ("quantity", "unit_price"):
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
        if {"quantity", "unit_price"} <= set(frame.columns):
            frame["amount"] = frame["quantity"] * frame["unit_price"]
        if "customer_id" in frame:
            frame["customer_id"] = frame["customer_id"].replace("", np.nan)
    if spec.kind == "sequence-labelling":
        frame["text"] = frame["tokens"].map("".join)
    if spec.kind == "interactions":
        for column in ("correct", "order"):
            frame[column] = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        frame["student_id"] = frame["student_id"].replace("", np.nan)
        frame["skill_id"] = frame["skill_id"].replace("", np.nan)
    return frame


def load_raw(raw_dir: Path, spec: DatasetSpec, seed: int) -> pd.DataFrame:
    parts = []
    for split, file_name in spec.files.items():
        part = canonical(read_table(raw_dir / file_name, spec.header), spec, file_name)
        parts.append(part if "split" in part else part.assign(split=split))
    frame = typed(pd.concat(parts, ignore_index=True), spec)
    return carve(frame, spec.split, seed) if spec.split else frame


def load_dataset(raw_dir: Path, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, dict]:
    """The frame to validate, and what params told the loader to clean (counted)."""
    frame, cleaning = load_raw(raw_dir, spec, seed), {}
    if spec.repairs is not None:  # the fixes `scrm data add` was asked for, replayed
        frame, cleaning["repairs"] = apply_repairs(frame, spec.repairs)
    if spec.drop_leaks:
        frame, cleaning["dropped_leaked_rows"] = drop_leaks(frame)
    return frame, cleaning


def known_labels(raw_dir: Path, spec: DatasetSpec) -> list[str]:
    if spec.labels_file:
        return [str(label) for label in json.loads((raw_dir / spec.labels_file).read_text())]
    return spec.labels


def finalize(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Drop validation helper columns and parse timestamps of a frame that passed."""
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_")])
    if spec.kind == "transactions":
        frame = frame.assign(invoiced_at=pd.to_datetime(frame["invoiced_at"], utc=True))
    return frame.reset_index(drop=True)
