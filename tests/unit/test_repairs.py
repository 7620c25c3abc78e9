"""The fixes `scrm data add` offers for what the gate finds (pipelines/repairs.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.byod import repair_spec
from pipelines.datasets import DataLoadError
from pipelines.repairs import (
    apply_repairs,
    describe,
    drop_cross_split_duplicates,
    drop_duplicate_texts,
    map_splits,
    rare_classes,
)
from pipelines.splits import calibration_shortfall
from settings.platform import RepairSpec


def frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["text", "label", "split"])


def test_split_names_are_mapped_and_counted() -> None:
    data = frame([("a", "x", "train"), ("b", "y", "validation"), ("c", "x", "validation")])
    mapped, renamed = map_splits(data, {"validation": "dev"})
    assert mapped["split"].tolist() == ["train", "dev", "dev"] and renamed == {"validation": 2}


def test_a_text_in_several_splits_stays_in_the_earliest() -> None:
    data = frame(
        [
            ("q1", "x", "test"),
            ("q1", "x", "train"),
            ("q2", "y", "dev"),
            ("q2", "y", "test"),
            ("q3", "y", "test"),
            ("q1", "x", "train"),  # a repeat inside train is not a cross-split repeat
        ]
    )
    kept, dropped = drop_cross_split_duplicates(data)
    assert sorted(zip(kept["text"], kept["split"], strict=True)) == [
        ("q1", "train"),
        ("q1", "train"),
        ("q2", "dev"),
        ("q3", "test"),
    ]
    assert dropped == {"test": 2}


def test_pairs_leave_a_later_split_when_either_question_was_seen() -> None:
    data = pd.DataFrame(
        {
            "text_a": ["花呗怎么还", "借呗额度", "花呗怎么还", "余额宝"],
            "text_b": ["花呗如何还款", "借呗提额", "余额宝收益", "余额宝收益"],
            "label": ["1", "1", "0", "1"],
            "split": ["train", "train", "dev", "test"],
        }
    )
    kept, dropped = drop_cross_split_duplicates(data)
    # the dev pair reuses a train question; with it gone, 余额宝收益 is first seen in test
    assert kept["split"].tolist() == ["train", "train", "test"] and dropped == {"dev": 1}


def test_repeated_texts_keep_their_first_row_in_the_earliest_split() -> None:
    data = frame([("a", "x", "test"), ("a", "y", "train"), ("a", "x", "train"), ("b", "y", "dev")])
    kept, dropped = drop_duplicate_texts(data)
    assert kept.values.tolist() == [["a", "y", "train"], ["b", "y", "dev"]] and dropped == 2


def test_rare_classes_are_dropped_everywhere_or_merged() -> None:
    data = frame(
        [("a", "big", "train"), ("b", "big", "train"), ("c", "rare", "train")]
        + [("d", "rare", "test"), ("e", "only_test", "test"), ("f", "big", "test")]
    )
    dropped, rare = rare_classes(data, 2, None)
    assert set(dropped["label"]) == {"big"} and rare == {"rare": 1, "only_test": 0}
    merged, _ = rare_classes(data, 2, "other")
    assert merged["label"].tolist() == ["big", "big", "other", "other", "other", "big"]


def test_fixes_run_in_order_and_each_is_described() -> None:
    data = frame(
        [("a", "x", "train"), ("b", "x", "train"), ("a", "x", "validation")]
        + [("c", "y", "train"), ("d", "x", "validation")]
    )
    spec = RepairSpec(
        split_map={"validation": "dev"}, cross_split_duplicates=True, min_class_count=2
    )
    fixed, done = apply_repairs(data, spec)
    assert fixed.values.tolist() == [["a", "x", "train"], ["b", "x", "train"], ["d", "x", "dev"]]
    lines = describe(done)
    assert lines == [
        "split 'validation' renamed: 2 rows",
        "texts repeated across splits dropped from later splits: {'dev': 1}",
        "classes under 2 train rows dropped: y (1)",
    ]


def test_options_parse_into_the_spec_or_are_refused() -> None:
    spec = repair_spec(["validation=dev"], True, False, 3, "merge:other")
    assert spec == RepairSpec(
        split_map={"validation": "dev"},
        cross_split_duplicates=True,
        min_class_count=3,
        rare_merge_into="other",
    )
    assert repair_spec([], False, False, 0, "drop") is None
    for bad in (["validation"], ["validation=holdout"]):
        with pytest.raises(DataLoadError, match="NAME=dev"):
            repair_spec(bad, False, False, 0, "drop")
    with pytest.raises(DataLoadError, match="merge:LABEL"):
        repair_spec([], False, False, 2, "merge")


@pytest.mark.parametrize(
    ("rows", "classes", "short"),
    [(160, 4, 0), (20, 10, 7), (154, 77, 53), (14, 2, 0), (2, 2, 1)],
)
def test_calibration_shortfall_matches_scikit_learn(rows: int, classes: int, short: int) -> None:
    from sklearn.model_selection import train_test_split

    labels = [i % classes for i in range(rows)]
    assert calibration_shortfall(rows, classes) == short
    try:
        train_test_split(labels, test_size=0.15, stratify=labels, random_state=0)
        refused = False
    except ValueError:
        refused = True
    assert refused == (short > 0)


def test_each_failure_the_options_fix_is_named_in_the_hint() -> None:
    from pipelines.byod import fix_hint
    from pipelines.validate import Failure, ValidationReport
    from settings.platform import DatasetSpec

    data = frame([("a", "x", "train"), ("a", "x", "validation"), ("b", "y", "test")])
    failures = [
        Failure("expect_column_values_to_be_in_set", "split", "1 of 3 rows unexpected"),
        Failure("expect_column_values_to_be_between", "_splits_per_text", "2 of 3"),
        Failure("expect_column_proportion_of_unique_values_to_be_between", "text", "0.66"),
        Failure("expect_column_values_to_be_between", "_train_rows_in_class", "1 of 3"),
        Failure("expect_column_values_to_be_between", "_labels_in_split", "no option fixes it"),
    ]
    report = ValidationReport("mine", rows=3, evaluated=9, failures=failures)
    report.hint = fix_hint(report, data, DatasetSpec(kind="text-classification", files={}))
    assert report.headline().endswith(
        "; to fix, add: --split-map validation=dev --drop-cross-split-duplicates "
        "--drop-duplicate-texts --min-class-count 2 --rare-classes drop (or merge:LABEL)"
    )
