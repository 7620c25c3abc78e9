"""Bring your own data: `scrm data add` puts a user's file behind the same gate as ours.

The file is staged in a hidden folder, loaded and validated there with the suite of its kind,
and only then moved into data/raw/NAME in one rename, with a generated README and the spec
(dataset.yaml) that makes it known to every `scrm` command by name. A file that fails leaves
nothing behind.
"""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from pipelines.datasets import DataLoadError, load_dataset
from pipelines.repairs import describe
from pipelines.validate import (
    SPLITS,
    Failure,
    ValidationFailed,
    ValidationReport,
    check_frame,
    trainer_min_rows,
    validate_dataset,
)
from settings import Settings, load_settings
from settings.loader import DATASET_FILE
from settings.platform import DatasetSpec, RepairSpec, SplitSpec

NAME = re.compile(r"[a-z][a-z0-9_]{1,63}")
FORMATS = (".csv", ".tsv", ".json", ".jsonl")


def observed_labels(frame: pd.DataFrame, kind: str) -> list[str]:
    """The label set a user file defines (empty labels are not labels: GX reports them)."""
    if kind == "sequence-labelling":
        return sorted({t.split("-", 1)[1] for tags in frame["tags"] for t in tags if "-" in t})
    return sorted({str(v) for v in frame["label"].dropna() if str(v).strip()})


def numeric_columns(frame: pd.DataFrame, skip: set[str]) -> list[str]:
    numeric = []
    for column in frame.columns:
        if column in skip or column.startswith("_"):
            continue
        values = frame[column].astype(str).str.strip().replace("", None).dropna()
        if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
            numeric.append(column)
    return numeric


def repair_spec(
    split_map: list[str], cross_split: bool, duplicates: bool, min_count: int, rare: str
) -> RepairSpec | None:
    """`scrm data add`'s fix options -> the spec's `repairs` (None when none was asked for)."""
    mapping = {}
    for item in split_map:
        old, _, new = item.partition("=")
        if not old or new not in SPLITS:
            raise DataLoadError(f"--split-map {item!r}: use NAME=train, NAME=dev or NAME=test")
        mapping[old] = new
    action, _, merge_into = rare.partition(":")
    if action not in ("drop", "merge") or (action == "merge") != bool(merge_into):
        raise DataLoadError(f"--rare-classes {rare!r}: use drop or merge:LABEL")
    if not (mapping or cross_split or duplicates or min_count):
        return None
    return RepairSpec(
        split_map=mapping,
        cross_split_duplicates=cross_split,
        duplicate_texts=duplicates,
        min_class_count=min_count,
        rare_merge_into=merge_into or None,
    )


def fix_option(failure: Failure, frame: pd.DataFrame, spec: DatasetSpec) -> str | None:
    """The `scrm data add` option that fixes a failed expectation, if one does."""
    if failure.column == "split" and "split" in frame:
        unknown = sorted(set(frame["split"].astype(str)) - set(SPLITS))[:3]
        guess = {"validation": "dev", "valid": "dev", "val": "dev", "eval": "dev"}
        targets = {v: guess.get(v.lower(), "train|dev|test") for v in unknown}
        return " ".join(f"--split-map {v}={target}" for v, target in targets.items())
    if failure.column in ("_splits_per_text", "_splits_per_question"):
        return "--drop-cross-split-duplicates"
    if failure.expectation == "expect_column_proportion_of_unique_values_to_be_between":
        return "--drop-duplicate-texts"
    if failure.column == "_train_rows_in_class":
        needed = max(spec.min_rows_per_class, trainer_min_rows(frame))
        return f"--min-class-count {needed} --rare-classes drop (or merge:LABEL)"
    if failure.column == "_calibration_short":
        return "--dev-size 0.2 (with --test-size; or dev rows in the split column)"
    return None


