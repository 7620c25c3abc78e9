"""The data gate: real data passes, each kind of broken file fails with a readable reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.datasets import DataLoadError
from pipelines.settings import load_settings
from pipelines.validate import ValidationFailed, validate_dataset
from tests.conftest import REPO

INTENT = "smp2017_ecdt_task1"
RETAIL = "online_retail"


def project_with(tmp_path: Path, dataset: str) -> Path:
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "data" / "raw" / dataset, tmp_path / "data" / "raw" / dataset)
    return tmp_path


def rewrite_tsv(path: Path, change) -> None:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    change(frame).to_csv(path, sep="\t", index=False)


@pytest.mark.parametrize("dataset", [INTENT, RETAIL])
def test_shipped_data_passes_and_is_written(tmp_path: Path, dataset: str) -> None:
    settings = load_settings(project_with(tmp_path, dataset))
    report = validate_dataset(settings, dataset)
    assert report.success, report.failures
    validated = pd.read_parquet(settings.validated_file(dataset))
    assert len(validated) == report.rows > 1000
    assert settings.validation_report(dataset).is_file()


def test_intent_splits_and_labels_are_as_published(tmp_path: Path) -> None:
    settings = load_settings(project_with(tmp_path, INTENT))
    validate_dataset(settings, INTENT)
    frame = pd.read_parquet(settings.validated_file(INTENT))
    assert frame["split"].value_counts().to_dict() == {"train": 2299, "dev": 770, "test": 667}
    assert frame["label"].nunique() == 31


CORRUPTIONS = {
    "empty text": (lambda f: f.assign(text=[""] * 5 + f["text"].tolist()[5:]), "text"),
    "unknown label": (lambda f: f.assign(label=["refund"] * len(f)), "refund"),
    "single class": (lambda f: f.assign(label=["chat"] * len(f)), "labels_in_split 2299 of"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_training_file_fails_and_writes_nothing(tmp_path: Path, name: str) -> None:
    change, expected = CORRUPTIONS[name]
    root = project_with(tmp_path, INTENT)
    rewrite_tsv(root / "data/raw" / INTENT / "train.tsv", change)
    settings = load_settings(root)
    with pytest.raises(ValidationFailed) as failed:
        validate_dataset(settings, INTENT)
    problems = " ".join(f"{f.column} {f.problem}" for f in failed.value.report.failures)
    assert expected in problems
    assert not settings.validated_file(INTENT).exists()
    assert "nothing downstream runs" in str(failed.value)


def test_text_in_train_and_test_is_reported_as_leak(tmp_path: Path) -> None:
    root = project_with(tmp_path, INTENT)
    test_file = root / "data/raw" / INTENT / "test.tsv"
    train = pd.read_csv(root / "data/raw" / INTENT / "train.tsv", sep="\t", dtype=str)
    rewrite_tsv(test_file, lambda f: pd.concat([f, train.head(4)]))
    with pytest.raises(ValidationFailed) as failed:
        validate_dataset(load_settings(root), INTENT)
    [leak] = failed.value.report.failures
    assert leak.column == "splits_per_text"
    assert leak.problem.startswith("8 of")  # 4 texts, each now in two splits


def test_split_file_without_label_column_is_one_clear_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, INTENT)
    rewrite_tsv(root / "data/raw" / INTENT / "train.tsv", lambda f: f.drop(columns=["label"]))
    with pytest.raises(DataLoadError, match="train.tsv has no column 'label' \\(columns: text\\)"):
        validate_dataset(load_settings(root), INTENT)


def test_transactions_without_a_column_fail_validation(tmp_path: Path) -> None:
    root = project_with(tmp_path, RETAIL)
    path = root / "data/raw" / RETAIL / "online_retail_first65535.csv"
    pd.read_csv(path, dtype=str).drop(columns=["UnitPrice"]).to_csv(path, index=False)
    with pytest.raises(ValidationFailed) as failed:
        validate_dataset(load_settings(root), RETAIL)
    problems = {f.problem for f in failed.value.report.failures}
    assert problems == {"column 'unit_price' is missing"}


def test_bad_encoding_is_one_clear_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, INTENT)
    path = root / "data/raw" / INTENT / "dev.tsv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))
    with pytest.raises(DataLoadError, match="dev.tsv is not valid UTF-8"):
        validate_dataset(load_settings(root), INTENT)


def test_transactions_with_bad_timestamp_and_negative_price_fail(tmp_path: Path) -> None:
    root = project_with(tmp_path, RETAIL)
    path = root / "data/raw" / RETAIL / "online_retail_first65535.csv"
    frame = pd.read_csv(path, dtype=str)
    frame.loc[3, "InvoiceDate"] = "yesterday"
    frame.loc[4, "UnitPrice"] = "-1.5"
    frame.to_csv(path, index=False)
    with pytest.raises(ValidationFailed) as failed:
        validate_dataset(load_settings(root), RETAIL)
    columns = {f.column for f in failed.value.report.failures}
    assert columns == {"invoiced_at", "unit_price"}


def test_cli_prints_table_and_exits_non_zero(tmp_path: Path, monkeypatch) -> None:
    root = project_with(tmp_path, INTENT)
    rewrite_tsv(root / "data/raw" / INTENT / "train.tsv", CORRUPTIONS["unknown label"][0])
    monkeypatch.chdir(root)
    monkeypatch.delenv("SCRM_ROOT", raising=False)
    result = CliRunner().invoke(app, ["validate", INTENT])
    assert result.exit_code == 1
    assert "Failed expectations" in result.output
    assert "expectations failed" in result.output
