"""Unit fixtures: the channel routes over a stub dialogue (records what it saw, so a test can
tell a handled message from one answered out of the intake log)."""

from __future__ import annotations

import base64

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm.channels.dingtalk import DingTalkAdapter
from crm.channels.identity import IdentityMap
from crm.channels.routes import channel_router
from crm.channels.service import ChannelService
from crm.channels.webchat import ChatTranscript, WebChatAdapter
from crm.channels.wecom import WeComAdapter
from crm.intake import SqliteIntake
from crm.messages import InboundMessage, Reply
from tests.support import trusted_socket

CORP = "wwtestcorp0001"
TOKEN = "test-token-123"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")  # 43 characters
SECRET = "dingtalk-app-secret"


class Dialogue:
    """Echoes the text back, with the customer id it was given; counts calls."""

    def __init__(self):
        self.seen: list[InboundMessage] = []
        self.instead = None  # another handler to answer with (a test swaps the dialogue)

    async def __call__(self, message: InboundMessage) -> Reply:
        if self.instead is not None:
            return await self.instead(message)
        self.seen.append(message)
        return Reply(
            text=f"收到：{message.text}", intent="echo", data={"customer_id": message.customer_id}
        )


@pytest.fixture
def setup(tmp_path):
    adapters = [WebChatAdapter(), WeComAdapter(TOKEN, AES_KEY, CORP), DingTalkAdapter(SECRET)]
    intake = SqliteIntake(tmp_path / "intake.db")
    service = ChannelService(
        adapters,
        IdentityMap(tmp_path / "channels.db"),
        intake,
        ChatTranscript(tmp_path / "channels.db"),
        unconfigured={"mqtt_http": ["X"]},
    )
    app = FastAPI()
    dialogue = Dialogue()
    app.include_router(channel_router(service, dialogue, socket_guard=trusted_socket))
    with TestClient(app) as client:
        yield client, service, dialogue
    service.close()
