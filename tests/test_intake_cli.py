"""`scrm intake worker|status` and the worker's gateway handler."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

from crm.channels.handlers import gateway_intent
from crm.channels.messages import InboundMessage, Reply
from crm.channels.service import intake_from_settings
from pipelines import cli
from pipelines.commands import channels as channel_commands
from settings import load_settings
from settings.channels import ChannelSettings


def echo_factory(gateway_url: str):
    async def handle(message: InboundMessage) -> Reply:
        if message.text == "poison":
            raise RuntimeError("cannot handle poison")
        return Reply(text=f"{gateway_url} {message.text}")

    return handle


@pytest.fixture
def project(tmp_path, monkeypatch):
    config = SimpleNamespace(
        root=tmp_path,
        channels=ChannelSettings(),
        serving=SimpleNamespace(host="127.0.0.1", port=8000),
    )
    monkeypatch.setattr(channel_commands, "settings", lambda: config)
    return config


def test_params_yaml_channels_section_is_typed() -> None:
    channels = load_settings().channels
    assert channels.intake.backend == "sqlite" and channels.intake.synchronous == "FULL"
    assert channels.dingtalk.max_skew_s == 3600 and channels.mqtt.topic_in == "scrm/in/#"


def test_worker_drains_the_log_and_status_reports_it(project) -> None:
    intake = intake_from_settings(project.channels, project.root)
    for i, text in enumerate(["查余额", "挂失", "查余额"]):
        intake.append(
            InboundMessage(channel="dingtalk", sender_id="s", text=text, message_id=f"d-{i}")
        )
    runner = CliRunner()
    result = runner.invoke(
        cli.app,
        [
            "intake",
            "worker",
            "--until-idle",
            "--gateway",
            "http://gw",
            "--handler",
            "tests.test_intake_cli:echo_factory",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "processed 3" in result.output
    assert intake.status("dingtalk", "d-1")["reply"]["text"] == "http://gw 挂失"
    status = runner.invoke(cli.app, ["intake", "status"])
    assert status.exit_code == 0
    assert json.loads(status.stdout)["counts"] == {
        "pending": 0,
        "processing": 0,
        "done": 3,
        "dead": 0,
    }


def test_bad_handler_is_one_line_and_non_zero(project) -> None:
    result = CliRunner().invoke(cli.app, ["intake", "worker", "--handler", "nope"])
    assert result.exit_code == 1
    assert "error: handler 'nope': expected module:function" in result.output


def test_gateway_intent_handler_answers_hands_off_and_raises_for_retry() -> None:
    answers = {
        "查余额": httpx.Response(
            200, json={"label": "balance", "confidence": 0.9, "in_scope": True}
        ),
        "???": httpx.Response(200, json={"label": "unknown", "confidence": 0.2, "in_scope": False}),
        "down": httpx.Response(503, json={"detail": "no replica"}),
        "x" * 3: httpx.Response(422, json={"detail": "text: bad"}),
    }

    def route(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/intent"
        return answers[json.loads(request.content)["text"]]

    handle = gateway_intent("http://gw", transport=httpx.MockTransport(route))

    def ask(text: str) -> Reply:
        message = InboundMessage(channel="wecom", sender_id="u", text=text, message_id=text)
        return asyncio.run(handle(message))

    assert (ask("查余额").intent, ask("查余额").handoff) == ("balance", False)
    assert ask("???").handoff and "人工" in ask("???").text
    with pytest.raises(httpx.HTTPStatusError):
        ask("down")  # 5xx: the worker retries it later
    assert "error" in ask("xxx").data  # 4xx: final, answered politely
