"""Builds the insight parts of a gateway replica from settings (stores passed, not global)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from crm.insight.profile import ProfileService
from crm.insight.tags import TagEngine, TagStore, load_rules
from settings import Settings

log = logging.getLogger(__name__)


def open_read_graph(settings: Settings) -> Any:
    """The graph for reads: the embedded file read-only if the pipeline built it, or the
    server; None (profiles without relations) when neither can be opened."""
    from crm.insight.graph import EmbeddedGraph, ServerGraph

    config = settings.insight.graph
    try:
        if config.engine == "server":
            return ServerGraph(config.server_url, config.graph_name)
        path = settings.path(config.path)
        return EmbeddedGraph(path, read_only=True) if path.exists() else None
    except Exception as error:  # a graph that cannot be opened must not stop the gateway
        log.warning("customer graph not available: %s", error)
        return None


def wecom_tag_pushers(settings: Settings, identity: Any) -> list:
    """The WeCom tag push when the corp's id and app secret are in the environment."""
    from crm.insight.wecom_tags import WeComTagClient, wecom_pusher

    wecom = settings.channels.wecom
    corp_id, secret = os.environ.get(wecom.corp_id_env), os.environ.get(wecom.secret_env)
    if not (corp_id and secret) or identity is None:
        return []
    client = WeComTagClient(corp_id, secret, wecom.api_base, settings.insight.wecom_staff_userid)
    return [wecom_pusher(client, identity)]


def build_insight(
    settings: Settings,
    features: Any,
    identity: Any = None,
    vault: Any = None,
    insight_features: Any = None,
    graph: Any = None,
) -> ProfileService:
    from privacy.profiles import ProfileStore

    config = settings.insight
    rules = settings.path(config.tags_file)
    if not rules.is_file():  # a project without its own rules: the packaged defaults
        rules = Path(__file__).with_name("tag_rules.yaml")
    contacts = ProfileStore(vault, settings.path(settings.privacy.personal_db)) if vault else None
    return ProfileService(
        features=features,
        tags=TagStore(settings.path(config.tags_db)),
        engine=TagEngine(load_rules(rules)),
        graph=graph if graph is not None else open_read_graph(settings),
        insight=insight_features,
        contacts=contacts,
        identity=identity,
        derived_db=settings.path(settings.events.derived_db),
        min_confidence=config.relations.min_confidence,
        pushers=wecom_tag_pushers(settings, identity),
    )
