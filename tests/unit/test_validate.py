"""The data gate: every shipped set passes; each kind of broken file fails with a clear reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.datasets import DataLoadError, spans_to_bio
from pipelines.validate import ValidationFailed, bio_problem, validate_dataset
from settings import load_settings
from tests.conftest import REPO

INTENT = "smp2017_ecdt_task1"
RETAIL = "online_retail"
SHIPPED = {
    INTENT: "text-classification",
    "banking77": "text-classification",
    "chnsenticorp": "text-classification",
    "cluener2020": "sequence-labelling",
    "atec_question_matching": "text-pair",
    "telco_churn": "tabular",
    RETAIL: "transactions",
}


def project_with(tmp_path: Path, dataset: str) -> Path:
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "data" / "raw" / dataset, tmp_path / "data" / "raw" / dataset)
    return tmp_path


def rewrite_tsv(path: Path, change) -> None:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    change(frame).to_csv(path, sep="\t", index=False, quoting=3)


def failures(root: Path, dataset: str) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as failed:
        validate_dataset(load_settings(root), dataset)
    assert "nothing downstream runs" in str(failed.value)
    assert not load_settings(root).validated_file(dataset).exists()
    return {f.column: f.problem for f in failed.value.report.failures}


@pytest.mark.parametrize("dataset", sorted(SHIPPED))
def test_shipped_data_passes_with_report_and_data_docs(tmp_path: Path, dataset: str) -> None:
    settings = load_settings(project_with(tmp_path, dataset))
    assert settings.dataset(dataset).kind == SHIPPED[dataset]
    report = validate_dataset(settings, dataset)
    assert report.success, report.failures
    validated = pd.read_parquet(settings.validated_file(dataset))
    assert len(validated) == report.rows > 1000
    assert not [c for c in validated.columns if c.startswith("_")]  # helpers stay out
    saved = json.loads(settings.validation_report(dataset).read_text())
    assert saved["success"] and saved["gx_result"]["results"]
    assert (settings.data_docs(dataset) / "index.html").stat().st_size > 1000


def test_splits_are_as_published_or_carved_with_the_seed(tmp_path: Path) -> None:
    sizes = {}
    for dataset in (INTENT, "banking77", "telco_churn"):
        settings = load_settings(project_with(tmp_path, dataset))
        validate_dataset(settings, dataset)
        frame = pd.read_parquet(settings.validated_file(dataset))
        sizes[dataset] = frame["split"].value_counts().to_dict()
    assert sizes[INTENT] == {"train": 2299, "dev": 770, "test": 667}
    assert sizes["banking77"] == {"train": 8997, "dev": 1000, "test": 3080}  # 6 train dups out
    assert sizes["telco_churn"] == {"train": 4930, "dev": 704, "test": 1409}


def test_question_groups_never_straddle_splits(tmp_path: Path) -> None:
    dataset = "atec_question_matching"
    settings = load_settings(project_with(tmp_path, dataset))
    validate_dataset(settings, dataset)
    frame = pd.read_parquet(settings.validated_file(dataset))
    questions = pd.concat(
        [
            frame[["text_a", "split"]].set_axis(["q", "s"], axis=1),
            frame[["text_b", "split"]].set_axis(["q", "s"], axis=1),
        ]
    )
    assert questions.groupby("q")["s"].nunique().max() == 1
    assert set(frame["split"]) == {"train", "dev", "test"}


def test_leak_cleaning_is_counted_and_keeps_test_as_published(tmp_path: Path) -> None:
    settings = load_settings(project_with(tmp_path, "chnsenticorp"))
    report = validate_dataset(settings, "chnsenticorp")
    assert report.cleaning == {"dropped_leaked_rows": {"dev": 39, "train": 687}}
    frame = pd.read_parquet(settings.validated_file("chnsenticorp"))
    assert (frame["split"] == "test").sum() == 1200
    assert set(frame["label"]) == {"negative", "positive"}


CORRUPTIONS = {
    "empty text": (lambda f: f.assign(text=[""] * 5 + f["text"].tolist()[5:]), "text"),
    "empty label": (lambda f: f.assign(label=[""] * 3 + f["label"].tolist()[3:]), "label"),
    "unknown label": (lambda f: f.assign(label=["refund"] * len(f)), "label"),
    "single class": (lambda f: f.assign(label=["chat"] * len(f)), "_labels_in_split"),
    "rare class": (lambda f: f[(f.label != "email") | (f.index % 9 == 0)], "_train_rows_in_class"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_training_file_fails_and_writes_nothing(tmp_path: Path, name: str) -> None:
    change, column = CORRUPTIONS[name]
    root = project_with(tmp_path, INTENT)
    rewrite_tsv(root / "data/raw" / INTENT / "train.tsv", change)
    assert column in failures(root, INTENT)


def test_text_in_train_and_test_is_reported_as_leak(tmp_path: Path) -> None:
    root = project_with(tmp_path, INTENT)
    train = pd.read_csv(root / "data/raw" / INTENT / "train.tsv", sep="\t", dtype=str)
    rewrite_tsv(root / "data/raw" / INTENT / "test.tsv", lambda f: pd.concat([f, train.head(4)]))
    found = failures(root, INTENT)
    assert list(found) == ["_splits_per_text"]
    assert found["_splits_per_text"].startswith("8 of")  # 4 texts, each now in two splits


def test_split_file_without_label_column_is_one_clear_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, INTENT)
    rewrite_tsv(root / "data/raw" / INTENT / "train.tsv", lambda f: f.drop(columns=["label"]))
    with pytest.raises(DataLoadError, match=r"train.tsv has no column 'label' \(columns: text\)"):
        validate_dataset(load_settings(root), INTENT)


def test_bad_encoding_is_one_clear_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, INTENT)
    path = root / "data/raw" / INTENT / "dev.tsv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))
    with pytest.raises(DataLoadError, match="dev.tsv is not valid UTF-8"):
        validate_dataset(load_settings(root), INTENT)


def test_ner_spans_past_the_text_fail_bio_validation(tmp_path: Path) -> None:
    root = project_with(tmp_path, "cluener2020")
    path = root / "data/raw/cluener2020/dev.json"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    records[0]["label"] = {"name": {"x": [[len(records[0]["text"]) - 1, 80]]}}
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    assert "tags" in failures(root, "cluener2020")["_bio_problem"]


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        (["B-name", "I-name", "O"], None),
        (["O", "I-name", "O"], "I-name follows O at 1"),
        (["B-name", "I-book", "O"], "I-book follows B-name at 1"),
        (["B-pet", "O", "O"], "unknown tag 'B-pet' at 0"),
        (["O", "O"], "3 tokens but 2 tags"),
    ],
)
def test_bio_rules(tags, problem) -> None:
    assert bio_problem(["a", "b", "c"], tags, {"name", "book"}) == problem


def test_overlapping_mentions_keep_the_longest_and_are_counted() -> None:
    tags, skipped = spans_to_bio(
        "招商银行信用卡", {"company": {"招商银行": [[0, 3]]}, "organization": {"招商": [[0, 1]]}}
    )
    assert tags[:4] == ["B-company", "I-company", "I-company", "I-company"]
    assert skipped == 1


def test_tabular_negative_numbers_and_duplicate_ids_fail(tmp_path: Path) -> None:
    root = project_with(tmp_path, "telco_churn")
    path = root / "data/raw/telco_churn/Telco-Customer-Churn.csv"
    frame = pd.read_csv(path, dtype=str)
    frame.loc[1, "tenure"] = "-3"
    frame.loc[2, "customerID"] = frame.loc[3, "customerID"]
    frame.to_csv(path, index=False)
    assert set(failures(root, "telco_churn")) == {"tenure", "id"}


def test_transactions_with_bad_timestamp_and_negative_price_fail(tmp_path: Path) -> None:
    root = project_with(tmp_path, RETAIL)
    path = root / "data/raw" / RETAIL / "online_retail_first65535.csv"
    frame = pd.read_csv(path, dtype=str)
    frame.loc[3, "InvoiceDate"] = "yesterday"
    frame.loc[4, "UnitPrice"] = "-1.5"
    frame.to_csv(path, index=False)
    assert set(failures(root, RETAIL)) == {"invoiced_at", "unit_price"}


def test_transactions_without_a_column_fail_validation(tmp_path: Path) -> None:
    root = project_with(tmp_path, RETAIL)
    path = root / "data/raw" / RETAIL / "online_retail_first65535.csv"
    pd.read_csv(path, dtype=str).drop(columns=["UnitPrice"]).to_csv(path, index=False)
    assert failures(root, RETAIL) == {"unit_price": "column 'unit_price' is missing"}


def test_cli_prints_table_and_exits_non_zero(tmp_path: Path, monkeypatch) -> None:
    root = project_with(tmp_path, INTENT)
    rewrite_tsv(root / "data/raw" / INTENT / "train.tsv", CORRUPTIONS["unknown label"][0])
    monkeypatch.chdir(root)
    monkeypatch.delenv("SCRM_ROOT", raising=False)
    result = CliRunner().invoke(app, ["validate", INTENT])
    assert result.exit_code == 1
    assert "Failed expectations" in result.output
    assert "expectations failed" in result.output
