"""Raw files -> one typed frame per data set, without judging the content.

Loading never drops or fixes rows: whatever is wrong with the content must reach the Great
Expectations suite, the one place that decides whether the data may be trained on. Only a file
that cannot be read as the data set at all (missing, not UTF-8, without its text or label
column) stops here, as a `DataLoadError` naming the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from pipelines.settings import DatasetSpec

TEXT_COLUMNS = ["text", "label", "split"]
TRANSACTION_COLUMNS = {
    "InvoiceNo": "invoice_no",
    "StockCode": "stock_code",
    "Quantity": "quantity",
    "InvoiceDate": "invoiced_at",
    "UnitPrice": "unit_price",
    "CustomerID": "customer_id",
    "Country": "country",
}


class DataLoadError(Exception):
    """A raw file that cannot be read at all."""


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataLoadError(f"{path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        raise DataLoadError(
            f"{path.name} is not valid UTF-8 (byte {byte:#04x} at offset {err.start})"
        ) from err


def _read_tsv(path: Path) -> pd.DataFrame:
    _read_text(path)  # fail early, with the file name, on missing files and bad encoding
    return pd.read_csv(
        path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE, encoding="utf-8"
    )


def load_text_classification(raw_dir: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Stack the split files into columns text, label, split (split = the key in params.yaml)."""
    parts = []
    for split, file_name in spec.files.items():
        part = _read_tsv(raw_dir / file_name)
        if missing := [c for c in ("text", "label") if c not in part]:
            raise DataLoadError(
                f"{file_name} has no column {missing[0]!r} (columns: {', '.join(part.columns)})"
            )
        part["text"] = part["text"].str.strip()
        part["split"] = split
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def load_transactions(raw_dir: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Rename the UCI columns to snake_case; timestamps stay strings until validated."""
    path = raw_dir / next(iter(spec.files.values()))
    _read_text(path)
    frame = pd.read_csv(path, dtype={"CustomerID": str, "InvoiceNo": str, "StockCode": str})
    return frame.rename(columns=TRANSACTION_COLUMNS)


def load_raw(raw_dir: Path, spec: DatasetSpec) -> pd.DataFrame:
    loaders = {"text-classification": load_text_classification, "transactions": load_transactions}
    return loaders[spec.kind](raw_dir, spec)


def finalize(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Cast a frame that passed validation to the types downstream steps rely on."""
    if spec.kind == "transactions":
        frame = frame.assign(invoiced_at=pd.to_datetime(frame["invoiced_at"], utc=True))
        return frame[list(TRANSACTION_COLUMNS.values())]
    return frame[TEXT_COLUMNS]
