"""pipelines/progress.py: stage records, the `scrm stages` table, bars on and off a terminal, and
the training loop's step callback that the bars hang on."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from pipelines import progress
from pipelines.commands.models import latest_per_stage, stages_table
from pipelines.progress import (
    STAGES_FILE,
    bar,
    eta_seconds,
    fit_bar,
    read_stages,
    stage,
    timed_bar,
)
from tests.conftest import BIN, project_env

RECORD_KEYS = {"stage", "started", "seconds", "outputs", "metric_name", "metric"}


@pytest.fixture(autouse=True)
def plain_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a dvc stage, whatever the environment running the tests says."""
    monkeypatch.delenv("DVC_STAGE", raising=False)


def scrm_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "scrm"), *args], cwd=cwd, env=project_env(), capture_output=True, text=True
    )


def records(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / STAGES_FILE).read_text().splitlines()]


def test_stage_prints_start_and_end_and_appends_a_record(tmp_path: Path, capsys) -> None:
    written = tmp_path / "data" / "models" / "intent" / "train.json"
    with stage("train intent", tmp_path) as current:
        written.parent.mkdir(parents=True)
        written.write_text("{}")
        current.wrote_under(tmp_path / "data")
        current.produced("models:/intent/3 @champion")
        current.headline("dev_accuracy", 0.91234)
    with stage("evaluate intent", tmp_path):
        pass
    first, second = records(tmp_path)
    assert set(first) >= RECORD_KEYS
    assert first["stage"] == "train intent" and first["status"] == "ok"
    assert first["outputs"] == ["data/models/intent/train.json", "models:/intent/3 @champion"]
    assert (first["metric_name"], first["metric"]) == ("dev_accuracy", 0.91234)
    assert first["seconds"] >= 0 and first["started"][:4].isdigit()
    assert second["stage"] == "evaluate intent" and second["metric_name"] is None
    err = capsys.readouterr().err
    assert re.search(r"▶ train intent started \d\d:\d\d:\d\d", err)
    assert re.search(r"✓ train intent done in [\d.]+s · dev_accuracy 0.9123 · produced "
                     r"data/models/intent/train.json, models:/intent/3 @champion", err)  # fmt: skip


def test_stage_is_named_as_dvc_names_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DVC_STAGE", "train@intent")
    with stage("train intent", tmp_path):
        pass
    record = records(tmp_path)[0]
    assert (record["stage"], record["command"]) == ("train@intent", "train intent")
    assert "▶ train@intent (scrm train intent) started" in capsys.readouterr().err


def test_a_failed_stage_is_recorded_and_the_error_propagates(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="bad data"), stage("validate x", tmp_path):
        raise ValueError("bad data")
    assert records(tmp_path)[0]["status"] == "failed"
    assert "✗ validate x failed after" in capsys.readouterr().err


def test_outside_a_project_nothing_is_recorded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with stage("train intent"):
        pass
    assert not (tmp_path / STAGES_FILE).exists()


def test_the_table_shows_each_stages_last_run_and_their_sum(tmp_path: Path) -> None:
    lines = [
        {"stage": "pretrain_zh", "started": "2026-12-05T08:00:00", "seconds": 300.0,
         "outputs": [], "metric_name": "heldout_mlm_loss", "metric": 4.5, "status": "ok"},
        {"stage": "train@intent", "started": "2026-12-05T08:05:00", "seconds": 90.0,
         "outputs": [], "metric_name": "dev_accuracy", "metric": 0.5, "status": "failed"},
        {"stage": "train@intent", "started": "2026-12-05T09:00:00", "seconds": 120.5,
         "outputs": [], "metric_name": "dev_accuracy", "metric": 0.9145, "status": "ok"},
    ]  # fmt: skip
    path = tmp_path / STAGES_FILE
    path.parent.mkdir()
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"stage": "torn')
    found = read_stages(tmp_path)
    assert len(found) == 3  # the torn last line is skipped
    latest = latest_per_stage(found)
    assert [(r["stage"], r["seconds"]) for r in latest] == [("pretrain_zh", 300.0),
                                                            ("train@intent", 120.5)]  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=120).print(stages_table(latest))
    table = out.getvalue()
    assert re.search(r"pretrain_zh\s+12-05 08:00:00\s+300.0\s+heldout_mlm_loss\s+4.5000", table)
    assert re.search(r"train@intent\s+12-05 09:00:00\s+120.5\s+dev_accuracy\s+0.9145", table)
    assert "0.5000" not in table  # the earlier, failed run is not shown
    assert re.search(r"sum of stages\s+420.5\s+7m00s", table)
    assert re.search(r"first start to last end\s+3720.5\s+1h02m", table)
    out = io.StringIO()
    Console(file=out, width=120).print(stages_table(found))
    assert "✗ train@intent" in out.getvalue()  # --all shows the failed run, marked


