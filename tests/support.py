"""Small helpers shared by unit tests (no servers, no pipeline run)."""

from __future__ import annotations

from pathlib import Path

from settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def read_dataset(name: str):
    """A data set of data/raw as the pipeline reads it (its splits carved, columns named)."""
    from pipelines.datasets import finalize, load_dataset

    settings = load_settings(REPO)
    spec = settings.dataset(name)
    frame, _ = load_dataset(settings.raw_dir(name), spec, settings.seed)
    return finalize(frame, spec)


def settings_at(root: Path, **sections: dict) -> Settings:
    """The repository's settings with every relative path under `root` (a throwaway project),
    sections replaced by `sections` (e.g. channels={...} merged over params.yaml's)."""
    base = load_settings(REPO, environ={})
    update: dict = {"root": Path(root)}
    for name, values in sections.items():
        current = getattr(base, name)
        update[name] = current.model_copy(update=values)
    return base.model_copy(update=update)


# --- the application over in-process fakes (no Ray, no Feast, no registry) -------------------
class FakeRemote:
    """A deployment method as a handle exposes it: `.remote(...)` gives an awaitable."""

    def __init__(self, function):
        self.function = function

    def remote(self, *args, **kwargs):
        async def call():
            return self.function(*args, **kwargs)

        return call()


class FakeModel:
    """A model deployment's handle: `predict`, `predict_many`, `status` over `score(item)`."""

    def __init__(self, name: str, score, version: str = "1"):
        self.name, self.score, self.version = name, score, version
        self.items: list[dict] = []
        self.predict = FakeRemote(lambda item: self._answer([item])[0])
        self.predict_many = FakeRemote(self._answer)
        self.status = FakeRemote(
            lambda: {"model": name, "loaded": True, "versions": {"champion": version}}
        )

    def _answer(self, items: list[dict]) -> list[dict]:
        self.items += items
        return [
            {**self.score(item), "model_name": self.name, "model_version": self.version,
             "variant": "champion", "batch_size": len(items)}
            for item in items
        ]  # fmt: skip


class LocalConversation:
    """The Conversation deployment's handle over an in-process dialogue manager."""

    def __init__(self, manager):
        from crm.conversation.desk import outbound_dicts, run_desk_operation
        from crm.conversation.handler import message_handler
        from crm.conversation.handoff import DeskError

        self.manager, self.outbox = manager, []
        manager.deliver = self.outbox.append
        handler = message_handler(manager)

        class Turn:
            @staticmethod
            def remote(message):
                return handler(message)

        def desk(op, args):
            self.outbox.clear()
            try:
                result = run_desk_operation(manager, op, **args)
            except DeskError as error:
                return {"error": {"status": error.status, "detail": str(error)}}
            return {"result": result, "outbound": outbound_dicts(list(self.outbox))}

        self.turn, self.desk = Turn(), FakeRemote(desk)


class FakeFeatures:
    """OnlineFeatureClient + ConversationStream over a dict of customers."""

    def __init__(self, customers: dict[str, dict]):
        self.customers = customers
        self.events: list = []
        self.service = type("Service", (), {"name": "customer_360_v1"})()

    def get(self, customer_id: str, at=None):
        return self.customers.get(customer_id)

    def get_many(self, ids: list[str]):
        return [self.customers.get(i) for i in ids]

    def record(self, event) -> dict:
        self.events.append(event)
        stats = self.customers.setdefault(event.customer_id, {"messages_30d": 0})
        stats["messages_30d"] = stats.get("messages_30d", 0) + 1
        return {"messages_30d": stats["messages_30d"]}


def application_settings(root: Path) -> Settings:
    """Settings of a throwaway project at `root`: the repository's policies, everything else
    (keys, audit, stores) under `root`; no WeCom/DingTalk secrets, MQTT off."""
    settings = settings_at(root)
    policies = str(REPO / "privacy/policies.yaml")
    privacy = settings.privacy.model_copy(update={"policy_file": policies})
    dialogue = settings.dialogue.model_copy(
        update={"flows_dir": str(REPO / settings.dialogue.flows_dir),
                "knowledge": settings.dialogue.knowledge.model_copy(
                    update={"kb_dir": str(REPO / "data/kb"), "matcher": "lexical"})}
    )  # fmt: skip
    return settings.model_copy(update={"privacy": privacy, "dialogue": dialogue})


def issue_test_key(settings: Settings, subject: str, tenant: str, role: str, **attributes) -> str:
    from privacy.auth import ApiKeyStore, Subject

    store = ApiKeyStore(settings.path(settings.privacy.api_keys_file))
    return store.issue(Subject(id=subject, tenant=tenant, role=role, method="api_key",
                               **attributes))  # fmt: skip


class TrustedSocket:
    """A web chat socket's caller in channel-mechanics tests (no access control): the session
    and customer are the query's, as if the gateway had issued them a token."""

    def __init__(self, session_id: str, customer_id: str):
        from privacy.sessions import ChatGrant

        self.grant = ChatGrant("default", customer_id, session_id, customer_id, "web_chat", 1e12)
        self.replayed: list[int] = []
        self.refused: list[str] = []

    def frame_refused(self) -> str | None:
        return None

    def audit_replay(self, lines: int) -> None:
        self.replayed.append(lines)

    def audit_refused(self, why: str) -> None:
        self.refused.append(why)


def trusted_socket(socket) -> TrustedSocket:
    """`socket_guard` for channel_router in unit tests: ?session_id= and ?customer_id=."""
    from uuid import uuid4

    session = socket.query_params.get("session_id") or uuid4().hex
    return TrustedSocket(session, socket.query_params.get("customer_id") or f"visitor-{session}")


def open_web_chat(client, headers: dict[str, str]) -> dict[str, str]:
    """A server-issued web chat session: its id, token and the headers that carry it."""
    opened = client.post("/v1/channels/web_chat/sessions", headers=headers, json={})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    return {**body, "headers": {**headers, "X-Chat-Session": body["session_token"]}}
