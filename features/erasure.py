"""Erasure from the offline feature data (right to be forgotten): the parquet files the feature
views read (and the validated data they are built from) lose the customer's rows, so a later
`feast materialize` cannot bring the customer back online.

The public raw data sets under `data/raw` are the pipeline's input and are not edited: a full
`dvc repro` from them re-creates the rows (docs/privacy.md, "knowingly left").
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

ID_COLUMNS = ("customer_id", "CustomerID", "customerID")


def erase_parquet(path: Path, customer_id: str) -> int:
    """Drop the customer's rows from one parquet file (rewritten atomically); rows dropped."""
    names = pq.read_schema(path).names
    column = next((c for c in ID_COLUMNS if c in names), None)
    if column is None:
        return 0
    frame = pd.read_parquet(path)
    ids = frame[column].astype(str).str.removesuffix(".0")
    keep = ids != str(customer_id)
    dropped = int((~keep).sum())
    if dropped:
        tmp = path.with_name(f".{path.name}.erasing")
        frame[keep].to_parquet(tmp, index=False)
        os.replace(tmp, path)
    return dropped


def erase_offline(folders: Iterable[Path], customer_id: str) -> int:
    """Rows dropped from every parquet file under `folders` (those that exist)."""
    dropped = 0
    for folder in folders:
        if Path(folder).is_dir():
            for path in sorted(Path(folder).rglob("*.parquet")):
                dropped += erase_parquet(path, customer_id)
    return dropped
