from __future__ import annotations

import pytest
from pydantic import ValidationError

from crm.channels.router import MessageRouter, UnsupportedChannel, WebChatAdapter
from serving.schemas import IntentResponse


def test_unknown_channel_names_it_and_the_supported_ones() -> None:
    router = MessageRouter([WebChatAdapter()])
    with pytest.raises(UnsupportedChannel, match="Unsupported channel: fax; supported: web_chat"):
        router.adapter("fax")


def test_web_chat_round_trip_keeps_session_and_message_id() -> None:
    adapter = MessageRouter([WebChatAdapter()]).adapter("web_chat")
    message = adapter.parse({"session_id": "s-1", "text": " 你好 ", "message_id": "m-9"})
    assert (message.channel, message.sender_id, message.text) == ("web_chat", "s-1", "你好")
    intent = IntentResponse(
        label="chat",
        confidence=0.7,
        top_label="chat",
        in_scope=True,
        model_name="intent",
        model_version="3",
    )
    reply = adapter.render(message, intent)
    assert reply["session_id"] == "s-1" and reply["message_id"] == "m-9"
    assert reply["intent"]["label"] == "chat" and "chat" in reply["reply"]


@pytest.mark.parametrize(
    "payload",
    [{"text": "hi"}, {"session_id": "s", "text": "   "}, {"session_id": "s", "text": 3}, {}],
)
def test_web_chat_rejects_malformed_payloads(payload) -> None:
    with pytest.raises(ValidationError):
        WebChatAdapter().parse(payload)
