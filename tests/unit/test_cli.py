from __future__ import annotations

import subprocess

from tests.conftest import BIN, REPO, project_env


def scrm(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "scrm"), *args], cwd=cwd, env=project_env(), capture_output=True, text=True
    )


def test_help_lists_every_step() -> None:
    result = scrm("--help")
    assert result.returncode == 0
    for step in ("validate", "features", "tune", "train", "evaluate", "promote", "serve", "info"):
        assert step in result.stdout


def test_unknown_task_is_one_line_and_non_zero() -> None:
    result = scrm("train", "horoscope")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: Unknown task: horoscope; available: intent, intent_en, sentiment, ner, faq_match,"
        " churn, repurchase, tabular"
    )


def test_dataset_of_the_wrong_kind_is_refused() -> None:
    result = scrm("train", "intent", "--dataset", "cluener2020")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: intent trains on text-classification data; cluener2020 is sequence-labelling"
    )


def test_outside_a_project_says_so(tmp_path) -> None:
    result = scrm("validate", "online_retail", cwd=tmp_path)
    assert result.returncode == 1
    assert "No params.yaml" in result.stderr
    assert "Traceback" not in result.stderr
