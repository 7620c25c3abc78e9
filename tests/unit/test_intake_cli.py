"""`scrm intake status` and the typed `channels:` section."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from crm.channels.service import intake_from_settings
from crm.messages import InboundMessage, Reply
from pipelines import cli
from pipelines.commands import channels as channel_commands
from settings import load_settings
from settings.channels import ChannelSettings
from settings.privacy import PrivacyConfig


@pytest.fixture
def project(tmp_path, monkeypatch):
    config = SimpleNamespace(
        root=tmp_path,
        channels=ChannelSettings(),
        privacy=PrivacyConfig(),
        serving=SimpleNamespace(host="127.0.0.1", port=8000),
    )
    monkeypatch.setattr(channel_commands, "settings", lambda: config)
    return config


def test_params_yaml_channels_section_is_typed() -> None:
    channels = load_settings().channels
    assert channels.intake.backend == "sqlite" and channels.intake.synchronous == "FULL"
    assert channels.dingtalk.max_skew_s == 3600 and channels.mqtt.topic_in == "scrm/in/#"


def test_status_reports_the_log(project) -> None:
    intake = intake_from_settings(project.channels, project.root, None)
    for i, text in enumerate(["查余额", "挂失", "查余额"]):
        accepted = intake.append(
            InboundMessage(channel="dingtalk", sender_id="s", text=text, message_id=f"d-{i}")
        )
        if i:
            intake.complete(accepted.ref, Reply(text="ok"))
    status = CliRunner().invoke(cli.app, ["intake", "status"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["counts"] == {
        "pending": 1,
        "processing": 0,
        "done": 2,
        "dead": 0,
    }
