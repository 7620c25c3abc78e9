"""The gateway's application on a loopback port, for `scrm eval marketing --served`.

What runs is the gateway replica's own FastAPI application (`crm.api.build_api` over
`crm.parts.build_parts`: the same routes, access control and API keys, channel service and
identity map, MQTT bridge, marketing wiring with the opt-out guard and the live reply feed,
event bus), served by uvicorn in a child process of its own. Three parts are stand-ins, so
the run needs no trained model and no Feast store and starts in seconds:

- the dialogue (`AckConversation`): every customer message is acknowledged ("收到"), the
  reply path and the marketing feed around it are the real ones;
- the customers' features (`PopulationFeatures`): the synthetic population's segment as its
  `rfm_tier`, as the Feast online store would serve it;
- the world before the campaign (`seed_world`): consent per purpose in the consent ledger
  (what the stream processor writes from `consent.changed` events), earlier opt-outs and
  this morning's sends in the campaign store.

Everything else the campaign does goes through HTTP and the channels
(pipelines/marketing_served.py).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from settings import Settings, load_settings

TENANT = "default"  # the web chat's and the MQTT bridge's tenant
POPULATION_FILE = "population.json"
KEYS_FILE = "keys.json"
ROLES = {"marketer": "marketer", "crm": "supervisor"}


class PopulationFeatures:
    """The online feature client's interface over the population file (segment as rfm_tier)."""

    def __init__(self, segments: dict[str, str]):
        self.segments = segments
        self.service = type("Service", (), {"name": "customer_360_v1"})()

    def get(self, customer_id: str, at: Any = None) -> dict[str, Any] | None:
        segment = self.segments.get(customer_id)
        return {"rfm_tier": segment} if segment is not None else None

    def get_many(self, customer_ids: list[str], at: Any = None) -> list[dict[str, Any] | None]:
        return [self.get(c) for c in customer_ids]

    def record(self, event: Any) -> dict[str, Any]:
        return {}


class AckConversation:
    """The Conversation deployment's handle with a dialogue that acknowledges every message."""

    def __init__(self) -> None:
        from crm.messages import Reply

        class Method:
            def __init__(self, function: Any):
                self.function = function

            def remote(self, *args: Any) -> Any:
                async def call() -> Any:
                    return self.function(*args)

                return call()

        self.turn = Method(lambda message: Reply(text="收到，谢谢！", intent="ack"))
        self.desk = Method(
            lambda op, args: {"error": {"status": 503, "detail": "no agent desk in this run"}}
        )


def gateway_settings(repo: Path, root: Path, mqtt_port: int) -> Settings:
    """The repository's settings with every store under `root`; policies, flows and the
    knowledge base read from the repository; MQTT on against the run's own broker."""
    base = load_settings(repo, environ={})
    privacy = base.privacy.model_copy(update={"policy_file": str(repo / base.privacy.policy_file)})
    dialogue = base.dialogue.model_copy(update={"flows_dir": str(repo / base.dialogue.flows_dir)})
    mqtt = base.channels.mqtt.model_copy(
        update={"enabled": True, "host": "127.0.0.1", "port": mqtt_port, "reconnect_s": 0.5}
    )
    channels = base.channels.model_copy(update={"mqtt": mqtt})
    return base.model_copy(
        update={"root": root, "privacy": privacy, "dialogue": dialogue, "channels": channels}
    )


def issue_keys(settings: Settings) -> dict[str, str]:
    """The run's API keys: a marketer, and the CRM (a supervisor with personal-data clearance:
    opens web chat sessions for logged-in customers, links channel identities, and reads a
    session's transcript where the simulated customer sees the message)."""
    from privacy.auth import ApiKeyStore, Subject

    store = ApiKeyStore(settings.path(settings.privacy.api_keys_file))
    return {
        name: store.issue(Subject(id=f"eval-{name}", tenant=TENANT, role=role, method="api_key",
                                  clearance=2, rate_per_s=10_000.0, burst=10_000))
        for name, role in ROLES.items()
    }  # fmt: skip


def seed_world(settings: Settings, people: dict[str, Any], now: datetime) -> None:
    """Consent in the ledger, earlier opt-outs and this morning's sends in the campaign store."""
    from crm.insight.consent import ConsentLedger
    from crm.marketing.service import STORE
    from crm.marketing.store import CampaignStore
    from events.schemas import ConsentChanged

    derived = settings.path(settings.events.derived_db)
    derived.parent.mkdir(parents=True, exist_ok=True)
    ledger, at = ConsentLedger(), now - timedelta(days=60)
    events = [
        (0, ConsentChanged(tenant=TENANT, customer_id=c, purpose=purpose, granted=granted,
                           at=at, source="signup"))
        for c, consent in people["consent"].items() for purpose, granted in consent.items()
    ]  # fmt: skip
    with sqlite3.connect(derived) as db:
        ledger.setup(db)
        ledger.apply(db, events)
    path = settings.path(STORE)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = CampaignStore(path)
    for cid in people["opted_out"]:
        store.record(TENANT, cid, now - timedelta(days=20), "keyword:wecom")
    for cid in people["messaged_today"]:
        store.claim(TENANT, "earlier", "main", cid, "control", "web_chat", "sent",
                    now - timedelta(hours=2))  # fmt: skip
    store.close()


def serve(root: Path, repo: Path, port: int, mqtt_port: int) -> None:
    """Child process: build the parts over the stand-ins and serve until terminated."""
    import uvicorn

    from crm.api import build_api
    from crm.parts import build_parts

    settings = gateway_settings(repo, root, mqtt_port)
    people = json.loads((root / POPULATION_FILE).read_text(encoding="utf-8"))
    features = PopulationFeatures(people["segments"])
    parts = build_parts(settings, {}, AckConversation(), features, features, lambda _: features)
    api = build_api(parts)
    api.router.on_startup.append(parts.start)
    api.router.on_shutdown.append(parts.stop)
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning")
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":  # python -m pipelines.marketing_gateway ROOT REPO PORT MQTT_PORT
    serve(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    sys.exit(0)
