"""The data gate: a Great Expectations suite per data-set kind, run before anything trains.

A failed suite writes its report (JSON and Data Docs HTML) and raises `ValidationFailed`; the
validated parquet is written only on success, so no downstream DVC stage can start on data that
did not pass. Facts that span rows (a text in two splits, rows per class, BIO order) are first
computed as helper columns (prefixed `_`), so GX checks and reports them like any value.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.datasets import finalize, known_labels, load_dataset
from pipelines.io import read_json, write_json
from pipelines.splits import CALIBRATION_SHARE, STRATIFIED_MIN_PER_CLASS, calibration_shortfall
from settings import Settings
from settings.platform import DatasetSpec

SPLITS = ["train", "dev", "test"]


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
    cleaning: dict[str, Any] = field(default_factory=dict)
    hint: str = ""  # how to get through, when the caller knows (scrm data add's options)

    @property
    def success(self) -> bool:
        return not self.failures

    def headline(self) -> str:
        if self.success:
            return f"{self.dataset}: all {self.evaluated} expectations passed on {self.rows} rows"
        return (
            f"{self.dataset}: {len(self.failures)} of {self.evaluated} expectations failed "
            f"on {self.rows} rows; nothing downstream runs"
            + (f"; {self.hint}" if self.hint else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "success": self.success,
            "rows": self.rows,
            "evaluated_expectations": self.evaluated,
            "failed_expectations": len(self.failures),
            "failures": [vars(f) for f in self.failures],
            "cleaning": self.cleaning,
            "gx_result": self.details,
        }


# -- helper columns -------------------------------------------------------------------------


def bio_problem(tokens: list[str], tags: list[str], types: set[str]) -> str | None:
    """Why a tag sequence is not valid BIO over the known types, or None if it is."""
    if len(tokens) != len(tags):
        return f"{len(tokens)} tokens but {len(tags)} tags"
    previous = "O"
    for i, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if tag != "O" and (prefix not in ("B", "I") or (types and kind not in types)):
            return f"unknown tag {tag!r} at {i}"
        if prefix == "I" and previous[2:] != kind:
            return f"{tag} follows {previous} at {i}"
        previous = tag
    return None


def calibration_short(frame: pd.DataFrame) -> int:
    """Rows the trainers' stratified calibration split lacks (0 when there is a dev split)."""
    if (frame["split"] == "dev").any():
        return 0
    train = frame.loc[frame["split"] == "train", "label"]
    return calibration_shortfall(len(train), train.nunique())


def trainer_min_rows(frame: pd.DataFrame) -> int:
    """Train rows per class the text trainers need: without a dev split they carve one from
    train, stratified, and scikit-learn refuses a class with a single row."""
    has_dev = "split" in frame and (frame["split"] == "dev").any()
    return 1 if has_dev else STRATIFIED_MIN_PER_CLASS


def with_helpers(frame: pd.DataFrame, spec: DatasetSpec, labels: list[str]) -> pd.DataFrame:
    helpers: dict[str, Any] = {}
    if "split" in frame and "label" in frame:
        helpers["_labels_in_split"] = frame.groupby("split")["label"].transform("nunique")
        train = frame["split"] == "train"
        per_class = frame[train].groupby("label")["label"].transform("size")
        helpers["_train_rows_in_class"] = per_class.reindex(frame.index)
        if spec.kind == "text-classification":
            helpers["_calibration_short"] = calibration_short(frame)
    if "split" in frame and "text" in frame:
        helpers["_splits_per_text"] = frame.groupby("text")["split"].transform("nunique")
    if {"text_a", "text_b", "split"} <= set(frame.columns):
        both = pd.concat(
            [
                frame[["text_a", "split"]].set_axis(["q", "split"], axis=1),
                frame[["text_b", "split"]].set_axis(["q", "split"], axis=1),
            ]
        )
        per_question = both.groupby("q")["split"].nunique()
        helpers["_splits_per_question"] = pd.concat(
            [frame["text_a"].map(per_question), frame["text_b"].map(per_question)], axis=1
        ).max(axis=1)
    if {"tokens", "tags"} <= set(frame.columns):
        types = set(labels)
        helpers["_bio_problem"] = [
            bio_problem(list(t), list(g), types)
            for t, g in zip(frame["tokens"], frame["tags"], strict=True)
        ]
    if spec.kind == "interactions" and {"student_id", "split"} <= set(frame.columns):
        # Knowledge tracing is evaluated on unseen students: each sits in exactly one split.
        helpers["_splits_per_student"] = frame.groupby("student_id")["split"].transform("nunique")
    return frame.assign(**helpers)