def test_scrm_stages_prints_the_table(project: Path) -> None:
    empty = scrm_in(project, "stages")
    assert empty.returncode == 0 and "No stages recorded yet" in empty.stderr
    with stage("validate banking77", project) as current:
        current.headline("rows", 13083)
    shown = scrm_in(project, "stages")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"validate banking77 .+ rows\s+13,083", shown.stdout)


def test_off_a_terminal_bars_print_plain_lines_on_a_clock(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SCRM_PROGRESS_SECONDS", "0.1")
    with stage("tune intent", tmp_path), bar("trials", total=10, unit="trials") as shown:
        for _ in range(3):
            shown.update(advance=1, info="best 0.9")
        time.sleep(0.45)  # a step that reports nothing for a while
    err = capsys.readouterr().err
    ticks = [line for line in err.splitlines() if line.startswith("  … tune intent:")]
    assert len(ticks) >= 3
    assert re.search(
        r"trials: 3/10 trials \(30%\) · ~[\d.]+s left · [\d.]+s · best 0.9$", ticks[-1]
    )
    assert "  ✓ trials: 3/10 trials (30%) in " in err
    assert "━" not in err  # no live bar off a terminal


def test_on_a_terminal_bars_are_live(monkeypatch) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=140)
    monkeypatch.setattr(progress, "console", terminal)
    with stage("predict batch churn"), bar("batch scoring", total=4, unit="rows") as shown:
        shown.update(advance=2)
        time.sleep(0.3)  # rich refreshes the display on its own thread
    drawn = screen.getvalue()
    assert "━" in drawn and "batch scoring" in drawn and "2/4 rows · ~" in drawn
    assert "✓ batch scoring: 2/4 rows (50%)" in drawn


def test_a_timed_bar_fills_with_wall_time(capsys) -> None:
    with timed_bar("AutoGluon churn", seconds=10) as shown:
        time.sleep(1.3)
    assert 1 <= shown.completed <= 2
    assert "✓ AutoGluon churn: 1/10 s (10%)" in capsys.readouterr().err


def test_time_left_is_the_average_rate_capped_by_the_budget() -> None:
    assert eta_seconds(50, 100, elapsed=10) == 10
    assert eta_seconds(50, 100, elapsed=10, budget_left=4) == 4
    assert eta_seconds(0, 100, elapsed=10) is None
    assert eta_seconds(0, 100, elapsed=10, budget_left=60) == 60


def test_a_tiny_training_loop_calls_the_step_callback(tmp_path: Path, capsys) -> None:
    import torch

    from training.text.fit import fit_classifier
    from training.text.loop import StepProgress, TrainParams
    from training.text.models import BertBiLSTMClassifier, EncoderParams
    from training.text.tokenizer import TokenizerParams, build_tokenizer

    torch.manual_seed(0)
    texts = [f"第{i}号 订单 已经 发货" if i % 2 else f"我 要 退款 {i}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    tokenizer = build_tokenizer(texts, tmp_path / "tok", TokenizerParams(200, 1))
    encoder = EncoderParams(hidden=16, layers=1, heads=2, intermediate=32, max_len=32,
                            lstm_hidden=8)  # fmt: skip
    model = BertBiLSTMClassifier(encoder, len(tokenizer), 2)
    params = TrainParams(epochs=2, batch_size=16, patience=5, max_minutes=5.0)
    seen: list[StepProgress] = []
    with fit_bar("BERT-BiLSTM tiny") as on_step:

        def both(step: StepProgress) -> None:
            seen.append(step)
            on_step(step)

        fit_classifier(model, tokenizer, texts, labels, texts[:8], labels[:8], 32, params,
                       on_step=both)  # fmt: skip
    steps = 2 * math.ceil(40 / 16)
    assert [s.step for s in seen] == list(range(1, steps + 1))
    assert {s.steps for s in seen} == {steps} and {s.epochs for s in seen} == {2}
    assert [s.epoch for s in seen] == [1, 1, 1, 2, 2, 2]
    assert all(math.isfinite(s.loss) and 0 < s.budget_left <= 300 for s in seen)
    assert f"✓ BERT-BiLSTM tiny: {steps}/{steps} steps (100%)" in capsys.readouterr().err
