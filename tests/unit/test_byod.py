"""`scrm data add`: a file it never saw becomes a validated data set, or nothing at all."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.byod import add_dataset
from pipelines.cli import app
from pipelines.validate import ValidationFailed
from settings import load_settings
from tests.conftest import REPO


def add(*args: str):
    return CliRunner().invoke(app, ["data", "add", *args])


def staged_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "data/raw").iterdir())


def test_csv_it_never_saw_becomes_a_validated_dataset(project: Path, bank_csv: Path) -> None:
    result = add(
        "--name",
        "my_bank",
        "--kind",
        "text-classification",
        "--file",
        str(bank_csv),
        "--text-col",
        "utterance",
        "--label-col",
        "intent",
        "--test-size",
        "0.25",
        "--licence",
        "CC BY 4.0",
    )
    assert result.exit_code == 0, result.output
    settings = load_settings(project)
    spec = settings.dataset("my_bank")  # known by name from now on
    assert spec.labels == [
        "cancel_transfer",
        "card_arrival",
        "exchange_rate",
        "lost_or_stolen_card",
    ]
    frame = pd.read_parquet(settings.validated_file("my_bank"))
    assert frame["split"].value_counts().to_dict() == {"train": 120, "test": 40}
    assert frame.groupby("split")["label"].nunique().to_dict() == {"test": 4, "train": 4}
    readme = (project / "data/raw/my_bank/README.md").read_text()
    assert "CC BY 4.0" in readme and "Rows per split" in readme
    listing = CliRunner().invoke(app, ["data", "list"])
    assert "my_bank" in listing.output and "scrm data add" in listing.output


def test_jsonl_with_its_own_split_column(project: Path, tmp_path: Path) -> None:
    source = pd.read_csv(REPO / "data/raw/smp2017_ecdt_task1/dev.tsv", sep="\t")
    source = source[source["label"].isin(["weather", "music", "flight"])]
    source["part"] = ["test" if i % 4 == 0 else "train" for i in range(len(source))]
    path = tmp_path / "utterances.jsonl"
    source.to_json(path, orient="records", lines=True, force_ascii=False)
    result = add(
        "--name",
        "zh_small",
        "--kind",
        "text-classification",
        "--file",
        str(path),
        "--split-col",
        "part",
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(load_settings(project).validated_file("zh_small"))
    assert (frame["split"] == "test").sum() == (source["part"] == "test").sum()


def test_sequence_labelling_file_with_bad_bio_is_refused(project: Path, tmp_path: Path) -> None:
    tags = ["B-name", "I-name", "O", "B-loc", "I-loc"]
    rows = [{"tokens": list(f"{name}三在北京"), "tags": tags} for name in "张王李赵刘陈杨黄"]
    rows.append({"tokens": list("周五"), "tags": ["I-name", "I-name"]})
    path = tmp_path / "ner.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    with pytest.raises(ValidationFailed) as failed:
        add_dataset(
            load_settings(project),
            "ner_bad",
            "sequence-labelling",
            path,
            {},
            0.2,
            0.0,
            "test",
            "none",
        )
    [failure] = failed.value.report.failures
    assert failure.column == "_bio_problem" and "I-name follows O at 0" in failure.problem
    assert staged_leftovers(project) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(intent="card_arrival"), "expectations failed"),
        (lambda f: f.drop(columns=["intent"]), "my intents.csv has no column 'intent'"),
    ],
)
def test_bad_file_is_one_clear_error_and_leaves_nothing(
    project: Path, bank_csv: Path, change, message: str
) -> None:
    change(pd.read_csv(bank_csv)).to_csv(bank_csv, index=False)
    result = add(
        "--name",
        "broken",
        "--kind",
        "text-classification",
        "--file",
        str(bank_csv),
        "--text-col",
        "utterance",
        "--label-col",
        "intent",
        "--test-size",
        "0.2",
    )
    assert result.exit_code == 1
    assert message in result.output
    assert staged_leftovers(project) == []
    assert "broken" not in load_settings(project).datasets


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "Bad!"], "use 2-64 lowercase letters"),
        (["--name", "banking77"], "already exists"),
        (["--name", "ok_name", "--kind", "images"], "Unknown kind: images"),
        (["--name", "ok_name", "--split-col", "part"], "not both"),
    ],
)
def test_refused_arguments(project: Path, bank_csv: Path, args, message) -> None:
    base = {"--kind": "text-classification", "--file": str(bank_csv), "--test-size": "0.2"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = add(*[item for pair in base.items() for item in pair])
    assert result.exit_code == 1
    assert message in result.output


def test_refused_file_names_the_fixes_and_passes_with_them(project: Path, bank_csv: Path) -> None:
    """The gate's refusal says which options fix it; with them the file is added, the fixes
    are replayed by `scrm validate` and listed in the card."""
    rows = pd.read_csv(bank_csv)
    parts = {0: "validation", 1: "test"}
    rows["part"] = [parts.get(i % 5 if i % 5 == 0 else i % 20, "train") for i in range(len(rows))]
    leaked = rows[rows["part"] == "train"].head(6).assign(part="test")  # texts in two splits
    pd.concat([rows, leaked]).to_csv(bank_csv, index=False)
    base = ["--kind", "text-classification", "--file", str(bank_csv), "--text-col", "utterance"]
    base += ["--label-col", "intent", "--split-col", "part"]
    refused = add("--name", "my_bank", *base)
    assert refused.exit_code == 1
    last = refused.output.strip().splitlines()[-1]
    assert "--split-map validation=dev" in last and "--drop-cross-split-duplicates" in last
    fixes = ["--split-map", "validation=dev", "--drop-cross-split-duplicates"]
    added = add("--name", "my_bank", *base, *fixes)
    assert added.exit_code == 0, added.output
    settings = load_settings(project)
    frame = pd.read_parquet(settings.validated_file("my_bank"))
    assert frame["split"].value_counts().to_dict() == {"train": 120, "dev": 32, "test": 8}
    assert frame.groupby("text")["split"].nunique().max() == 1
    card = (project / "data/raw/my_bank/README.md").read_text()
    assert "split 'validation' renamed: 32 rows" in card
    assert "dropped from later splits: {'test': 6}" in card
    report = json.loads(settings.validation_report("my_bank").read_text())
    assert report["cleaning"]["repairs"]["cross_split_duplicates_dropped"] == {"test": 6}


def test_a_class_too_small_for_the_trainers_is_refused_in_words(
    project: Path, bank_csv: Path
) -> None:
    """Without a dev split the trainers carve one from train, stratified: one train row of a
    class crashes scikit-learn there, so the gate refuses it first and says how to fix it."""
    rows = pd.read_csv(bank_csv).assign(part="train")
    rows.loc[rows.index[::4], "part"] = "test"
    rare = pd.DataFrame({"utterance": ["how do I close my account"], "intent": ["close"]})
    pd.concat([rows, rare.assign(part="train")]).to_csv(bank_csv, index=False)
    base = ["--kind", "text-classification", "--file", str(bank_csv), "--text-col", "utterance"]
    base += ["--label-col", "intent", "--split-col", "part"]
    refused = add("--name", "my_bank", *base)
    assert refused.exit_code == 1
    assert "--min-class-count 2 --rare-classes" in refused.output.strip().splitlines()[-1]
    with pytest.raises(ValidationFailed) as failed:
        add_dataset(load_settings(project), "my_bank", "text-classification", bank_csv,
                    {"text": "utterance", "label": "intent", "split": "part"},
                    None, 0.0, "test", "none")  # fmt: skip
    [failure] = failed.value.report.failures
    assert failure.problem == (
        "1 class has fewer than 2 train rows, the least the trainers need: 'close' (1)"
    )
    added = add("--name", "my_bank", *base, "--min-class-count", "2")
    assert added.exit_code == 0, added.output
    card = (project / "data/raw/my_bank/README.md").read_text()
    assert "classes under 2 train rows dropped: close (1)" in card
    assert "close" not in load_settings(project).dataset("my_bank").labels