# -- suites ---------------------------------------------------------------------------------


def common(spec: DatasetSpec, columns: list[str]) -> list:
    import great_expectations.expectations as gxe

    return [
        *(gxe.ExpectColumnToExist(column=c) for c in [*columns, "split"]),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=SPLITS),
    ]


def text_checks(column: str, spec: DatasetSpec) -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=column, min_value=1, max_value=spec.max_text_chars
        ),
    ]


def label_checks(spec: DatasetSpec, labels: list[str]) -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels),
        # A split with a single class can neither train nor measure a classifier.
        gxe.ExpectColumnValuesToBeBetween(column="_labels_in_split", min_value=2),
        gxe.ExpectColumnValuesToBeBetween(
            column="_train_rows_in_class", min_value=spec.min_rows_per_class
        ),
    ]


def no_leak(column: str) -> Any:
    import great_expectations.expectations as gxe

    # The same text in two splits inflates test scores: each must sit in exactly one split.
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=1, max_value=1)


def few_duplicates(column: str, spec: DatasetSpec) -> Any:
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
        column=column, min_value=1.0 - spec.max_duplicate_share
    )


def text_classification_suite(spec: DatasetSpec, labels: list[str]) -> list:
    import great_expectations.expectations as gxe

    return [
        *common(spec, ["text", "label"]),
        *text_checks("text", spec),
        *label_checks(spec, labels),
        # Without a dev split the trainers carve one, stratified: it must hold every class.
        gxe.ExpectColumnValuesToBeBetween(column="_calibration_short", max_value=0),
        few_duplicates("text", spec),
        no_leak("_splits_per_text"),
    ]


def text_pair_suite(spec: DatasetSpec, labels: list[str]) -> list:
    return [
        *common(spec, ["text_a", "text_b", "label"]),
        *text_checks("text_a", spec),
        *text_checks("text_b", spec),
        *label_checks(spec, labels),
        no_leak("_splits_per_question"),
    ]


def sequence_labelling_suite(spec: DatasetSpec, labels: list[str]) -> list:
    import great_expectations.expectations as gxe

    return [
        *common(spec, ["tokens", "tags"]),
        *text_checks("text", spec),
        gxe.ExpectColumnValuesToBeNull(column="_bio_problem"),
        # Overlapping mentions cannot be BIO-tagged; a few (known annotation slips) may be.
        gxe.ExpectColumnValuesToBeBetween(
            column="_overlapping_mentions", max_value=0, mostly=1.0 - spec.max_overlap_share
        ),
        few_duplicates("text", spec),
        no_leak("_splits_per_text"),
    ]


def tabular_suite(spec: DatasetSpec, labels: list[str]) -> list:
    import great_expectations.expectations as gxe

    checks = [*common(spec, ["label"]), *label_checks(spec, labels)]
    if "id" in spec.columns:
        checks.append(gxe.ExpectColumnValuesToBeUnique(column="id"))
    for column in spec.numeric:
        checks += [
            gxe.ExpectColumnToExist(column=column),
            gxe.ExpectColumnValuesToNotBeNull(column=column, mostly=0.99),
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0),
        ]
    return checks


def transactions_suite(spec: DatasetSpec, labels: list[str]) -> list:
    import great_expectations.expectations as gxe

    columns = ["invoice_no", "stock_code", "quantity", "invoiced_at", "unit_price", "customer_id"]
    return [
        *(gxe.ExpectColumnToExist(column=c) for c in columns),
        gxe.ExpectColumnValuesToNotBeNull(column="invoice_no"),
        gxe.ExpectColumnValuesToNotBeNull(column="invoiced_at"),
        gxe.ExpectColumnValuesToMatchStrftimeFormat(
            column="invoiced_at", strftime_format="%Y-%m-%d %H:%M:%S"
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="quantity"),
        gxe.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0),
        gxe.ExpectColumnValuesToMatchRegex(column="customer_id", regex=r"^\d+$"),
    ]


