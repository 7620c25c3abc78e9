"""The data gate: a Great Expectations suite per data-set kind, run before anything trains.

A failed suite writes its report and raises `ValidationFailed`; the validated parquet is written
only on success, so no downstream DVC stage can start on data that did not pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.datasets import TEXT_COLUMNS, TRANSACTION_COLUMNS, finalize, load_raw
from pipelines.io import read_json, write_json
from pipelines.settings import DatasetSpec, Settings

LEAK_COLUMN = "splits_per_text"
CLASSES_COLUMN = "labels_in_split"


class ValidationFailed(Exception):
    """Raised with the report when a data set does not meet its expectations."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.headline())


@dataclass
class Failure:
    expectation: str
    column: str
    problem: str


@dataclass
class ValidationReport:
    dataset: str
    rows: int
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return not self.failures

    def headline(self) -> str:
        if self.success:
            return f"{self.dataset}: all {self.evaluated} expectations passed on {self.rows} rows"
        return (
            f"{self.dataset}: {len(self.failures)} of {self.evaluated} expectations failed "
            f"on {self.rows} rows; nothing downstream runs"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "success": self.success,
            "rows": self.rows,
            "evaluated_expectations": self.evaluated,
            "failed_expectations": len(self.failures),
            "failures": [vars(f) for f in self.failures],
            "gx_result": self.details,
        }


def text_classification_suite(spec: DatasetSpec) -> list:
    import great_expectations.expectations as gxe

    return [
        *(gxe.ExpectColumnToExist(column=c) for c in TEXT_COLUMNS),
        gxe.ExpectColumnValuesToNotBeNull(column="text"),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=1, max_value=spec.max_text_chars
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=spec.labels),
        # A split with a single class cannot train or measure a classifier.
        gxe.ExpectColumnValuesToBeBetween(column=CLASSES_COLUMN, min_value=2),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(spec.files)),
        # The same text in two splits inflates test scores: each text must sit in one split.
        gxe.ExpectColumnValuesToBeBetween(column=LEAK_COLUMN, min_value=1, max_value=1),
    ]


def transactions_suite(spec: DatasetSpec) -> list:
    import great_expectations.expectations as gxe

    return [
        *(gxe.ExpectColumnToExist(column=c) for c in TRANSACTION_COLUMNS.values()),
        gxe.ExpectColumnValuesToNotBeNull(column="invoice_no"),
        gxe.ExpectColumnValuesToNotBeNull(column="invoiced_at"),
        gxe.ExpectColumnValuesToMatchStrftimeFormat(
            column="invoiced_at", strftime_format="%Y-%m-%d %H:%M:%S"
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="quantity"),
        gxe.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0),
        gxe.ExpectColumnValuesToMatchRegex(column="customer_id", regex=r"^\d+$"),
    ]


def with_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Cross-row facts as columns, so GX can check them like any other value."""
    if not {"text", "label", "split"} <= set(frame.columns):
        return frame
    return frame.assign(
        **{
            LEAK_COLUMN: frame.groupby("text")["split"].transform("nunique"),
            CLASSES_COLUMN: frame.groupby("split")["label"].transform("nunique"),
        }
    )


def _describe(result: Any, columns: set[str]) -> Failure:
    config = result.expectation_config
    column = str(config.kwargs.get("column", ""))
    if column and column not in columns:
        return Failure(config.type, column, f"column {column!r} is missing")
    if result.exception_info and result.exception_info.get("raised_exception"):
        message = result.exception_info.get("exception_message") or "could not be evaluated"
        return Failure(config.type, column, message)
    details = result.result or {}
    if "unexpected_count" in details:
        examples = details.get("partial_unexpected_list", [])[:3]
        problem = (
            f"{details['unexpected_count']} of {details.get('element_count', '?')} rows "
            f"unexpected, e.g. {examples}"
        )
    elif "observed_value" in details:
        problem = f"observed {details['observed_value']!r}"
    else:
        problem = "failed"
    return Failure(config.type, column, problem)


def run_suite(name: str, frame: pd.DataFrame, expectations: list) -> ValidationReport:
    """Validate a dataframe with an ephemeral GX context: no project scaffold on disk."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas(name=f"{name}_source").add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe(name="whole").get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
    result = batch.validate(suite, result_format="SUMMARY")
    columns = set(frame.columns)
    failures = [_describe(r, columns) for r in result.results if not r.success]
    return ValidationReport(
        dataset=name,
        rows=len(frame),
        evaluated=len(result.results),
        failures=failures,
        details=result.to_json_dict(),
    )


SUITES = {"text-classification": text_classification_suite, "transactions": transactions_suite}


def validate_dataset(settings: Settings, name: str) -> ValidationReport:
    """Load, validate, write the report; write the validated parquet only if all passed."""
    spec = settings.dataset(name)
    frame = with_derived_columns(load_raw(settings.raw_dir(name), spec))
    report = run_suite(name, frame, SUITES[spec.kind](spec))
    write_json(settings.validation_report(name), report.to_dict())
    output = settings.validated_file(name)
    if not report.success:
        output.unlink(missing_ok=True)
        raise ValidationFailed(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    finalize(frame, spec).to_parquet(output, index=False)
    return report


def read_report(path: Path) -> dict[str, Any]:
    """The validation verdict; a missing report counts as failed, never as passed."""
    if not path.is_file():
        return {"success": False, "reason": f"no validation report at {path}"}
    return read_json(path)