def fix_hint(report: ValidationReport, frame: pd.DataFrame, spec: DatasetSpec) -> str:
    options = [fix_option(f, frame, spec) for f in report.failures]
    found = list(dict.fromkeys(o for o in options if o))
    return f"to fix, add: {' '.join(found)}" if found else ""


def readme(
    name: str,
    spec: DatasetSpec,
    frame: pd.DataFrame,
    source: str,
    licence: str,
    repairs: dict | None = None,
) -> str:
    splits = frame["split"].value_counts().to_dict()
    labels = ", ".join(spec.labels) if len(spec.labels) <= 40 else f"{len(spec.labels)} labels"
    fixes = describe(repairs or {})
    fixed = "".join(f"  - {line}\n" for line in fixes)
    if fixes:
        fixed = f"- Fixes applied by `scrm data add` (replayed on every load):\n{fixed}"
    return (
        f"# {name}\n\n"
        f"- Added with `scrm data add` on {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.\n"
        f"- Source: {source}\n- Licence: {licence}\n- Kind: {spec.kind}\n"
        f"- Column mapping (schema <- file): {spec.columns or 'as in the file'}\n"
        f"- Rows per split: {splits}\n- Labels: {labels}\n"
        f"- Spec: `{DATASET_FILE}` (validated by `scrm validate {name}`).\n"
        f"{fixed}"
    )


def add_dataset(
    settings: Settings,
    name: str,
    kind: str,
    file: Path,
    columns: dict[str, str],
    test_size: float | None,
    dev_size: float,
    source: str,
    licence: str,
    repairs: RepairSpec | None = None,
) -> ValidationReport:
    raw_root = settings.path(settings.data.raw_dir)
    if not NAME.fullmatch(name):
        raise DataLoadError(f"name {name!r}: use 2-64 lowercase letters, digits or _")
    if name in settings.datasets or (raw_root / name).exists():
        raise DataLoadError(f"a data set called {name!r} already exists; choose another name")
    if not file.is_file():
        raise DataLoadError(f"{file} does not exist")
    if file.suffix.lower() not in FORMATS:
        raise DataLoadError(f"{file.name}: use one of {', '.join(FORMATS)}")
    if "split" in columns and test_size:
        raise DataLoadError("give --split-col or --test-size, not both")
    if "split" not in columns and not test_size:
        raise DataLoadError("give --split-col (a train/dev/test column) or --test-size")
    split = (
        None if "split" in columns else SplitSpec(carve_from="all", test=test_size, dev=dev_size)
    )
    staging = raw_root / f".staging-{name}-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        data_file = f"data{file.suffix.lower()}"
        shutil.copy2(file, staging / data_file)
        spec = DatasetSpec(
            kind=kind, files={"all": data_file}, columns=columns, split=split, repairs=repairs
        )
        try:
            frame, _ = load_dataset(staging, spec, settings.seed)
        except DataLoadError as error:  # name the user's file, not the staged copy
            raise DataLoadError(str(error).replace(data_file, file.name)) from error
        extra: dict = {"labels": observed_labels(frame, kind)}
        if kind == "tabular":
            extra["numeric"] = numeric_columns(frame, {"id", "label", "split"})
        if repairs is not None and repairs.min_class_count:
            extra["min_rows_per_class"] = repairs.min_class_count
        spec = spec.model_copy(update=extra)
        frame, cleaning = load_dataset(staging, spec, settings.seed)
        report = check_frame(name, frame, spec, spec.labels, docs_dir=None)
        if not report.success:
            report.hint = fix_hint(report, frame, spec)
            raise ValidationFailed(report)
        spec_text = yaml.safe_dump(spec.model_dump(exclude_defaults=True), allow_unicode=True)
        (staging / DATASET_FILE).write_text(spec_text, encoding="utf-8")
        card = readme(name, spec, frame, source, licence, cleaning.get("repairs"))
        (staging / "README.md").write_text(card)
        staging.rename(raw_root / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return validate_dataset(load_settings(settings.root), name)