def interactions_suite(spec: DatasetSpec, labels: list[str]) -> list:
    import great_expectations.expectations as gxe

    return [
        *common(spec, ["student_id", "skill_id", "correct", "order"]),
        gxe.ExpectColumnValuesToNotBeNull(column="student_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="skill_id"),
        gxe.ExpectColumnValuesToBeInSet(column="correct", value_set=[0, 1]),
        gxe.ExpectColumnValuesToNotBeNull(column="correct"),
        gxe.ExpectColumnValuesToNotBeNull(column="order"),
        gxe.ExpectColumnValuesToBeUnique(column="order"),
        no_leak("_splits_per_student"),
    ]


SUITES = {
    "text-classification": text_classification_suite,
    "text-pair": text_pair_suite,
    "sequence-labelling": sequence_labelling_suite,
    "tabular": tabular_suite,
    "transactions": transactions_suite,
    "interactions": interactions_suite,
}


# -- running --------------------------------------------------------------------------------


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


def run_suite(
    name: str, frame: pd.DataFrame, expectations: list, docs_dir: Path | None = None
) -> ValidationReport:
    """Validate with an ephemeral GX context; render Data Docs HTML into `docs_dir`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if docs_dir is not None:
        shutil.rmtree(docs_dir, ignore_errors=True)
        context.add_data_docs_site(
            site_name="scrm",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["scrm"]))
    asset = context.data_sources.add_pandas(name=f"{name}_source").add_dataframe_asset(name=name)
    batch_definition = asset.add_batch_definition_whole_dataframe(name="whole")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}_gate",
            validation_definitions=[definition],
            actions=actions,
            result_format="SUMMARY",
        )
    )
    result = next(iter(checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()))
    columns = set(frame.columns)
    return ValidationReport(
        dataset=name,
        rows=len(frame),
        evaluated=len(result.results),
        failures=[_describe(r, columns) for r in result.results if not r.success],
        details=result.to_json_dict(),
    )


def check_frame(
    name: str, frame: pd.DataFrame, spec: DatasetSpec, labels: list[str], docs_dir: Path | None
) -> ValidationReport:
    """The whole gate for a loaded frame: helpers, the kind's suite, the report."""
    if spec.kind == "text-classification":
        needed = max(spec.min_rows_per_class, trainer_min_rows(frame))
        spec = spec.model_copy(update={"min_rows_per_class": needed})
    expectations = SUITES[spec.kind](spec, labels)
    helped = with_helpers(frame, spec, labels)
    report = run_suite(name, helped, expectations, docs_dir)
    for failure in report.failures:
        failure.problem = plain_problem(failure, helped, spec) or failure.problem
    return report


def plain_problem(failure: Failure, frame: pd.DataFrame, spec: DatasetSpec) -> str | None:
    """The facts behind a failed class-count check, in words (GX only shows helper values)."""
    if failure.column == "_train_rows_in_class" and "_train_rows_in_class" in frame:
        train = frame[frame["split"] == "train"]
        counts = train.groupby("label")["label"].size()
        small = counts[counts < spec.min_rows_per_class].sort_values()
        listed = ", ".join(f"{label!r} ({n})" for label, n in small.head(5).items())
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        many = len(small) > 1
        why = (
            "the least the trainers need"
            if spec.min_rows_per_class == trainer_min_rows(frame)
            else "the minimum set for this data set"
        )
        return (
            f"{len(small)} {'classes have' if many else 'class has'} fewer than "
            f"{spec.min_rows_per_class} train rows, {why}: {listed}{more}"
        )
    if failure.column == "_calibration_short" and "_calibration_short" in frame:
        short = int(frame["_calibration_short"].max())
        return (
            f"without a dev split, {CALIBRATION_SHARE:.0%} of train is held out stratified for "
            f"calibration and is {short} rows short of one row per class"
        )
    return None


def validate_dataset(settings: Settings, name: str) -> ValidationReport:
    """Load, validate, write the report; write the validated parquet only if all passed."""
    spec = settings.dataset(name)
    raw_dir = settings.raw_dir(name)
    frame, cleaning = load_dataset(raw_dir, spec, settings.seed)
    report = check_frame(name, frame, spec, known_labels(raw_dir, spec), settings.data_docs(name))
    report.cleaning = cleaning
    write_json(settings.validation_report(name), report.to_dict())
    output = settings.validated_file(name)
    if not report.success:
        output.unlink(missing_ok=True)
        raise ValidationFailed(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    finalize(frame, spec).to_parquet(output, index=False)
    return report


def validation_blockers(path: Path) -> list[str]:
    """What the promotion gate holds against a model trained on this data set, if anything."""
    return [] if read_report(path).get("success") else ["training data did not pass validation"]


def read_report(path: Path) -> dict[str, Any]:
    """The validation verdict; a missing report counts as failed, never as passed."""
    if not path.is_file():
        return {"success": False, "reason": f"no validation report at {path}"}
    return read_json(path)
