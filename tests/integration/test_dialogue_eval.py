"""The bank scenario report (`scrm eval dialogue`) through the gateway, and its scoring.

The gateway test sends a seeded sample of BANKING77 test utterances to the session's live
server (small-profile models) and checks the report against the replies it was computed from.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.dialogue_eval import classify, flow_intents, reply_outcome, summarise
from settings import load_settings
from tests.channel_setup import free_port
from tests.conftest import BIN, project_env

REPO = Path(__file__).resolve().parents[2]
FLOWS = {"report_lost_card": ["lost_or_stolen_card", "card_swallowed"]}


def web_chat(kind: str, intent: str | None = None, flow: str | None = None) -> dict:
    """A web chat answer as the gateway writes it (crm/channels/webchat.py)."""
    return {
        "reply": "...",
        "intent": {"label": intent} if intent else None,
        "dialogue": {"kind": kind, **({"flow": flow} if flow else {})},
    }


@pytest.mark.parametrize(
    ("body", "gold", "expected"),
    [
        (web_chat("answer", "card_arrival"), "card_arrival", "correct"),
        (web_chat("answer", "card_arrival"), "card_linking", "wrong"),
        (web_chat("task", "lost_or_stolen_card", "report_lost_card"), "card_swallowed", "correct"),
        (web_chat("task", "lost_or_stolen_card", "report_lost_card"), "top_up_failed", "wrong"),
        (web_chat("clarify", "unknown"), "top_up_failed", "clarify"),
        (web_chat("handoff", "unknown"), "top_up_failed", "handoff"),
        (web_chat("chitchat", "greeting"), "top_up_failed", "wrong"),
        ({"reply": None, "intent": None, "dialogue": {}}, "top_up_failed", "wrong"),
    ],
)
def test_a_web_chat_answer_is_scored_by_what_the_dialogue_did(body, gold, expected) -> None:
    assert reply_outcome(body, gold, FLOWS) == expected


def test_shares_add_up_and_failures_are_counted_apart() -> None:
    outcomes = ["correct"] * 6 + ["wrong", "clarify", "handoff", "failed"]
    report = summarise(outcomes, [10.0, 20.0, 30.0], [{"outcome": o} for o in outcomes])
    shares = ("answered_correctly", "answered_wrongly", "handed_off", "failed")
    assert sum(report[k] for k in shares) == pytest.approx(1.0)
    assert report["answered_automatically"] == 0.7 and report["of_which_asked_to_rephrase"] == 0.1
    assert report["precision_of_automatic_answers"] == pytest.approx(6 / 7, abs=1e-4)
    assert report["wrong_examples"] == [{"outcome": "wrong"}]
    assert classify("queued", None, None, "x", FLOWS) == "handoff"


def test_an_unreachable_gateway_is_one_readable_line(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["eval", "dialogue", "--url", url, "--limit", "3"])
    assert result.exit_code == 1
    assert f"no gateway answers at {url}/healthz" in result.output
    assert "Traceback" not in result.output


def test_bank_scenario_report_through_the_gateway_matches_its_replies(
    pipeline_workspace: Path, server: str, service_key: str, tmp_path: Path
) -> None:
    replies_fp, results_fp = tmp_path / "replies.jsonl", tmp_path / "report.json"
    command = [str(BIN / "scrm"), "eval", "dialogue", "--url", server, "--limit", "36"]
    command += ["--concurrency", "4", "--replies-fp", str(replies_fp)]
    command += ["--results-fp", str(results_fp)]
    # the key goes through the environment, as an operator would pass it
    env = project_env(SCRM_API_KEY=service_key)
    done = subprocess.run(
        command, cwd=pipeline_workspace, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # one JSON line on stdout; the progress bar is on stderr
    report = json.loads(lines[0])
    assert report == json.loads(results_fp.read_text())
    assert report["mode"] == "gateway" and report["utterances"] == 36
    assert report["statuses"] == {"200": 36} and report["failed"] == 0

    replies = [json.loads(line) for line in replies_fp.read_text().splitlines()]
    assert sorted(r["index"] for r in replies) == list(range(36))
    counts = report["counts"]
    assert sum(counts.values()) == 36
    for outcome in ("correct", "wrong", "handoff", "clarify"):
        assert counts[outcome] == sum(r["outcome"] == outcome for r in replies)
    shares = ("answered_correctly", "answered_wrongly", "handed_off", "failed")
    assert sum(report[k] for k in shares) == pytest.approx(1.0, abs=1e-3)
    flows = flow_intents(load_settings(pipeline_workspace))
    for row in replies:  # each row's outcome follows from the gateway's own answer
        body = {"intent": {"label": row["intent"]}, "dialogue": {"kind": row["kind"]}}
        body["dialogue"]["flow"] = row["flow"]
        assert row["reply"] and row["outcome"] == reply_outcome(body, row["gold"], flows)
        if row["kind"] == "answer":
            assert row["outcome"] == ("correct" if row["intent"] == row["gold"] else "wrong")
        if row["kind"] in ("handoff", "clarify"):
            assert row["outcome"] == row["kind"]
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert latency["max"] == pytest.approx(max(r["latency_ms"] for r in replies), abs=1e-3)
    # the small-profile intent model still answers a real share, and mostly right
    assert counts["correct"] >= 6 and counts["correct"] > counts["wrong"]


def test_a_gateway_that_refuses_the_caller_is_one_readable_line(
    pipeline_workspace: Path, server: str
) -> None:
    env = {k: v for k, v in project_env().items() if k != "SCRM_API_KEY"}
    command = [str(BIN / "scrm"), "eval", "dialogue", "--url", server, "--limit", "3"]
    done = subprocess.run(
        command, cwd=pipeline_workspace, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and not done.stdout
    assert "refused the chat turn (401" in done.stderr and "set SCRM_API_KEY" in done.stderr


def test_retrieval_with_the_registered_faq_match_on_held_out_atec(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    """The small profile's `faq_match` champion re-scores the lexical shortlist on the ATEC
    test split (never trained on): the report names the model and the rankings change."""
    reports = {}
    for matcher in ("lexical", "combined"):
        out = tmp_path / f"{matcher}.json"
        command = [str(BIN / "scrm"), "eval", "retrieval", "--matcher", matcher]
        done = subprocess.run(
            [*command, "--results-fp", str(out)], cwd=pipeline_workspace, env=project_env(),
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        reports[matcher] = json.loads(out.read_text())
    lexical, combined = reports["lexical"], reports["combined"]
    assert "faq_match@champion" in combined["open_pool"]["matcher"]
    assert lexical["open_pool"]["queries"] == combined["open_pool"]["queries"] > 1000
    assert combined["pairs"]["at"] != lexical["pairs"]["at"]  # the model's scores count
    assert 0 < combined["open_pool"]["precision_at_1"] <= 1
    assert combined["labelled_candidates"]["precision_at_1"] is not None
