"""The agent desk's live socket (crm/console/live.py): opened only with a console session,
from the console's origin, for roles with `desk.work`; says "changed" when the queue or the
watched conversation changes; carries no personal data; closes when the session ends."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.support import open_web_chat
from tests.unit.test_console import PHONE, console, sign_in  # noqa: F401 (the fixture)

ORIGIN = {"origin": "http://testserver"}
pytestmark = pytest.mark.timeout(120)


def refused(client, headers: dict) -> int:
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/console/ws/desk", headers=headers) as socket,
    ):
        socket.receive_json()
    return closed.value.code


def test_the_desk_socket_needs_a_session_the_same_origin_and_desk_work(console) -> None:  # noqa: F811
    client, _, keys = console
    assert refused(client, ORIGIN) == 4403  # no session
    sign_in(client, keys["agent"])
    assert refused(client, {"origin": "http://evil.example"}) == 4403  # cross-site
    assert refused(client, {}) == 4403  # no Origin at all
    sign_in(client, keys["marketer"])  # the marketer's cookie replaces the agent's
    assert refused(client, ORIGIN) == 4403  # no desk.work


def test_the_desk_socket_says_changed_on_a_handoff_and_a_reply_and_ends_on_logout(console) -> None:  # noqa: F811, E501
    client, _, keys = console
    supervisor = {"X-API-Key": keys["supervisor"]}
    csrf = sign_in(client, keys["agent"])
    with client.websocket_connect("/console/ws/desk", headers=ORIGIN) as socket:
        assert socket.receive_json() == {"type": "desk.changed"}  # the first state
        chat = open_web_chat(client, supervisor)
        handed = client.post("/v1/channels/web_chat/messages", headers=chat["headers"],
                             json={"text": f"转人工 {PHONE}", "message_id": "m-live"})  # fmt: skip
        assert handed.status_code == 200, handed.text
        message = socket.receive_json()  # the new pending ticket
        assert message == {"type": "desk.changed"}  # a signal: no ticket, no text, no phone
        waiting = client.get("/v1/agent/queue", headers=supervisor).json()[0]
        on_duty = client.put("/v1/agent/agents/li", json={"skills": [waiting["skill"]]},
                             headers={"X-CSRF-Token": csrf})  # fmt: skip
        assert on_duty.status_code == 200, on_duty.text
        ticket = waiting["id"]
        accepted = client.post(f"/v1/agent/tickets/{ticket}/accept", json={"agent_id": "li"},
                               headers={"X-CSRF-Token": csrf})  # fmt: skip
        assert accepted.status_code == 200, accepted.text
        assert socket.receive_json() == {"type": "desk.changed"}  # left the queue
        socket.send_json({"watch": ticket})
        said = client.post("/v1/channels/web_chat/messages", headers=chat["headers"],
                           json={"text": "还在吗", "message_id": "m-live-2"})  # fmt: skip
        assert said.status_code == 200, said.text
        assert socket.receive_json() == {"type": "desk.changed"}  # the watched conversation
        assert client.post("/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4403
